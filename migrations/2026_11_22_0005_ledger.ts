// Frozen in time: imports no app code. The ledger's rules in the database:
// no zero entries, known kinds, a customer book always names its own account,
// a reference posts once per kind (one entry per book of the transaction),
// and no TRUNCATE (0001's append-only trigger is per row, which TRUNCATE skips).
import { type Kysely, sql } from "kysely";

// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("ledger_entries")
    .addCheckConstraint("ledger_entries_amount_nonzero", sql`amount <> 0`)
    .execute();
  await db.schema.alterTable("ledger_entries")
    .addCheckConstraint(
      "ledger_entries_kind_check",
      sql`kind in ('topup', 'charge', 'fee', 'refund', 'adjustment', 'byok_fee')`,
    )
    .execute();
  await db.schema.alterTable("ledger_entries")
    .addCheckConstraint(
      "ledger_entries_customer_book_check",
      sql`book not like 'customer:%' or
        (account_id is not null and book = 'customer:' || account_id::text)`,
    )
    .execute();
  // Posting a reference again conflicts on every entry and writes nothing.
  await db.schema.createIndex("ledger_entries_reference_key").unique().on("ledger_entries")
    .columns(["kind", "reference", "book"]).where(sql.ref("reference"), "is not", null)
    .execute();
  // A book's entries, newest first (an account's statement, reconciliation).
  await db.schema.createIndex("ledger_entries_book_idx").on("ledger_entries")
    .columns(["book", "id"]).execute();
  await sql`
    create trigger ledger_entries_no_truncate before truncate on ledger_entries
    for each statement execute function tollgate_append_only()`.execute(db);
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop trigger if exists ledger_entries_no_truncate on ledger_entries`.execute(db);
  await db.schema.dropIndex("ledger_entries_book_idx").ifExists().execute();
  await db.schema.dropIndex("ledger_entries_reference_key").ifExists().execute();
  for (
    const name of [
      "ledger_entries_customer_book_check",
      "ledger_entries_kind_check",
      "ledger_entries_amount_nonzero",
    ]
  ) {
    await db.schema.alterTable("ledger_entries").dropConstraint(name).ifExists().execute();
  }
}
