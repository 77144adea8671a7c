/**
 * Settling a batch of answered requests in the transaction that records
 * their usage. Each account's charges of one kind in the batch are one
 * ledger transaction of (at most) three entries: the customer's, debiting
 * the sum of cost + fee, balanced by a provider-costs entry (the costs' sum)
 * and a revenue entry (the fees' sum), each with the memo "N requests":
 * schema/ledger.ts's standardCharge and byokFee books, summed over the batch.
 * Each charged usage row names its transaction (ledger_transaction_id).
 *
 * The usage row is the idempotency key: its request id is its primary key,
 * and only the requests whose rows the transaction inserted are settled
 * (usage_batch.ts), so replaying a batch (the spool after a crash) charges
 * no request twice. The leases the charges were reserved from are consumed
 * by the same amounts.
 *
 * Three entries a request cost Postgres about 2.7 times the work of one entry
 * a request and two a batch (5 indexes and a foreign key per entry); one
 * entry a request took about 19 µs of Postgres per request under load, three
 * entries a batch take next to nothing.
 *
 * The same transaction adds each charge to its key's lifetime spend and
 * consumes the key's spend-limit lease, and counts BYOK requests in their
 * month (byok_free_store.ts), consuming the free requests they used.
 */
import { type Kysely, sql } from "kysely";
import type { Database } from "../../schema/database.ts";
import { isoTime, type UsageRecord } from "../metering/usage_event.ts";
import { consumeLeases } from "./allowance_store.ts";
import { type ByokCount, countByokRequests } from "./byok_free_store.ts";
import { chargeKeys } from "./key_allowance_store.ts";

/** A usage row with the other leases its request reserved from (not columns either). */
export type BilledUsage = UsageRecord & {
  /** The key_limit lease, for a key with a spend limit that reserved money. */
  key_lease_id?: string | null;
  /** The byok_free lease of a free BYOK request; null or absent when it paid the fee. */
  free_lease_id?: string | null;
};

export interface RequestCharge {
  requestId: string;
  accountId: string;
  /** "charge" (Standard: cost to the provider books, fee to revenue) or "byok_fee" (fee only). */
  kind: "charge" | "byok_fee";
  cost: bigint;
  fee: bigint;
  /** The lease the request's reservation came from, if any. */
  leaseId: string | null;
  /** The key that made the request: its lifetime spend grows by the charge. */
  keyId?: string;
  /** The key_limit lease the reservation also came from, if the key has a limit. */
  keyLeaseId?: string | null;
  /** A BYOK request that counts in its month: the month's first day, and its free lease. */
  byok?: { month: string; freeLeaseId: string | null };
  /** The ledger transaction a charge of more than zero is posted in (assignTransactions). */
  transactionId?: string;
}

/**
 * Gives each account's charges of one kind (those of more than zero) one new
 * ledger transaction id, before their usage rows are written with it.
 */
export function assignTransactions(charges: readonly RequestCharge[]): void {
  const ids = new Map<string, string>();
  for (const charge of charges) {
    if (charge.cost + charge.fee <= 0n) continue;
    const group = `${charge.accountId} ${charge.kind}`;
    let id = ids.get(group);
    if (id === undefined) ids.set(group, id = crypto.randomUUID());
    charge.transactionId = id;
  }
}

/**
 * Whether a BYOK request counts in its month's requests (and so uses a free
 * one): when it was answered (200, a cut stream included) or interrupted
 * (status 0: the gateway died with it upstream), not when it failed.
 */
export function countsInMonth(status: number): boolean {
  return status === 200 || status === 0;
}

/** The charge a usage row carries, or null when its request was not billed. */
export function requestCharge(event: BilledUsage): RequestCharge | null {
  if (event.lease_id === undefined) return null;
  const byok = event.billing_mode === "byok";
  const charge: RequestCharge = {
    requestId: event.request_id,
    accountId: event.account_id,
    kind: byok ? "byok_fee" : "charge",
    cost: byok ? 0n : BigInt(event.cost),
    fee: BigInt(event.fee ?? 0),
    leaseId: event.lease_id,
    keyId: event.api_key_id,
  };
  if (event.key_lease_id) charge.keyLeaseId = event.key_lease_id;
  if (byok && countsInMonth(event.status)) {
    const month = isoTime(event.created_at).slice(0, 7);
    charge.byok = { month: `${month}-01`, freeLeaseId: event.free_lease_id ?? null };
  }
  return charge;
}

/**
 * What one lease's charges came to in a settled batch. `pool` says what it
 * was leased from: absent for an account's balance; "key_limit" for a key's
 * spend limit (`accountId` is then the key's id); "byok_free" for a month's
 * free BYOK requests (`accountId` is its byokMonth() subject, `amount` a
 * number of requests).
 */
export interface LeaseCharges {
  pool?: "key_limit" | "byok_free";
  accountId: string;
  leaseId: string;
  amount: bigint;
}

/**
 * Locks the rows settling updates, parents before their leases and each kind
 * in one order: the accounts (by id), then the keys (by id). Grow, release
 * and sweep (allowance_store.ts and its siblings) take them in the same
 * order, so replicas settling and leasing at once queue behind each other
 * instead of deadlocking. Call it first in the settling transaction, with
 * every key that transaction updates (usage_batch.ts adds the keys whose
 * last_used_at it moves), before settleCharges.
 */
export async function lockForSettlement(
  trx: Kysely<Database>,
  charges: readonly RequestCharge[],
  moreKeyIds: readonly string[] = [],
): Promise<void> {
  const accountIds = [...new Set(charges.map((c) => c.accountId))].sort();
  if (accountIds.length > 0) {
    await sql`
      select 1 from accounts where id = any(${accountIds}::uuid[]) order by id for update
    `.execute(trx);
  }
  const keyIds = [
    ...new Set([...charges.flatMap((c) => c.keyId ? [c.keyId] : []), ...moreKeyIds]),
  ].sort();
  if (keyIds.length === 0) return;
  await sql`
    select 1 from api_keys where id = any(${keyIds}::uuid[]) order by id for update
  `.execute(trx);
}

/**
 * Posts the charges and consumes their leases; returns what each lease's
 * charges came to. `charges` are the requests whose usage rows this
 * transaction inserted, each with its transactionId (assignTransactions);
 * the transaction holds lockForSettlement's locks already.
 */
export async function settleCharges(
  trx: Kysely<Database>,
  charges: readonly RequestCharge[],
): Promise<LeaseCharges[]> {
  const settled = await postCharges(trx, charges.filter((c) => c.cost + c.fee > 0n));
  const counts: ByokCount[] = [];
  for (const c of charges) {
    if (c.byok) counts.push({ requestId: c.requestId, accountId: c.accountId, ...c.byok });
  }
  if (counts.length > 0) {
    for (const used of await countByokRequests(trx, counts)) {
      settled.push({ pool: "byok_free", ...used });
    }
  }
  return settled;
}

interface Posting {
  tx: string;
  account_id: string;
  kind: RequestCharge["kind"];
  requests: number;
  cost: bigint;
  fee: bigint;
}

/** Posts the charges, consumes their leases and adds them to their keys' spend. */
async function postCharges(
  trx: Kysely<Database>,
  billed: readonly RequestCharge[],
): Promise<LeaseCharges[]> {
  if (billed.length === 0) return [];
  const postings = new Map<string, Posting>();
  const byLease = new Map<string, LeaseCharges>();
  const byKeyLease = new Map<string, LeaseCharges>();
  const keyCharges = [];
  for (const charge of billed) {
    const tx = charge.transactionId;
    if (tx === undefined) {
      throw new Error(`Cannot settle ${charge.requestId} without a transaction`);
    }
    const posting = postings.get(tx);
    if (posting) {
      posting.requests++;
      posting.cost += charge.cost;
      posting.fee += charge.fee;
    } else {
      const { accountId: account_id, kind, cost, fee } = charge;
      postings.set(tx, { tx, account_id, kind, requests: 1, cost, fee });
    }
    const amount = charge.cost + charge.fee;
    if (charge.leaseId) addTo(byLease, charge.leaseId, charge.accountId, amount);
    if (charge.keyId) {
      keyCharges.push({ keyId: charge.keyId, leaseId: charge.keyLeaseId ?? null, amount });
      if (charge.keyLeaseId) addTo(byKeyLease, charge.keyLeaseId, charge.keyId, amount);
    }
  }
  const rows = JSON.stringify(
    [...postings.values()].map((p) => ({ ...p, cost: String(p.cost), fee: String(p.fee) })),
  );
  await sql`
    with posting as (
      select * from json_to_recordset(${rows}::text::json)
        as x(tx uuid, account_id uuid, kind text, requests int4, cost int8, fee int8)
    ), entries as (
      insert into ledger_entries (transaction_id, book, account_id, kind, amount, memo)
      select tx, 'customer:' || account_id::text, account_id, kind, -(cost + fee),
        requests || ' requests' from posting
      union all
      select tx, 'system:provider_costs', account_id, kind, cost, requests || ' requests'
      from posting where cost > 0
      union all
      select tx, 'system:revenue', account_id, kind, fee, requests || ' requests'
      from posting where fee > 0
    )
    update accounts set balance = accounts.balance - total.amount, updated_at = now()
    from (select account_id, sum(cost + fee)::int8 as amount from posting group by 1) as total
    where accounts.id = total.account_id
  `.execute(trx);
  await consumeLeases(trx, new Map([...byLease].map(([id, lease]) => [id, lease.amount])));
  await chargeKeys(trx, keyCharges);
  const settled = [...byLease.values()];
  for (const lease of byKeyLease.values()) settled.push({ pool: "key_limit", ...lease });
  return settled;
}

function addTo(
  leases: Map<string, LeaseCharges>,
  leaseId: string,
  subject: string,
  amount: bigint,
): void {
  const lease = leases.get(leaseId) ?? { accountId: subject, leaseId, amount: 0n };
  lease.amount += amount;
  leases.set(leaseId, lease);
}
