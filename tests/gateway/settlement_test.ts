/** Settling a batch of charges: ledger entries, balances and leases move once, together. */
import assert from "node:assert/strict";
import { type Kysely, sql } from "kysely";
import { createAllowanceStore } from "../../gateway/billing/allowance_store.ts";
import type { LeaseCharges } from "../../gateway/billing/settlement.ts";
import type { Database } from "../../schema/database.ts";
import { writeUsageEvents } from "../../gateway/metering/usage_batch.ts";
import type { UsageRecord } from "../../gateway/metering/usage_event.ts";
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

/** An account with a key, funded through the ledger (so entries and balances agree from the start). */
async function fundedKey(db: Kysely<Database>, name: string, balance: bigint) {
  const { rows } = await sql<{ account: string; key: string }>`
    with account as (insert into accounts (name, balance) values (${name}, 0) returning id)
    insert into api_keys (account_id, name, key_hash, prefix, last4)
    select id, ${name}, ${`hash-${name}`}, 'tg_x', 'xxxx' from account
    returning account_id as account, id as key
  `.execute(db);
  const owner = rows[0]!;
  if (balance > 0n) {
    await db.transaction().execute(async (trx) => {
      await sql`
        insert into ledger_entries (transaction_id, book, account_id, kind, amount, reference)
        values (gen_random_uuid(), 'customer:' || ${owner.account}, ${owner.account}::uuid,
            'topup', ${String(balance)}::int8, ${`p-${name}`}),
          (gen_random_uuid(), 'system:payments', ${owner.account}::uuid, 'topup',
            ${String(-balance)}::int8, ${`p-${name}`})
      `.execute(trx);
      await sql`update accounts set balance = ${String(balance)}::int8 where id = ${owner.account}`
        .execute(trx);
    });
  }
  return owner;
}

/** An answered request's usage row, billed (it names its lease) unless lease_id is undefined. */
function usageRow(
  id: string,
  owner: { account: string; key: string },
  fields: Partial<UsageRecord> = {},
): UsageRecord {
  return {
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
    ...fields,
  };
}

Deno.test("a batch posts each charge once, moves balances and consumes its leases, even when replayed", async () => {
  const database = await freshDatabase();
  try {
    const db = database.db.db;
    const a = await fundedKey(db, "a", 10_000n);
    const b = await fundedKey(db, "b", 10_000n);
    const store = createAllowanceStore(db);
    const lease = (await store.grow({
      accountId: a.account,
      leaseId: null,
      replicaId: "r",
      min: 1n,
      max: 1_000n,
      share: 1,
      ttlMs: 60_000,
    }))!;
    assert.equal(lease.amount, 1_000n);

    const settled: LeaseCharges[][] = [];
    const write = (events: UsageRecord[]) =>
      writeUsageEvents(db, events, (charges) => settled.push(charges));
    const batch = [
      usageRow("req_1", a, { cost: 100n, fee: 6n, lease_id: lease.id }),
      usageRow("req_2", a, { cost: 200n, fee: 11n, lease_id: lease.id }),
      // The same request twice in one batch (its intent and its completion,
      // replayed together): the first is kept and charged, once.
      usageRow("req_2", a, { cost: 900n, fee: 50n, lease_id: lease.id }),
      usageRow("req_3", b, { billing_mode: "byok", cost: 300n, fee: 5n }),
      usageRow("req_4", b, { cost: 0n, fee: 0n }),
      // Not billed (no lease_id: it was refused before it reserved anything).
      usageRow("req_5", b, { cost: 0n, fee: 0n, status: 402, lease_id: undefined }),
    ];
    assert.deepEqual(await write(batch), []);
    assert.deepEqual(settled, [[{ accountId: a.account, leaseId: lease.id, amount: 317n }]]);
    assert.deepEqual(await balances(db, a.account), {
      balance: 9_683n,
      reserved: 683n,
      entries: 9_683n,
    });
    assert.deepEqual(await balances(db, b.account), {
      balance: 9_995n,
      reserved: 0n,
      entries: 9_995n,
    });

    // Replayed, in part and whole, with a request the first batch did not have.
    assert.deepEqual(
      await write([...batch, usageRow("req_6", a, { cost: 50n, fee: 3n, lease_id: lease.id })]),
      [],
    );
    assert.deepEqual(settled[1], [{ accountId: a.account, leaseId: lease.id, amount: 53n }]);
    assert.deepEqual(await balances(db, a.account), {
      balance: 9_630n,
      reserved: 630n,
      entries: 9_630n,
    });
    assert.equal((await balances(db, b.account)).balance, 9_995n);

    // Each account's charges of one kind in a batch are one transaction: the
    // customer's entry for their sum, balanced by the system books' sums.
    const { rows: transactions } = await sql<{ tx: string; entries: string[]; total: string }>`
      select transaction_id as tx,
        array_agg(book || ' ' || amount || ' ' || memo order by book) as entries,
        sum(amount)::text as total
      from ledger_entries where kind in ('charge', 'byok_fee')
      group by transaction_id order by min(id)
    `.execute(db);
    assert.deepEqual(transactions.map(({ entries, total }) => ({ entries, total })), [
      {
        entries: [
          `customer:${a.account} -317 2 requests`,
          "system:provider_costs 300 2 requests",
          "system:revenue 17 2 requests",
        ],
        total: "0",
      },
      {
        entries: [`customer:${b.account} -5 1 requests`, "system:revenue 5 1 requests"],
        total: "0",
      },
      {
        entries: [
          `customer:${a.account} -53 1 requests`,
          "system:provider_costs 50 1 requests",
          "system:revenue 3 1 requests",
        ],
        total: "0",
      },
    ]);
    // Each charged row names its transaction, whose customer entry is the sum of its rows.
    const { rows: usage } = await sql<{ id: string; cost: string; tx: string | null }>`
      select request_id as id, cost::text, ledger_transaction_id as tx from usage_events
      order by request_id
    `.execute(db);
    const [t1, t2, t3] = transactions.map((t) => t.tx);
    assert.deepEqual(usage, [
      { id: "req_1", cost: "100", tx: t1 },
      { id: "req_2", cost: "200", tx: t1 },
      { id: "req_3", cost: "300", tx: t2 },
      { id: "req_4", cost: "0", tx: null },
      { id: "req_5", cost: "0", tx: null },
      { id: "req_6", cost: "50", tx: t3 },
    ]);
    const { rows: sum } = await sql<{ total: string }>`
      select sum(amount)::text as total from ledger_entries
    `.execute(db);
    assert.equal(sum[0]!.total, "0", "the ledger does not balance");
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
      for (const name of ["a", "b", "c"]) keys.push(await fundedKey(db, name, 0n));
      const ROUNDS = 30;
      for (let round = 0; round < ROUNDS; round++) {
        // Each batch moves every key's last_used_at and charges every account,
        // one batch in the keys' order and the other in reverse.
        const forward = keys.map((k, i) => usageRow(`req_${round}_f${i}`, k));
        const backward = keys.toReversed().map((k, i) => usageRow(`req_${round}_b${i}`, k));
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
