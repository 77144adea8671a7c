// Frozen in time: imports no app code. BYOK: customers' own provider keys,
// one per account and provider, envelope-sealed (the app's schema/envelope.ts)
// so that only the last 4 characters are ever readable without the KEK.
import { type Kysely, sql } from "kysely";

// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable("customer_provider_keys")
    .addColumn("id", "uuid", (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn(
      "account_id",
      "uuid",
      (c) => c.notNull().references("accounts.id").onDelete("cascade"),
    )
    .addColumn(
      "provider_id",
      "uuid",
      (c) => c.notNull().references("providers.id").onDelete("cascade"),
    )
    // "v1.<kek id>.<wrapped data key>.<iv>.<ciphertext>", bound to account and provider.
    .addColumn("ciphertext", "text", (c) => c.notNull())
    // The KEK the data key is wrapped under, so a rotation can find what is left to re-wrap.
    .addColumn("kek_id", "text", (c) => c.notNull())
    .addColumn("last4", "text", (c) => c.notNull())
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addUniqueConstraint("customer_provider_keys_account_provider_key", [
      "account_id",
      "provider_id",
    ])
    .execute();
  // The unique constraint indexes account_id first; deleting a provider needs its own.
  await db.schema.createIndex("customer_provider_keys_provider_id_idx")
    .on("customer_provider_keys").column("provider_id").execute();
  await sql`
    create trigger customer_provider_keys_notify_policy
    after insert or update or delete on customer_provider_keys
    for each row execute function tollgate_notify_policy()`.execute(db);
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("customer_provider_keys").ifExists().execute();
}
