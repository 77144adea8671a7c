/**
 * Leases against an API key's lifetime spend limit, with the contract of
 * allowance_store.ts: a replica leases part of what the key may still spend
 * (`spend_limit - spent - reserved`) with one conditional update on the key's
 * row, reserves from it in memory (createAllowances, keyed by the key's id),
 * and settled charges consume it (settlement.ts). So across any number of
 * replicas, spent + reserved never exceeds the limit, as an account's
 * spent + reserved never exceeds its credits; a request is admitted only
 * when both its account and its key can reserve it.
 *
 * A key without a limit leases nothing (grow returns null): the gateway never
 * asks for one, since the snapshot says the key has no limit.
 */
import { type Kysely, sql } from "kysely";
import type { Database } from "../../schema/database.ts";
import { type AllowanceStore, renewLease, sweepLock } from "./allowance_store.ts";

export function createKeyAllowanceStore(db: Kysely<Database>): AllowanceStore {
  return {
    async grow(r) {
      const share = BigInt(Math.max(1, Math.floor(r.share)));
      const ttl = r.ttlMs / 1000;
      const { rows } = await sql<{ id: string; amount: string; granted: string; balance: string }>`
        with key as (
          select id, account_id, spend_limit - spent as balance,
            spend_limit - spent - reserved as free
          from api_keys where id = ${r.accountId} and spend_limit is not null
          for update
        ), grant_ as (
          select id as key_id, account_id,
            least(${r.max}::int8, free, greatest(${r.min}::int8, free / ${share}::int8)) as amount
          from key where free >= ${r.min}::int8 and free > 0
        ), reserve as (
          update api_keys set reserved = api_keys.reserved + grant_.amount
          from grant_ where api_keys.id = grant_.key_id
          returning grant_.account_id, grant_.amount
        ), grown as (
          update allowances set amount = allowances.amount + reserve.amount,
            expires_at = now() + make_interval(secs => ${ttl}::float8), updated_at = now()
          from reserve
          where allowances.id = ${r.leaseId}::uuid and allowances.kind = 'key_limit'
            and allowances.api_key_id = ${r.accountId}
          returning allowances.id, allowances.amount, reserve.amount as granted
        ), created as (
          insert into allowances (account_id, api_key_id, kind, replica_id, amount, expires_at)
          select reserve.account_id, ${r.accountId}, 'key_limit', ${r.replicaId}, reserve.amount,
            now() + make_interval(secs => ${ttl}::float8)
          from reserve where not exists (select 1 from grown)
          returning id, amount, amount as granted
        )
        select id, amount::text, granted::text, (select balance::text from key) as balance
        from grown
        union all
        select id, amount::text, granted::text, (select balance::text from key) from created
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
          select 1 from api_keys where id = (
            select api_key_id from allowances where id = ${leaseId} and kind = 'key_limit'
          ) for update
        `.execute(trx);
        await sql`
          with gone as (
            delete from allowances where id = ${leaseId} and kind = 'key_limit'
            returning api_key_id, amount
          )
          update api_keys set reserved = api_keys.reserved - gone.amount
          from gone where api_keys.id = gone.api_key_id
        `.execute(trx);
      });
    },

    renew: (leaseId, ttlMs) => renewLease(db, leaseId, ttlMs),

    async sweep() {
      return await db.transaction().execute(async (trx) => {
        if (!await sweepLock(trx, "key_limit")) return 0;
        await sql`
          select 1 from api_keys where id in (
            select api_key_id from allowances where expires_at < now() and kind = 'key_limit'
          ) order by id for update
        `.execute(trx);
        const { rows } = await sql<{ n: number }>`
        with gone as (
          delete from allowances where expires_at < now() and kind = 'key_limit'
          returning api_key_id, amount
        ), per_key as (
          select api_key_id, sum(amount)::int8 as amount, count(*)::int as n
          from gone group by api_key_id
        ), returned as (
          update api_keys set reserved = api_keys.reserved - per_key.amount
          from per_key where api_keys.id = per_key.api_key_id
          returning per_key.n
        )
        select coalesce(sum(n), 0)::int as n from returned
      `.execute(trx);
        return rows[0]?.n ?? 0;
      });
    },
  };
}

/** What one key was charged in a settled batch, and the lease it was reserved from. */
export interface KeyCharge {
  keyId: string;
  /** The key_limit lease the reservation came from; null for a key without a limit. */
  leaseId: string | null;
  amount: bigint;
}

/**
 * Inside the settling transaction: adds each charge to its key's lifetime
 * `spent` (every key, limited or not, so a limit set later counts what the
 * key already cost) and consumes the key_limit leases the charges were
 * reserved from, leaving the key's `reserved` by the same. One update per
 * key row: a statement must not update a row twice. A charge beyond what
 * its lease still holds is reserved nowhere: `spent` counts it all the same.
 */
export async function chargeKeys(
  trx: Kysely<Database>,
  charges: readonly KeyCharge[],
): Promise<void> {
  if (charges.length === 0) return;
  const rows = JSON.stringify(charges.map((c) => ({
    key_id: c.keyId,
    lease_id: c.leaseId,
    amount: String(c.amount),
  })));
  await sql`
    with charge as (
      select * from json_to_recordset(${rows}::text::json)
        as x(key_id uuid, lease_id uuid, amount int8)
    ), per_lease as (
      select lease_id, sum(amount)::int8 as amount from charge
      where lease_id is not null group by lease_id
    ), used as (
      select a.id, a.api_key_id, least(a.amount, per_lease.amount) as amount
      from allowances a join per_lease on per_lease.lease_id = a.id
      where a.kind = 'key_limit'
      for update of a
    ), leases as (
      update allowances set amount = allowances.amount - used.amount, updated_at = now()
      from used where allowances.id = used.id
      returning used.api_key_id, used.amount
    ), per_key as (
      select key_id, sum(spent)::int8 as spent, sum(released)::int8 as released from (
        select key_id, amount as spent, 0::int8 as released from charge
        union all
        select api_key_id, 0::int8, amount from leases
      ) moves group by key_id
    )
    update api_keys set spent = api_keys.spent + per_key.spent,
      reserved = api_keys.reserved - per_key.released
    from per_key where api_keys.id = per_key.key_id
  `.execute(trx);
}
