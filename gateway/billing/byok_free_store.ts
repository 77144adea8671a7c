/**
 * Leases of an account's free BYOK requests for one calendar month (UTC),
 * with the contract of allowance_store.ts in units of requests: a replica
 * leases some of what is left of the month's free tier
 * (`freeRequests - free_requests - reserved` in byok_monthly_usage) with one
 * conditional update on the month's row, hands them out in memory
 * (createAllowances, keyed by byokMonth()), and the settled requests consume
 * them (settlement.ts). So across any number of replicas no more than the
 * free tier is ever granted: two replicas cannot both grant the millionth
 * free request. A request that finds none free pays the routing fee.
 *
 * The month's row is created by the first lease that needs it (a second
 * round trip, once per account and month).
 */
import { type Kysely, sql } from "kysely";
import type { Database } from "../../schema/database.ts";
import {
  type AllowanceStore,
  type GrowRequest,
  type Lease,
  renewLease,
  sweepLock,
} from "./allowance_store.ts";

/** The subject a month's free requests are leased under: `<account id>:<YYYY-MM>`. */
export function byokMonth(accountId: string, at: Date): string {
  return `${accountId}:${at.toISOString().slice(0, 7)}`;
}

/** The account and the month's first day ("2026-11-01") of a byokMonth() subject. */
export function parseByokMonth(subject: string): { accountId: string; month: string } {
  const at = subject.lastIndexOf(":");
  return { accountId: subject.slice(0, at), month: `${subject.slice(at + 1)}-01` };
}

export function createByokFreeStore(
  db: Kysely<Database>,
  options: { freeRequests: number },
): AllowanceStore {
  const limit = BigInt(options.freeRequests);

  async function tryGrow(r: GrowRequest): Promise<{ present: boolean; lease: Lease | null }> {
    const { accountId, month } = parseByokMonth(r.accountId);
    const share = BigInt(Math.max(1, Math.floor(r.share)));
    const ttl = r.ttlMs / 1000;
    const { rows } = await sql<{
      present: boolean;
      id: string | null;
      amount: string | null;
      granted: string | null;
      balance: string | null;
    }>`
      with counter as (
        select account_id, month, ${limit}::int8 - free_requests as balance,
          ${limit}::int8 - free_requests - reserved as free
        from byok_monthly_usage where account_id = ${accountId} and month = ${month}::date
        for update
      ), grant_ as (
        select account_id, month,
          least(${r.max}::int8, free, greatest(${r.min}::int8, free / ${share}::int8)) as amount
        from counter where free >= ${r.min}::int8 and free > 0
      ), reserve as (
        update byok_monthly_usage set reserved = byok_monthly_usage.reserved + grant_.amount,
          updated_at = now()
        from grant_
        where byok_monthly_usage.account_id = grant_.account_id
          and byok_monthly_usage.month = grant_.month
        returning grant_.amount
      ), grown as (
        update allowances set amount = allowances.amount + reserve.amount,
          expires_at = now() + make_interval(secs => ${ttl}::float8), updated_at = now()
        from reserve
        where allowances.id = ${r.leaseId}::uuid and allowances.kind = 'byok_free'
          and allowances.account_id = ${accountId} and allowances.period = ${month}::date
        returning allowances.id, allowances.amount, reserve.amount as granted
      ), created as (
        insert into allowances (account_id, period, kind, replica_id, amount, expires_at)
        select ${accountId}, ${month}::date, 'byok_free', ${r.replicaId}, reserve.amount,
          now() + make_interval(secs => ${ttl}::float8)
        from reserve where not exists (select 1 from grown)
        returning id, amount, amount as granted
      )
      select c.present, g.id, g.amount::text, g.granted::text, c.balance::text
      from (select count(*) > 0 as present, max(balance) as balance from counter) c
      left join (
        select id, amount, granted from grown union all select id, amount, granted from created
      ) g on true
    `.execute(db);
    const row = rows[0]!;
    const lease = row.id === null ? null : {
      id: row.id,
      amount: BigInt(row.amount!),
      granted: BigInt(row.granted!),
      balance: BigInt(row.balance!),
    };
    return { present: row.present, lease };
  }

  return {
    async grow(r) {
      if (limit === 0n) return null;
      const first = await tryGrow(r);
      if (first.present) return first.lease;
      const { accountId, month } = parseByokMonth(r.accountId);
      await sql`
        insert into byok_monthly_usage (account_id, month)
        select id, ${month}::date from accounts where id = ${accountId}
        on conflict (account_id, month) do nothing
      `.execute(db);
      return (await tryGrow(r)).lease;
    },

    async release(leaseId) {
      await db.transaction().execute(async (trx) => {
        await sql`
          select 1 from byok_monthly_usage m join allowances a
            on a.account_id = m.account_id and a.period = m.month
          where a.id = ${leaseId} and a.kind = 'byok_free'
          for update of m
        `.execute(trx);
        await sql`
        with gone as (
          delete from allowances where id = ${leaseId} and kind = 'byok_free'
          returning account_id, period, amount
        )
        update byok_monthly_usage set reserved = byok_monthly_usage.reserved - gone.amount,
          updated_at = now()
        from gone
        where byok_monthly_usage.account_id = gone.account_id
          and byok_monthly_usage.month = gone.period
      `.execute(trx);
      });
    },

    renew: (leaseId, ttlMs) => renewLease(db, leaseId, ttlMs),

    async sweep() {
      return await db.transaction().execute(async (trx) => {
        if (!await sweepLock(trx, "byok_free")) return 0;
        await sql`
          select 1 from byok_monthly_usage m join allowances a
            on a.account_id = m.account_id and a.period = m.month
          where a.expires_at < now() and a.kind = 'byok_free'
          order by m.account_id, m.month for update of m
        `.execute(trx);
        const { rows } = await sql<{ n: number }>`
        with gone as (
          delete from allowances where expires_at < now() and kind = 'byok_free'
          returning account_id, period, amount
        ), per_month as (
          select account_id, period, sum(amount)::int8 as amount, count(*)::int as n
          from gone group by account_id, period
        ), returned as (
          update byok_monthly_usage set reserved = byok_monthly_usage.reserved - per_month.amount,
            updated_at = now()
          from per_month
          where byok_monthly_usage.account_id = per_month.account_id
            and byok_monthly_usage.month = per_month.period
          returning per_month.n
        )
        select coalesce(sum(n), 0)::int as n from returned
      `.execute(trx);
        return rows[0]?.n ?? 0;
      });
    },
  };
}

/** One settled BYOK request, for the month's count. */
export interface ByokCount {
  requestId: string;
  accountId: string;
  /** The month's first day, "2026-11-01". */
  month: string;
  /** The byok_free lease its free request came from; null when it paid the routing fee. */
  freeLeaseId: string | null;
}

/**
 * Inside the transaction that inserted the requests' usage rows: counts each
 * request whose row this transaction inserted (a replayed one was counted
 * the first time; a row's xmin is the transaction that inserted it) in its
 * month's requests, and its free ones in free_requests, consuming their
 * leases. One upsert per month row: a statement must not update a row twice.
 * Returns how many of the counted requests each free lease gave, by the
 * lease's byokMonth() subject.
 */
export async function countByokRequests(
  trx: Kysely<Database>,
  counts: readonly ByokCount[],
): Promise<{ accountId: string; leaseId: string; amount: bigint }[]> {
  if (counts.length === 0) return [];
  const rows = JSON.stringify(counts.map((c) => ({
    request_id: c.requestId,
    account_id: c.accountId,
    month: c.month,
    free_lease_id: c.freeLeaseId,
  })));
  // Month rows before their leases, as grow, release and sweep take them.
  await sql`
    select 1 from byok_monthly_usage m
    join json_to_recordset(${rows}::text::json) as x(account_id uuid, month date)
      on m.account_id = x.account_id and m.month = x.month
    order by m.account_id, m.month for update of m
  `.execute(trx);
  const { rows: used } = await sql<{ lease_id: string; subject: string; n: string }>`
    with counted as (
      select x.* from json_to_recordset(${rows}::text::json)
        as x(request_id text, account_id uuid, month date, free_lease_id uuid)
      join usage_events u on u.request_id = x.request_id
      where u.xmin = pg_current_xact_id()::xid
    ), per_lease as (
      select free_lease_id, account_id, month, count(*)::int8 as n from counted
      where free_lease_id is not null group by free_lease_id, account_id, month
    ), used as (
      select a.id, a.account_id, a.period, least(a.amount, per_lease.n) as amount
      from allowances a join per_lease on per_lease.free_lease_id = a.id
      where a.kind = 'byok_free'
      for update of a
    ), leases as (
      update allowances set amount = allowances.amount - used.amount, updated_at = now()
      from used where allowances.id = used.id
      returning used.account_id, used.period, used.amount
    ), per_month as (
      select account_id, month, sum(requests)::int8 as requests, sum(free)::int8 as free,
        sum(released)::int8 as released
      from (
        select account_id, month, 1::int8 as requests,
          (free_lease_id is not null)::int::int8 as free, 0::int8 as released
        from counted
        union all
        select account_id, period, 0::int8, 0::int8, amount from leases
      ) moves group by account_id, month
    ), upserted as (
      -- A lease implies its month's row (the lease's growth made it), so the
      -- insert branch never has anything released. Rows in one order: two
      -- replicas' batches queue on them instead of deadlocking.
      insert into byok_monthly_usage as m (account_id, month, requests, free_requests, reserved)
      select account_id, month, requests, free, released from per_month
      order by account_id, month
      on conflict (account_id, month) do update set
        requests = m.requests + excluded.requests,
        free_requests = m.free_requests + excluded.free_requests,
        reserved = m.reserved - excluded.reserved,
        updated_at = now()
    )
    select free_lease_id::text as lease_id,
      account_id::text || ':' || to_char(month, 'YYYY-MM') as subject, n::text
    from per_lease
  `.execute(trx);
  return used.map((row) => ({
    accountId: row.subject,
    leaseId: row.lease_id,
    amount: BigInt(row.n),
  }));
}
