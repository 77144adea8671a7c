// Frozen in time: this migration imports no app code and must never change
// once released. Later changes go in new, later-dated migrations.
import { type Kysely, sql } from "kysely";

// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  const now = sql`now()`;
  const uuid = sql`gen_random_uuid()`;

  await db.schema
    .createTable("accounts")
    .addColumn("id", "uuid", (c) => c.primaryKey().defaultTo(uuid))
    .addColumn("name", "text", (c) => c.notNull())
    .addColumn(
      "status",
      "text",
      (c) => c.notNull().defaultTo("active").check(sql`status in ('active', 'suspended')`),
    )
    .addColumn("balance", "int8", (c) => c.notNull().defaultTo(0))
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(now))
    .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(now))
    .execute();

  await db.schema
    .createTable("users")
    .addColumn("id", "uuid", (c) => c.primaryKey().defaultTo(uuid))
    .addColumn("email", "text", (c) => c.notNull().unique())
    .addColumn("name", "text")
    .addColumn("password_hash", "text")
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(now))
    .execute();

  await db.schema
    .createTable("memberships")
    .addColumn(
      "account_id",
      "uuid",
      (c) => c.notNull().references("accounts.id").onDelete("cascade"),
    )
    .addColumn("user_id", "uuid", (c) => c.notNull().references("users.id").onDelete("cascade"))
    .addColumn(
      "role",
      "text",
      (c) => c.notNull().check(sql`role in ('owner', 'admin', 'member', 'viewer')`),
    )
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(now))
    .addPrimaryKeyConstraint("memberships_pkey", ["account_id", "user_id"])
    .execute();

  await db.schema
    .createTable("api_keys")
    .addColumn("id", "uuid", (c) => c.primaryKey().defaultTo(uuid))
    .addColumn(
      "account_id",
      "uuid",
      (c) => c.notNull().references("accounts.id").onDelete("cascade"),
    )
    .addColumn("name", "text", (c) => c.notNull())
    .addColumn("key_hash", "text", (c) => c.notNull().unique())
    .addColumn("prefix", "text", (c) => c.notNull())
    .addColumn("last4", "text", (c) => c.notNull())
    .addColumn("scopes", sql`text[]`, (c) => c.notNull().defaultTo(sql`'{inference}'`))
    .addColumn(
      "status",
      "text",
      (c) => c.notNull().defaultTo("active").check(sql`status in ('active', 'revoked')`),
    )
    .addColumn("expires_at", "timestamptz")
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(now))
    .addColumn("last_used_at", "timestamptz")
    .addColumn("revoked_at", "timestamptz")
    .execute();
  await db.schema.createIndex("api_keys_account_idx").on("api_keys").column("account_id").execute();

  await db.schema
    .createTable("providers")
    .addColumn("id", "uuid", (c) => c.primaryKey().defaultTo(uuid))
    .addColumn("name", "text", (c) => c.notNull().unique())
    .addColumn(
      "kind",
      "text",
      (c) => c.notNull().check(sql`kind in ('openai_compat', 'anthropic', 'mock')`),
    )
    .addColumn("base_url", "text")
    .addColumn("credential_ciphertext", "text")
    .addColumn("credential_last4", "text")
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(now))
    .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(now))
    .execute();

  await db.schema
    .createTable("models")
    .addColumn("id", "uuid", (c) => c.primaryKey().defaultTo(uuid))
    .addColumn("name", "text", (c) => c.notNull().unique())
    .addColumn(
      "provider_id",
      "uuid",
      (c) => c.notNull().references("providers.id").onDelete("restrict"),
    )
    .addColumn("upstream_name", "text", (c) => c.notNull())
    .addColumn("input_price", "int8", (c) => c.notNull().defaultTo(0).check(sql`input_price >= 0`))
    .addColumn(
      "output_price",
      "int8",
      (c) => c.notNull().defaultTo(0).check(sql`output_price >= 0`),
    )
    .addColumn(
      "cached_input_price",
      "int8",
      (c) => c.notNull().defaultTo(0).check(sql`cached_input_price >= 0`),
    )
    .addColumn("max_output_tokens", "integer")
    .addColumn(
      "status",
      "text",
      (c) => c.notNull().defaultTo("active").check(sql`status in ('active', 'disabled')`),
    )
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(now))
    .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(now))
    .execute();

  await db.schema
    .createTable("ledger_entries")
    .addColumn("id", "int8", (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn("transaction_id", "uuid", (c) => c.notNull())
    .addColumn("book", "text", (c) => c.notNull())
    .addColumn("account_id", "uuid", (c) => c.references("accounts.id").onDelete("restrict"))
    .addColumn("kind", "text", (c) => c.notNull())
    .addColumn("amount", "int8", (c) => c.notNull())
    .addColumn("reference", "text")
    .addColumn("memo", "text")
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(now))
    .execute();
  await db.schema.createIndex("ledger_entries_account_idx").on("ledger_entries").columns([
    "account_id",
    "id",
  ]).execute();
  await db.schema.createIndex("ledger_entries_transaction_idx").on("ledger_entries").column(
    "transaction_id",
  ).execute();

  await db.schema
    .createTable("usage_events")
    .addColumn("request_id", "text", (c) => c.primaryKey())
    .addColumn("account_id", "uuid", (c) => c.notNull())
    .addColumn("api_key_id", "uuid", (c) => c.notNull())
    .addColumn("agent_name", "text")
    .addColumn("agent_purpose", "text")
    .addColumn("agent_owner", "text")
    .addColumn("endpoint", "text", (c) => c.notNull())
    .addColumn("model", "text", (c) => c.notNull())
    .addColumn("provider_id", "uuid")
    .addColumn("provider_name", "text")
    .addColumn("upstream_model", "text")
    .addColumn("status", "integer", (c) => c.notNull())
    .addColumn("error_code", "text")
    .addColumn("stream", "boolean", (c) => c.notNull())
    .addColumn("prompt_tokens", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("completion_tokens", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("cached_tokens", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("total_tokens", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("cost", "int8", (c) => c.notNull().defaultTo(0))
    .addColumn("estimated", "boolean", (c) => c.notNull().defaultTo(false))
    .addColumn("latency_ms", "integer", (c) => c.notNull())
    .addColumn("ttfb_ms", "integer")
    .addColumn("created_at", "timestamptz", (c) => c.notNull())
    .execute();
  await db.schema.createIndex("usage_events_account_time_idx").on("usage_events").columns([
    "account_id",
    "created_at",
  ]).execute();
  await db.schema.createIndex("usage_events_time_idx").on("usage_events").column("created_at")
    .execute();

  await db.schema
    .createTable("audit_log")
    .addColumn("id", "int8", (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn("actor", "text", (c) => c.notNull())
    .addColumn("action", "text", (c) => c.notNull())
    .addColumn("target_type", "text")
    .addColumn("target_id", "text")
    .addColumn("diff", "jsonb", (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .addColumn("ip", "text")
    .addColumn("request_id", "text")
    .addColumn("prev_hash", "text")
    .addColumn("hash", "text", (c) => c.notNull())
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(now))
    .execute();

  await db.schema
    .createTable("admin_tokens")
    .addColumn("id", "uuid", (c) => c.primaryKey().defaultTo(uuid))
    .addColumn("token_hash", "text", (c) => c.notNull().unique())
    .addColumn("prefix", "text", (c) => c.notNull())
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(now))
    .execute();

  // Append-only tables refuse UPDATE and DELETE, whoever issues them.
  await sql`
    create function tollgate_append_only() returns trigger language plpgsql as $$
    begin
      raise exception '% is append-only', TG_TABLE_NAME using errcode = 'restrict_violation';
    end $$`.execute(db);
  for (const table of ["ledger_entries", "audit_log"]) {
    await sql`
      create trigger ${sql.raw(`${table}_append_only`)} before update or delete on ${
      sql.table(table)
    }
      for each row execute function tollgate_append_only()`.execute(db);
  }

  // Every write to a policy table notifies the gateways, whatever path wrote it.
  // Trigger arguments name columns whose changes alone are not policy changes
  // (api_keys.last_used_at is bumped by metering, not by an operator).
  await sql`
    create function tollgate_notify_policy() returns trigger language plpgsql as $$
    declare
      row_id text;
    begin
      if TG_OP = 'UPDATE' and TG_NARGS > 0
         and (to_jsonb(OLD) - TG_ARGV::text[]) = (to_jsonb(NEW) - TG_ARGV::text[]) then
        return null;
      end if;
      row_id := case when TG_OP = 'DELETE' then OLD.id::text else NEW.id::text end;
      perform pg_notify('tollgate_policy',
        json_build_object('table', TG_TABLE_NAME, 'op', TG_OP, 'id', row_id)::text);
      return null;
    end $$`.execute(db);
  for (const table of ["accounts", "providers", "models"]) {
    await sql`
      create trigger ${sql.raw(`${table}_notify_policy`)} after insert or update or delete on ${
      sql.table(table)
    }
      for each row execute function tollgate_notify_policy()`.execute(db);
  }
  await sql`
    create trigger api_keys_notify_policy after insert or update or delete on api_keys
    for each row execute function tollgate_notify_policy('last_used_at')`.execute(db);
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  for (
    const table of [
      "admin_tokens",
      "audit_log",
      "usage_events",
      "ledger_entries",
      "models",
      "providers",
      "api_keys",
      "memberships",
      "users",
      "accounts",
    ]
  ) {
    await db.schema.dropTable(table).ifExists().execute();
  }
  await sql`drop function if exists tollgate_notify_policy()`.execute(db);
  await sql`drop function if exists tollgate_append_only()`.execute(db);
}
