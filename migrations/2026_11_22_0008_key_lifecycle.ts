// Frozen in time: imports no app code. The API key lifecycle: a lifetime spend
// limit (enforced by gateway billing), an IP allowlist, per-minute request and
// token limits (enforced in memory by each gateway replica), and rotation with
// a grace period: the previous secret's hash is kept, with the instant it stops
// working, next to the current one. Only one previous secret is kept at a time.
// "Expired" is not a stored status: it is derived from expires_at, so a key
// expires at its instant without any job writing to it.
import { type Kysely, sql } from "kysely";

// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable("api_keys")
    // Lifetime spend limit in units of 1e-8 USD; null: no limit.
    .addColumn("spend_limit", "int8", (c) => c.check(sql`spend_limit >= 0`))
    // Addresses and CIDR ranges (canonical text) a request may come from; null: anywhere.
    .addColumn("allowed_ips", sql`text[]`)
    .addColumn("rpm_limit", "integer", (c) => c.check(sql`rpm_limit > 0`))
    .addColumn("tpm_limit", "integer", (c) => c.check(sql`tpm_limit > 0`))
    // The secret replaced by the latest rotation, accepted until previous_expires_at.
    .addColumn("previous_key_hash", "text", (c) => c.unique())
    .addColumn("previous_expires_at", "timestamptz")
    .addColumn("rotated_at", "timestamptz")
    .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema
    .alterTable("api_keys")
    .addCheckConstraint(
      "api_keys_previous_pair_check",
      sql`(previous_key_hash is null) = (previous_expires_at is null)`,
    )
    .execute();
  // The keys list pages newest first within an account, by (created_at, id).
  await db.schema.createIndex("api_keys_account_created_idx").on("api_keys")
    .columns(["account_id", "created_at desc", "id desc"]).execute();
  await db.schema.dropIndex("api_keys_account_idx").execute();
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.createIndex("api_keys_account_idx").on("api_keys").column("account_id")
    .execute();
  await db.schema.dropIndex("api_keys_account_created_idx").execute();
  await db.schema
    .alterTable("api_keys")
    .dropColumn("updated_at")
    .dropColumn("rotated_at")
    .dropColumn("previous_expires_at")
    .dropColumn("previous_key_hash")
    .dropColumn("tpm_limit")
    .dropColumn("rpm_limit")
    .dropColumn("allowed_ips")
    .dropColumn("spend_limit")
    .execute();
}
