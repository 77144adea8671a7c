// Frozen in time: imports no app code. Allowances: the part of an account's
// balance a gateway replica has leased to reserve from in memory. An
// account's `reserved` is the sum of its leases' amounts, and a lease is
// granted only while `balance - reserved` covers it, so across any number of
// replicas spent + reserved never exceeds what was credited. Usage events
// record how each request was billed.
import { type Kysely, sql } from "kysely";

// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable("accounts")
    .addColumn("reserved", "int8", (c) => c.notNull().defaultTo(0).check(sql`reserved >= 0`))
    .execute();

  await db.schema
    .createTable("allowances")
    .addColumn("id", "uuid", (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn(
      "account_id",
      "uuid",
      (c) => c.notNull().references("accounts.id").onDelete("cascade"),
    )
    // The gateway process holding the lease (for operators; expiry is what reclaims it).
    .addColumn("replica_id", "text", (c) => c.notNull())
    // Microcents still leased: reservations in memory are taken from it, and
    // settled charges consume it.
    .addColumn("amount", "int8", (c) => c.notNull().check(sql`amount >= 0`))
    .addColumn("expires_at", "timestamptz", (c) => c.notNull())
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex("allowances_expires_idx").on("allowances").column("expires_at")
    .execute();
  await db.schema.createIndex("allowances_account_idx").on("allowances").column("account_id")
    .execute();

  // Balances now move with every settled batch: those changes are money, not
  // policy, and must not make every gateway reload its snapshot.
  await sql`drop trigger accounts_notify_policy on accounts`.execute(db);
  await sql`
    create trigger accounts_notify_policy after insert or update or delete on accounts
    for each row execute function tollgate_notify_policy('balance', 'reserved', 'updated_at')`
    .execute(db);

  // What each request was billed: the mode, and the operator's fee on top of `cost`.
  await db.schema.alterTable("usage_events")
    .addColumn(
      "billing_mode",
      "text",
      (c) => c.notNull().defaultTo("standard").check(sql`billing_mode in ('standard', 'byok')`),
    )
    .addColumn("fee", "int8", (c) => c.notNull().defaultTo(0))
    .execute();
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("usage_events").dropColumn("fee").dropColumn("billing_mode").execute();
  await sql`drop trigger accounts_notify_policy on accounts`.execute(db);
  await sql`
    create trigger accounts_notify_policy after insert or update or delete on accounts
    for each row execute function tollgate_notify_policy()`.execute(db);
  await db.schema.dropTable("allowances").ifExists().execute();
  await db.schema.alterTable("accounts").dropColumn("reserved").execute();
}
