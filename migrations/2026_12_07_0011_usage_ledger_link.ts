// Frozen in time: imports no app code. A billed usage row names the ledger
// transaction that charged it.
//
// Settling a batch now posts one customer entry per account and kind for the
// batch (the sum of its requests), not one per request: the usage row, whose
// request id is its primary key, is what makes a request's charge happen
// once, and ledger_transaction_id says which transaction it is in. Rows
// charged before this migration point at the transaction of their own
// entry (referenced by the request id). No index: each one more is paid by
// every usage batch, and a transaction's requests are found within an
// account's rows.
import { type Kysely, sql } from "kysely";

// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("usage_events").addColumn("ledger_transaction_id", "uuid").execute();
  await sql`
    update usage_events u set ledger_transaction_id = l.transaction_id
    from ledger_entries l
    where l.reference = u.request_id and l.kind in ('charge', 'byok_fee')
      and l.book = 'customer:' || u.account_id::text
  `.execute(db);
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("usage_events").dropColumn("ledger_transaction_id").execute();
}
