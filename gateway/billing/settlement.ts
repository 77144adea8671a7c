/**
 * Settling a batch of answered requests in the transaction that records
 * their usage: each request's charge becomes one ledger transaction
 * (schema/ledger.ts's standardCharge or byokFee books, posted in bulk), the
 * balances move by the entries actually written, and the leases the charges
 * were reserved from are consumed. The request id is each transaction's
 * reference, so replaying a batch (the spool after a crash) posts nothing
 * twice and moves no balance twice.
 */
import { type Kysely, sql } from "kysely";
import type { Database } from "../../schema/database.ts";
import type { UsageRecord } from "../metering/usage_event.ts";
import { consumeLeases } from "./allowance_store.ts";

export interface RequestCharge {
  requestId: string;
  accountId: string;
  /** "charge" (Standard: cost to the provider books, fee to revenue) or "byok_fee" (fee only). */
  kind: "charge" | "byok_fee";
  cost: bigint;
  fee: bigint;
  /** The lease the request's reservation came from, if any. */
  leaseId: string | null;
}

/** The charge a usage row carries, or null when its request was not billed. */
export function requestCharge(event: UsageRecord): RequestCharge | null {
  if (event.lease_id === undefined) return null;
  const byok = event.billing_mode === "byok";
  return {
    requestId: event.request_id,
    accountId: event.account_id,
    kind: byok ? "byok_fee" : "charge",
    cost: byok ? 0n : BigInt(event.cost),
    fee: BigInt(event.fee ?? 0),
    leaseId: event.lease_id,
  };
}

/** What one lease's charges came to in a settled batch. */
export interface LeaseCharges {
  accountId: string;
  leaseId: string;
  amount: bigint;
}

/** Posts the charges and consumes their leases; returns what each lease's charges came to. */
export async function settleCharges(
  trx: Kysely<Database>,
  charges: readonly RequestCharge[],
): Promise<LeaseCharges[]> {
  const billed = charges.filter((c) => c.cost + c.fee > 0n);
  if (billed.length === 0) return [];
  // Accounts are locked in one order, so replicas settling overlapping
  // accounts queue behind each other instead of deadlocking.
  const accountIds = [...new Set(billed.map((c) => c.accountId))].sort();
  await sql`
    select 1 from accounts where id = any(${accountIds}::uuid[]) order by id for update
  `.execute(trx);
  const rows = JSON.stringify(billed.map((c) => ({
    tx: crypto.randomUUID(),
    reference: c.requestId,
    account_id: c.accountId,
    kind: c.kind,
    cost: String(c.cost),
    fee: String(c.fee),
  })));
  const { rows: posted } = await sql<{ reference: string }>`
    with charge as (
      select * from jsonb_to_recordset(${rows}::text::jsonb)
        as x(tx uuid, reference text, account_id uuid, kind text, cost int8, fee int8)
    ), entry as (
      select tx, reference, account_id, kind, 'customer:' || account_id::text as book,
        -(cost + fee) as amount from charge
      union all
      select tx, reference, account_id, kind, 'system:provider_costs', cost from charge where cost > 0
      union all
      select tx, reference, account_id, kind, 'system:revenue', fee from charge where fee > 0
    ), inserted as (
      insert into ledger_entries (transaction_id, book, account_id, kind, amount, reference)
      select tx, book, account_id, kind, amount, reference from entry
      on conflict (kind, reference, book) where reference is not null do nothing
      returning account_id, book, amount, reference
    ), per_account as (
      select account_id, sum(amount)::int8 as delta from inserted
      where book like 'customer:%' group by account_id
    ), moved as (
      update accounts set balance = accounts.balance + per_account.delta, updated_at = now()
      from per_account where accounts.id = per_account.account_id
      returning accounts.id
    )
    select distinct reference from inserted where book like 'customer:%'
  `.execute(trx);
  const fresh = new Set(posted.map((row) => row.reference));
  const byLease = new Map<string, LeaseCharges>();
  for (const charge of billed) {
    if (!charge.leaseId || !fresh.has(charge.requestId)) continue;
    const lease = byLease.get(charge.leaseId) ??
      { accountId: charge.accountId, leaseId: charge.leaseId, amount: 0n };
    lease.amount += charge.cost + charge.fee;
    byLease.set(charge.leaseId, lease);
  }
  await consumeLeases(trx, new Map([...byLease].map(([id, lease]) => [id, lease.amount])));
  return [...byLease.values()];
}
