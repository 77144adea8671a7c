// Frozen in time: imports no app code. Agents named by X-Agent-Identity,
// recorded per account the first time a request names them.
import { type Kysely, sql } from "kysely";

// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable("agents")
    .addColumn("id", "uuid", (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn(
      "account_id",
      "uuid",
      (c) => c.notNull().references("accounts.id").onDelete("cascade"),
    )
    .addColumn("name", "text", (c) => c.notNull())
    .addColumn("purpose", "text")
    .addColumn("owner", "text")
    .addColumn("first_seen_at", "timestamptz", (c) => c.notNull())
    .addColumn("last_seen_at", "timestamptz", (c) => c.notNull())
    .addUniqueConstraint("agents_account_name_key", ["account_id", "name"])
    .execute();
  await db.schema.createIndex("usage_events_agent_idx").on("usage_events")
    .columns(["account_id", "agent_name", "created_at"]).execute();
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex("usage_events_agent_idx").ifExists().execute();
  await db.schema.dropTable("agents").ifExists().execute();
}
