// Frozen in time: imports no app code. Routing: model aliases (routes) with an
// ordered list of target models, the provider preset an openai_compat
// provider is configured from, and a per-key model allowlist.
import { type Kysely, sql } from "kysely";

// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("providers").addColumn("preset", "text").execute();
  // null: the key may use every model; otherwise the model and alias names it may use.
  await db.schema.alterTable("api_keys").addColumn("allowed_models", sql`text[]`).execute();

  await db.schema
    .createTable("routes")
    .addColumn("id", "uuid", (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn("name", "text", (c) => c.notNull().unique())
    .addColumn(
      "strategy",
      "text",
      (c) => c.notNull().defaultTo("fallback").check(sql`strategy in ('fallback', 'cheapest')`),
    )
    // Model names, in the order they are tried (for 'cheapest', the tie order).
    .addColumn(
      "targets",
      sql`text[]`,
      (c) => c.notNull().check(sql`cardinality(targets) between 1 and 16`),
    )
    .addColumn("timeout_ms", "integer", (c) => c.check(sql`timeout_ms > 0`))
    .addColumn(
      "status",
      "text",
      (c) => c.notNull().defaultTo("active").check(sql`status in ('active', 'disabled')`),
    )
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await sql`
    create trigger routes_notify_policy after insert or update or delete on routes
    for each row execute function tollgate_notify_policy()`.execute(db);
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("routes").ifExists().execute();
  await db.schema.alterTable("api_keys").dropColumn("allowed_models").execute();
  await db.schema.alterTable("providers").dropColumn("preset").execute();
}
