/** Settling a batch of charges: ledger entries, balances and leases move once, together. */
import assert from "node:assert/strict";
import { type Kysely, sql } from "kysely";
import { createAllowanceStore } from "../../gateway/billing/allowance_store.ts";
import {
  lockForSettlement,
  type RequestCharge,
  settleCharges,
} from "../../gateway/billing/settlement.ts";
import type { Database, NewUsageEvent } from "../../schema/database.ts";
import { writeUsageEvents } from "../../gateway/metering/usage_batch.ts";
import { freshDatabase, POSTGRES_URL } from "../helpers/database.ts";

async function balances(db: Kysely<Database>, id: string) {
  const { rows } = await sql<{ balance: string; reserved: string; entries: string }>`
    select balance::text, reserved::text,
      (select coalesce(sum(amount), 0) from ledger_entries where book = 'customer:' || ${id})::text
        as entries
    from accounts where id = ${id}
  `.execute(db);
  const row = rows[0]!;
  return {
    balance: BigInt(row.balance),
    reserved: BigInt(row.reserved),
    entries: BigInt(row.entries),
  };
}

Deno.test("a batch posts each charge once, moves balances and consumes its leases, even when replayed", async () => {
  const database = await freshDatabase();
  try {
    const db = database.db.db;
    const { rows } = await sql<{ id: string }>`
      insert into accounts (name, balance) values ('a', 0), ('b', 0) returning id
    `.execute(db);
    const [a, b] = rows.map((row) => row.id) as [string, string];
    // Credits go through the ledger too, so entries and balances agree from the start.
    await db.transaction().execute(async (trx) => {
      await sql`
        insert into ledger_entries (transaction_id, book, account_id, kind, amount, reference)
        values (gen_random_uuid(), 'customer:' || ${a}, ${a}::uuid, 'topup', 10000, 'p1'),
          (gen_random_uuid(), 'system:payments', ${a}::uuid, 'topup', -10000, 'p1'),
          (gen_random_uuid(), 'customer:' || ${b}, ${b}::uuid, 'topup', 10000, 'p2'),
          (gen_random_uuid(), 'system:payments', ${b}::uuid, 'topup', -10000, 'p2')
      `.execute(trx);
      await sql`update accounts set balance = 10000`.execute(trx);
    });
    const store = createAllowanceStore(db);
    const lease = (await store.grow({
      accountId: a,
      leaseId: null,
      replicaId: "r",
      min: 1n,
      max: 1_000n,
      share: 1,
      ttlMs: 60_000,
    }))!;
    assert.equal(lease.amount, 1_000n);

    const charges: RequestCharge[] = [
      { requestId: "req_1", accountId: a, kind: "charge", cost: 100n, fee: 6n, leaseId: lease.id },
      { requestId: "req_2", accountId: a, kind: "charge", cost: 200n, fee: 11n, leaseId: lease.id },
      { requestId: "req_3", accountId: b, kind: "byok_fee", cost: 0n, fee: 5n, leaseId: null },
      { requestId: "req_4", accountId: b, kind: "charge", cost: 0n, fee: 0n, leaseId: null },
    ];
    const consumed = await db.transaction().execute(async (trx) => {
      await lockForSettlement(trx, charges);
      return await settleCharges(trx, charges);
    });
    assert.deepEqual(consumed, [{ accountId: a, leaseId: lease.id, amount: 317n }]);
    assert.deepEqual(await balances(db, a), { balance: 9_683n, reserved: 683n, entries: 9_683n });
    assert.deepEqual(await balances(db, b), { balance: 9_995n, reserved: 0n, entries: 9_995n });

    const again = await db.transaction().execute(async (trx) => {
      await lockForSettlement(trx, charges);
      return await settleCharges(trx, charges);
    });
    assert.equal(again.length, 0, "a replayed batch consumed a lease again");
    assert.deepEqual(await balances(db, a), { balance: 9_683n, reserved: 683n, entries: 9_683n });

    // Each request is one customer entry, referenced by its request id.
    const { rows: mine } = await sql<{ reference: string; book: string; amount: string }>`
      select reference, book, amount::text from ledger_entries
      where kind in ('charge', 'byok_fee') and book like 'customer:%' order by reference
    `.execute(db);
    assert.deepEqual(mine.map((r) => [r.reference, r.book, r.amount]), [
      ["req_1", `customer:${a}`, "-106"],
      ["req_2", `customer:${a}`, "-211"],
      ["req_3", `customer:${b}`, "-5"],
    ]);
    const { rows: sum } = await sql<{ total: string }>`
      select sum(amount)::text as total from ledger_entries
    `.execute(db);
    assert.equal(sum[0]!.total, "0", "the ledger does not balance");
    // An account's charges of one kind are one transaction, balanced by the
    // system books' sums of them, and every transaction balances.
    const { rows: transactions } = await sql<{ entries: string[]; total: string }>`
      select array_agg(coalesce(reference, book) || ' ' || amount || coalesce(' ' || memo, '')
          order by coalesce(reference, book)) as entries,
        sum(amount)::text as total
      from ledger_entries where kind in ('charge', 'byok_fee')
      group by transaction_id order by min(reference)
    `.execute(db);
    assert.deepEqual(transactions, [
      {
        entries: [
          "req_1 -106",
          "req_2 -211",
          "system:provider_costs 300 2 requests",
          "system:revenue 17 2 requests",
        ],
        total: "0",
      },
      { entries: ["req_3 -5", "system:revenue 5 1 requests"], total: "0" },
    ]);
    // The replay wrote nothing: no customer entry twice, no system entry for it.
    const { rows: count } = await sql<{ n: number }>`
      select count(*)::int4 as n from ledger_entries where kind in ('charge', 'byok_fee')
    `.execute(db);
    assert.equal(count[0]!.n, 6);
  } finally {
    await database.drop();
  }
});

Deno.test({
  name:
    "two replicas' batches over the same keys, listed in opposite orders, settle without deadlocking",
  ignore: !POSTGRES_URL, // PGlite has one connection: nothing runs concurrently
  async fn() {
    const database = await freshDatabase();
    try {
      const db = database.db.db;
      const keys: { account: string; key: string }[] = [];
      for (const name of ["a", "b", "c"]) {
        const { rows } = await sql<{ account: string; key: string }>`
          with account as (insert into accounts (name, balance) values (${name}, 0) returning id)
          insert into api_keys (account_id, name, key_hash, prefix, last4)
          select id, ${name}, ${`hash-${name}`}, 'tg_x', 'xxxx' from account
          returning account_id as account, id as key
        `.execute(db);
        keys.push(rows[0]!);
      }
      const event = (id: string, owner: { account: string; key: string }): NewUsageEvent =>
        ({
          request_id: id,
          account_id: owner.account,
          api_key_id: owner.key,
          agent_name: null,
          agent_purpose: null,
          agent_owner: null,
          endpoint: "/v1/chat/completions",
          model: "m",
          provider_id: null,
          provider_name: null,
          upstream_model: null,
          status: 200,
          error_code: null,
          stream: false,
          prompt_tokens: 1,
          completion_tokens: 1,
          cached_tokens: 0,
          total_tokens: 2,
          cost: 100n,
          billing_mode: "standard",
          fee: 6n,
          estimated: false,
          latency_ms: 1,
          ttfb_ms: 1,
          created_at: new Date().toISOString(),
          lease_id: null,
        }) as NewUsageEvent;
      const ROUNDS = 30;
      for (let round = 0; round < ROUNDS; round++) {
        // Each batch moves every key's last_used_at and charges every account,
        // one batch in the keys' order and the other in reverse.
        const forward = keys.map((k, i) => event(`req_${round}_f${i}`, k));
        const backward = keys.toReversed().map((k, i) => event(`req_${round}_b${i}`, k));
        const written = await Promise.allSettled([
          writeUsageEvents(db, forward),
          writeUsageEvents(db, backward),
        ]);
        for (const result of written) {
          if (result.status === "rejected") throw result.reason;
          assert.deepEqual(result.value, []);
        }
      }
      const { rows } = await sql<{ balance: string; entries: string }>`
        select a.balance::text, (select coalesce(sum(amount), 0) from ledger_entries
          where book = 'customer:' || a.id)::text as entries
        from accounts a order by a.name
      `.execute(db);
      const charged = String(-ROUNDS * 2 * 106);
      assert.deepEqual(rows, keys.map(() => ({ balance: charged, entries: charged })));
    } finally {
      await database.drop();
    }
  },
});
