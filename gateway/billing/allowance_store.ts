/**
 * The database side of allowances (see allowances.ts): each operation is one
 * statement, so one round trip, and each keeps an account's `reserved` equal
 * to the sum of its leases' amounts.
 *
 * - grow: takes more of an account's free balance (`balance - reserved`) into
 *   a lease, creating the lease if needed. The account row is locked for the
 *   statement, so concurrent replicas serialise on it and none can take what
 *   another took: this conditional update is the whole cross-replica
 *   guarantee.
 * - consume: settled charges use up their lease (and leave `reserved`); the
 *   balance itself is debited by the ledger posting in the same transaction.
 * - release / renew / sweep: give back what a lease did not use, keep a live
 *   one from expiring, reclaim the leases of replicas that stopped renewing.
 *
 * These are the leases of kind 'balance'. A key's spend limit
 * (key_allowance_store.ts) and a month's free BYOK requests
 * (byok_free_store.ts) lease from their own counters in the same table, with
 * the same contract, so createAllowances serves all three.
 */
import { type Kysely, sql } from "kysely";
import type { Database } from "../../schema/database.ts";

export interface Lease {
  id: string;
  /** Microcents now leased in total (what was there plus what was granted). */
  amount: bigint;
  /** Microcents this call added. */
  granted: bigint;
  /** The account's balance when the lease grew (before charges not yet settled). */
  balance: bigint;
}

export interface GrowRequest {
  /** What is leased from: an account here; a key, or an account's month, in the other stores. */
  accountId: string;
  /** The lease to grow; a new one is made when null or when it was swept. */
  leaseId: string | null;
  replicaId: string;
  /** Grant nothing unless at least this much is free. */
  min: bigint;
  /** Grant at most this much. */
  max: bigint;
  /**
   * Take at most 1/share of the free balance (but never less than `min`), so
   * replicas share a small balance instead of one taking it all.
   */
  share: number;
  ttlMs: number;
}

export interface AllowanceStore {
  /** More allowance, or null when the free balance is below `min` (or the account is not active). */
  grow(request: GrowRequest): Promise<Lease | null>;
  /** Gives back what is left of a lease and deletes it. */
  release(leaseId: string): Promise<void>;
  /** Pushes a lease's expiry out; false when it is gone (swept). */
  renew(leaseId: string, ttlMs: number): Promise<boolean>;
  /** Deletes expired leases and returns their amounts to the balance; the number reclaimed. */
  sweep(): Promise<number>;
}

export function createAllowanceStore(db: Kysely<Database>): AllowanceStore {
  return {
    async grow(r) {
      const share = BigInt(Math.max(1, Math.floor(r.share)));
      const { rows } = await sql<{ id: string; amount: string; granted: string; balance: string }>`
        with account as (
          select id, balance, balance - reserved as free from accounts
          where id = ${r.accountId} and status = 'active'
          for update
        ), grant_ as (
          select id as account_id,
            least(${r.max}::int8, free, greatest(${r.min}::int8, free / ${share}::int8)) as amount
          from account where free >= ${r.min}::int8 and free > 0
        ), reserve as (
          update accounts set reserved = accounts.reserved + grant_.amount
          from grant_ where accounts.id = grant_.account_id
          returning grant_.amount
        ), grown as (
          update allowances set amount = allowances.amount + reserve.amount,
            expires_at = now() + make_interval(secs => ${
        r.ttlMs / 1000
      }::float8), updated_at = now()
          from reserve where allowances.id = ${r.leaseId}::uuid
          returning allowances.id, allowances.amount, reserve.amount as granted
        ), created as (
          insert into allowances (account_id, replica_id, amount, expires_at)
          select ${r.accountId}, ${r.replicaId}, reserve.amount,
            now() + make_interval(secs => ${r.ttlMs / 1000}::float8)
          from reserve where not exists (select 1 from grown)
          returning id, amount, amount as granted
        )
        select id, amount::text, granted::text, (select balance::text from account) as balance
        from grown
        union all
        select id, amount::text, granted::text, (select balance::text from account) from created
      `.execute(db);
      const row = rows[0];
      if (!row) return null;
      return {
        id: row.id,
        amount: BigInt(row.amount),
        granted: BigInt(row.granted),
        balance: BigInt(row.balance),
      };
    },

    async release(leaseId) {
      await db.transaction().execute(async (trx) => {
        await sql`
          select 1 from accounts where id = (
            select account_id from allowances where id = ${leaseId} and kind = 'balance'
          ) for update
        `.execute(trx);
        await sql`
          with gone as (
            delete from allowances where id = ${leaseId} and kind = 'balance'
            returning account_id, amount
          )
          update accounts set reserved = accounts.reserved - gone.amount
          from gone where accounts.id = gone.account_id
        `.execute(trx);
      });
    },

    renew: (leaseId, ttlMs) => renewLease(db, leaseId, ttlMs),

    async sweep() {
      return await db.transaction().execute(async (trx) => {
        if (!await sweepLock(trx, "balance")) return 0;
        // now() is the transaction's start: both statements see the same expired leases.
        await sql`
          select 1 from accounts where id in (
            select account_id from allowances where expires_at < now() and kind = 'balance'
          ) order by id for update
        `.execute(trx);
        const { rows } = await sql<{ n: number }>`
        with gone as (
          delete from allowances where expires_at < now() and kind = 'balance'
          returning account_id, amount
        ), per_account as (
          select account_id, sum(amount)::int8 as amount, count(*)::int as n
          from gone group by account_id
        ), returned as (
          update accounts set reserved = accounts.reserved - per_account.amount
          from per_account where accounts.id = per_account.account_id
          returning per_account.n
        )
        select coalesce(sum(n), 0)::int as n from returned
      `.execute(trx);
        return rows[0]?.n ?? 0;
      });
    },
  };
}

/**
 * Whether this transaction sweeps leases of `kind`: every gateway runs the
 * sweeper (a fleet reclaims a dead replica's leases whether or not a control
 * plane runs), and one at a time does the work; the others skip that round.
 */
export async function sweepLock(trx: Kysely<Database>, kind: string): Promise<boolean> {
  const { rows } = await sql<{ locked: boolean }>`
    select pg_try_advisory_xact_lock(hashtext(${`tollgate:sweep:${kind}`})) as locked
  `.execute(trx);
  return rows[0]?.locked === true;
}

/** Pushes a lease's expiry out, whatever its kind; false when it is gone (swept). */
export async function renewLease(
  db: Kysely<Database>,
  leaseId: string,
  ttlMs: number,
): Promise<boolean> {
  const { rows } = await sql<{ id: string }>`
    update allowances set expires_at = now() + make_interval(secs => ${ttlMs / 1000}::float8),
      updated_at = now()
    where id = ${leaseId} returning id
  `.execute(db);
  return rows.length > 0;
}

/**
 * Settles charges against their leases inside the caller's transaction (the
 * one that posts them to the ledger): each lease gives up what was charged
 * to it, down to zero, and the account's `reserved` drops by the same. A
 * charge beyond what its lease still holds (the upstream reported more than
 * was reserved) is not reserved anywhere: the ledger debits it from the
 * balance all the same.
 */
export async function consumeLeases(
  trx: Kysely<Database>,
  charges: ReadonlyMap<string, bigint>,
): Promise<void> {
  if (charges.size === 0) return;
  const rows = JSON.stringify([...charges].map(([id, amount]) => ({ id, amount: String(amount) })));
  await sql`
    with charge as (
      select x.id, x.amount from json_to_recordset(${rows}::text::json) as x(id uuid, amount int8)
    ), used as (
      select a.id, a.account_id, least(a.amount, charge.amount) as amount
      from allowances a join charge on charge.id = a.id
      where a.kind = 'balance'
      for update of a
    ), leases as (
      update allowances set amount = allowances.amount - used.amount, updated_at = now()
      from used where allowances.id = used.id
      returning used.account_id, used.amount
    ), per_account as (
      select account_id, sum(amount)::int8 as amount from leases group by account_id
    )
    update accounts set reserved = accounts.reserved - per_account.amount
    from per_account where accounts.id = per_account.account_id
  `.execute(trx);
}
