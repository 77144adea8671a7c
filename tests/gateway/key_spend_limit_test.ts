/**
 * Key spend limits: a key's lifetime spend never exceeds its limit, across
 * gateway processes, through the same allowance leases as balances; a key
 * that cannot cover a request gets a 402 key_spend_limit_reached; and every
 * charge counts in its key's spend, limited or not.
 */
import assert from "node:assert/strict";
import { sql } from "kysely";
import { createAllowanceStore } from "../../gateway/billing/allowance_store.ts";
import { createKeyAllowanceStore } from "../../gateway/billing/key_allowance_store.ts";
import { freshDatabase, POSTGRES_URL } from "../helpers/database.ts";
import { completion, startFakeUpstream } from "../helpers/fake_upstream.ts";
import { type PlaneProcess, startPlaneProcess } from "../helpers/process.ts";
import { type Stack, startStack, TEST_SECRET, waitFor } from "../helpers/stack.ts";

const MODEL = "priced-model";
/** Every request asks for, and is answered with, this many output tokens. */
const MAX_TOKENS = 10_000;
/** What one request costs (and reserves): 10,000 tokens x 100 microcents, + 5.5%. */
const REQUEST_COST = 1_055_000n;

async function priced(stack: Stack) {
  const fake = startFakeUpstream();
  fake.reply = (body) =>
    Response.json(
      completion(String(body.model), "ok", { prompt_tokens: 5, completion_tokens: MAX_TOKENS }),
    );
  await stack.addModel({
    provider: "fake",
    baseUrl: fake.url,
    apiKey: "sk-upstream",
    model: MODEL,
    upstreamName: "fake-1",
    inputPrice: "0",
    outputPrice: "1",
  });
  return fake;
}

function ask(url: string, secret: string, extra: Record<string, unknown> = {}): Promise<Response> {
  return fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
    body: JSON.stringify({
      model: MODEL,
      max_tokens: MAX_TOKENS,
      messages: [{ role: "user", content: "hi" }],
      ...extra,
    }),
  });
}

/** Sets a key's limit in the database and waits until `stack`'s gateway has it. */
async function limitKey(stack: Stack, keyId: string, limit: bigint | null): Promise<void> {
  const db = stack.database.db.db;
  const { key_hash } = await db.updateTable("api_keys").set({ spend_limit: limit })
    .where("id", "=", keyId).returning("key_hash").executeTakeFirstOrThrow();
  await waitFor(() => stack.gateway.policy.key(key_hash)?.spendLimit === limit);
}

async function books(stack: Stack, accountId: string, keyId: string) {
  await stack.gateway.usage.flush();
  const { rows } = await sql<{
    balance: string;
    entries: string;
    spent: string;
    key_reserved: string;
    charged: string;
    key_leases: string;
  }>`
    select a.balance::text,
      (select coalesce(sum(amount), 0) from ledger_entries where book = 'customer:' || a.id)::text
        as entries,
      k.spent::text, k.reserved::text as key_reserved,
      (select coalesce(sum(u.cost + u.fee), 0) from usage_events u
        where u.api_key_id = k.id and u.ledger_transaction_id is not null)::text as charged,
      (select coalesce(sum(amount), 0) from allowances where api_key_id = k.id)::text
        as key_leases
    from accounts a join api_keys k on k.account_id = a.id
    where a.id = ${accountId} and k.id = ${keyId}
  `.execute(stack.database.db.db);
  const row = rows[0]!;
  return {
    balance: BigInt(row.balance),
    entries: BigInt(row.entries),
    spent: BigInt(row.spent),
    keyReserved: BigInt(row.key_reserved),
    charged: BigInt(row.charged),
    keyLeases: BigInt(row.key_leases),
  };
}

Deno.test({
  name: "30 concurrent requests through two gateway processes on a key whose limit covers 5",
  ignore: !POSTGRES_URL, // the embedded PGlite is single-process
  async fn() {
    const stack = await startStack();
    const fake = await priced(stack);
    let other: PlaneProcess | undefined;
    try {
      // The account could pay for 90 requests; the key's limit covers 5 and half a sixth.
      const { secret, accountId, keyId } = await stack.createKey({ balance: "100" });
      const limit = REQUEST_COST * 11n / 2n;
      await limitKey(stack, keyId, limit);
      // Started after the limit was set: it loads it with its snapshot.
      other = await startPlaneProcess("gateway/main.ts", {
        DATABASE_URL: stack.database.url!,
        TOLLGATE_SECRET: TEST_SECRET,
        TOLLGATE_GATEWAY_PORT: "0",
        TOLLGATE_HOST: "127.0.0.1",
        TOLLGATE_SPOOL_DIR: await Deno.makeTempDir({ prefix: "tollgate-spool-" }),
      });
      const urls = [stack.gatewayUrl, other.url];
      const answers = await Promise.all(
        Array.from({ length: 30 }, async (_, i) => {
          const response = await ask(urls[i % 2]!, secret);
          const body = await response.json();
          return { status: response.status, code: body.error?.code as string | undefined };
        }),
      );
      const served = answers.filter((a) => a.status === 200).length;
      assert.ok(served <= 5 && served > 0, `${served} served`);
      assert.equal(served, fake.served);
      for (const answer of answers) {
        if (answer.status !== 200) {
          assert.deepEqual(answer, { status: 402, code: "key_spend_limit_reached" });
        }
      }
      await other.stop();
      other = undefined;
      await stack.gateway.usage.flush();
      // Gives back this gateway's idle leases (the other gave back its own as it stopped).
      await stack.gateway.pools.keyLimits.tick();
      await stack.gateway.allowances.tick();
      const b = await books(stack, accountId, keyId);
      assert.equal(b.spent, BigInt(served) * REQUEST_COST);
      assert.ok(b.spent <= limit, `the key spent ${b.spent}, past its limit ${limit}`);
      assert.equal(b.charged, b.spent, "the key's spend and the ledger disagree");
      assert.equal(b.balance, 10_000_000_000n - b.spent);
      assert.equal(b.entries, b.balance, "the ledger does not reconcile");
      assert.equal(b.keyReserved, 0n, "a key allowance was not given back");
      assert.equal(b.keyLeases, 0n);
    } finally {
      await other?.stop();
      await fake.close();
      await stack.close();
    }
  },
});

Deno.test("a key its limit cannot cover gets a 402 key_spend_limit_reached, until the limit is raised", async () => {
  const stack = await startStack();
  const fake = await priced(stack);
  try {
    const { secret, accountId, keyId } = await stack.createKey({ balance: "100" });
    await limitKey(stack, keyId, REQUEST_COST * 2n);
    const statuses = [];
    for (let i = 0; i < 3; i++) {
      const response = await ask(stack.gatewayUrl, secret);
      statuses.push(response.status);
      if (response.status === 200) {
        await response.body?.cancel();
        continue;
      }
      assert.equal(response.headers.get("x-should-retry"), "false");
      const body = await response.json();
      assert.equal(body.error.code, "key_spend_limit_reached");
      assert.equal(body.error.type, "insufficient_quota");
      assert.match(body.error.message, /spend limit of 0\.02 USD is reached/);
      assert.match(body.error.message, /Raise the key's spend limit/);
    }
    assert.deepEqual(statuses, [200, 200, 402]);
    assert.equal(fake.served, 2);

    // A free BYOK request costs the key nothing: it goes through.
    const byok = await ask(stack.gatewayUrl, secret, { provider_key: "sk-customer-0123456789" });
    assert.equal(byok.status, 200, await byok.clone().text());
    await byok.body?.cancel();

    // The limit is lifetime: raised by one request, it lets exactly one more through.
    await limitKey(stack, keyId, REQUEST_COST * 3n);
    const more = await ask(stack.gatewayUrl, secret);
    assert.equal(more.status, 200);
    await more.body?.cancel();
    const refused = await ask(stack.gatewayUrl, secret);
    assert.equal(refused.status, 402);
    await refused.body?.cancel();

    const b = await books(stack, accountId, keyId);
    assert.equal(b.spent, 3n * REQUEST_COST);
    assert.equal(b.charged, b.spent);
    assert.equal(b.entries, b.balance);
  } finally {
    await fake.close();
    await stack.close();
  }
});

Deno.test("a key without a limit leases nothing against it, and its spend is still counted", async () => {
  const stack = await startStack();
  const fake = await priced(stack);
  try {
    const { secret, accountId, keyId } = await stack.createKey({ balance: "100" });
    for (let i = 0; i < 3; i++) {
      const response = await ask(stack.gatewayUrl, secret);
      assert.equal(response.status, 200);
      await response.body?.cancel();
    }
    const b = await books(stack, accountId, keyId);
    assert.equal(b.spent, 3n * REQUEST_COST, "an unlimited key's spend was not counted");
    assert.equal(b.charged, b.spent);
    const { rows } = await sql<{ n: number }>`
      select count(*)::int as n from allowances where kind = 'key_limit'
    `.execute(stack.database.db.db);
    assert.equal(rows[0]!.n, 0, "an unlimited key took a lease");
    assert.equal(stack.gateway.pools.keyLimits.peek(keyId), undefined);

    // A limit set later counts what the key already spent.
    await limitKey(stack, keyId, REQUEST_COST * 3n);
    const refused = await ask(stack.gatewayUrl, secret);
    assert.equal(refused.status, 402);
    assert.equal((await refused.json()).error.code, "key_spend_limit_reached");
  } finally {
    await fake.close();
    await stack.close();
  }
});

Deno.test("a key's lease left by a dead replica is swept back to the key, not to its account", async () => {
  const database = await freshDatabase();
  try {
    const db = database.db.db;
    const { rows } = await sql<{ key: string }>`
      with a as (insert into accounts (name, balance) values ('acme', 1000) returning id)
      insert into api_keys (account_id, name, key_hash, prefix, last4, spend_limit)
      select id, 'k', 'hash', 'tg_x', 'abcd', 500 from a returning id as key
    `.execute(db);
    const { key } = rows[0]!;
    const keys = createKeyAllowanceStore(db);
    const grow = { leaseId: null, replicaId: "dead", min: 100n, max: 1_000n, share: 1, ttlMs: 1 };
    const lease = await keys.grow({ ...grow, accountId: key });
    assert.equal(lease?.granted, 500n, "a lease takes at most what the limit leaves");
    assert.equal(await keys.grow({ ...grow, accountId: key }), null, "the limit was leased twice");
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(await createAllowanceStore(db).sweep(), 0);
    assert.equal(await keys.sweep(), 1);
    const { rows: after } = await sql<{ key_reserved: string; account_reserved: string }>`
      select k.reserved::text as key_reserved, a.reserved::text as account_reserved
      from api_keys k join accounts a on a.id = k.account_id where k.id = ${key}
    `.execute(db);
    assert.deepEqual(after, [{ key_reserved: "0", account_reserved: "0" }]);
  } finally {
    await database.drop();
  }
});
