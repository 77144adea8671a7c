/**
 * What the books say once the gateway's usage queue is flushed (settled):
 * one request's usage row and the ledger transaction it names, an account's
 * balance beside its entries, and the control plane's reconciliation.
 */
import { sql } from "kysely";
import type { Stack } from "./stack.ts";

export interface RequestCharge {
  /** The usage row's billing mode, cost (BYOK: the would-be cost, not charged) and fee. */
  mode: string;
  cost: bigint;
  fee: bigint;
  /** The ledger kind of the request's transaction; null when it was not charged. */
  kind: string | null;
  /** The transaction's amount in each book, the request's own account's book as `customer`. */
  entries: Record<string, bigint>;
  /** How many usage rows name that transaction (0 when there is none). */
  requests: number;
}

/** The charge of the request `requestId` (its x-request-id), as the ledger recorded it. */
export async function chargeOf(stack: Stack, requestId: string): Promise<RequestCharge> {
  await stack.gateway.usage.flush();
  const db = stack.database.db.db;
  const row = await db.selectFrom("usage_events")
    .select(["account_id", "billing_mode", "cost", "fee", "ledger_transaction_id"])
    .where("request_id", "=", requestId).executeTakeFirstOrThrow();
  const tx = row.ledger_transaction_id;
  const charge = { mode: row.billing_mode, cost: row.cost, fee: row.fee };
  if (tx === null) return { ...charge, kind: null, entries: {}, requests: 0 };
  const entries = await db.selectFrom("ledger_entries").select(["book", "kind", "amount"])
    .where("transaction_id", "=", tx).execute();
  const kinds = [...new Set(entries.map((e) => e.kind))];
  if (kinds.length !== 1) throw new Error(`Transaction ${tx} has kinds ${kinds.join(", ")}`);
  const { count } = await db.selectFrom("usage_events")
    .select((eb) => eb.fn.countAll<string>().as("count"))
    .where("ledger_transaction_id", "=", tx).executeTakeFirstOrThrow();
  const own = `customer:${row.account_id}`;
  return {
    ...charge,
    kind: kinds[0]!,
    entries: Object.fromEntries(
      entries.map((e) => [e.book === own ? "customer" : e.book, e.amount]),
    ),
    requests: Number(count),
  };
}

/** An account's balance, what its leases hold reserved, and the sum of its book's entries. */
export async function accountBooks(stack: Stack, accountId: string) {
  await stack.gateway.usage.flush();
  const { rows } = await sql<{ balance: string; reserved: string; entries: string }>`
    select balance::text, reserved::text,
      (select coalesce(sum(amount), 0) from ledger_entries where book = 'customer:' || accounts.id)::text
        as entries
    from accounts where id = ${accountId}
  `.execute(stack.database.db.db);
  const row = rows[0]!;
  return {
    balance: BigInt(row.balance),
    reserved: BigInt(row.reserved),
    entries: BigInt(row.entries),
  };
}

export interface Reconciliation {
  balanced: boolean;
  entriesSum: string;
  unbalancedTransactions: number;
  accounts: { accountId: string; balance: string; entriesSum: string; balanced: boolean }[];
}

/** The control plane's ledgerReconciliation, as an operator reads it. */
export async function reconcile(stack: Stack): Promise<Reconciliation> {
  await stack.gateway.usage.flush();
  const result = await stack.graphql<{ ledgerReconciliation: Reconciliation }>(
    `{ ledgerReconciliation { balanced entriesSum unbalancedTransactions
      accounts { accountId balance entriesSum balanced } } }`,
  );
  if (!result.data) throw new Error(`ledgerReconciliation failed: ${JSON.stringify(result)}`);
  return result.data.ledgerReconciliation;
}
