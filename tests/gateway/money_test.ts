/**
 * Money end to end: prepaid balances are never overspent, across gateway
 * processes, and every answered request is charged through the ledger.
 */
import assert from "node:assert/strict";
import { type Kysely, sql } from "kysely";
import type { Database } from "../../schema/database.ts";
import { accountBooks } from "../helpers/books.ts";
import { POSTGRES_URL } from "../helpers/database.ts";
import { completion, startFakeUpstream } from "../helpers/fake_upstream.ts";
import { type PlaneProcess, startPlaneProcess } from "../helpers/process.ts";
import { type Stack, startStack, TEST_SECRET, waitFor } from "../helpers/stack.ts";

const MODEL = "priced-model";
/** Output at 1 USD per million tokens = 100 microcents a token; input is free. */
const OUTPUT_PRICE = "1";
/** Every request asks for, and is answered with, this many output tokens. */
const MAX_TOKENS = 10_000;
/** What one request costs: 10,000 tokens x 100 microcents, + 5.5%. */
const REQUEST_COST = 1_055_000n;

async function priced(stack: Stack) {
  const fake = startFakeUpstream();
  // Each answer uses exactly what was reserved for output, so a settled
  // request frees nothing for the next one.
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
    outputPrice: OUTPUT_PRICE,
  });
  return fake;
}

function ask(url: string, secret: string): Promise<Response> {
  return fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
    body: JSON.stringify({
      model: MODEL,
      max_tokens: MAX_TOKENS,
      messages: [{ role: "user", content: "hi" }],
    }),
  });
}

/** A gateway in a process of its own on the stack's database, as `deno task gateway` runs it. */
async function startGatewayProcess(stack: Stack): Promise<PlaneProcess> {
  return await startPlaneProcess("gateway/main.ts", {
    DATABASE_URL: stack.database.url!,
    TOLLGATE_SECRET: TEST_SECRET,
    TOLLGATE_GATEWAY_PORT: "0",
    TOLLGATE_HOST: "127.0.0.1",
    TOLLGATE_USAGE_FLUSH_MS: "20",
    // Its own spool: the repository's must not collect (and later replay) test events.
    TOLLGATE_SPOOL_DIR: await Deno.makeTempDir({ prefix: "tollgate-spool-" }),
  });
}

Deno.test("a billed answer carries its mode, cost and balance, and the ledger charges it once", async () => {
  const stack = await startStack();
  const fake = await priced(stack);
  try {
    const { secret, accountId } = await stack.createKey({ balance: "5" });
    const response = await ask(stack.gatewayUrl, secret);
    assert.equal(response.status, 200, await response.clone().text());
    await response.body?.cancel();
    assert.equal(response.headers.get("x-tollgate-mode"), "standard");
    assert.equal(response.headers.get("x-tollgate-cost"), "0.010550");
    assert.equal(response.headers.get("x-tollgate-balance"), "4.989450");
    const { balance, entries } = await accountBooks(stack, accountId);
    assert.equal(balance, 500_000_000n - REQUEST_COST);
    assert.equal(entries, balance, "the ledger and the balance disagree");
  } finally {
    await fake.close();
    await stack.close();
  }
});

Deno.test("a balance that cannot cover the worst case gets a 402 insufficient_quota, and nothing is charged", async () => {
  const stack = await startStack();
  const fake = await priced(stack);
  try {
    const { secret, accountId } = await stack.createKey({ balance: "0.01" });
    const response = await ask(stack.gatewayUrl, secret);
    assert.equal(response.status, 402);
    assert.equal(response.headers.get("x-should-retry"), "false");
    const body = await response.json();
    assert.equal(body.error.code, "insufficient_quota");
    assert.match(body.error.message, /Top up/);
    assert.equal(fake.served, 0);
    assert.equal((await accountBooks(stack, accountId)).balance, 1_000_000n);
  } finally {
    await fake.close();
    await stack.close();
  }
});

Deno.test("n choices reserve n times the output: a balance for one choice cannot ask for two", async () => {
  const stack = await startStack();
  const fake = await priced(stack);
  try {
    // Enough for one request's worst case, not for two choices of it.
    const { secret, accountId } = await stack.createKey({ balance: "0.015" });
    const ask = (n: number) =>
      fetch(`${stack.gatewayUrl}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
        body: JSON.stringify({
          model: MODEL,
          n,
          max_tokens: MAX_TOKENS,
          messages: [{ role: "user", content: "hi" }],
        }),
      });
    const two = await ask(2);
    assert.equal(two.status, 402, await two.clone().text());
    assert.equal((await two.json()).error.code, "insufficient_quota");
    assert.equal(fake.served, 0);
    const one = await ask(1);
    assert.equal(one.status, 200, await one.clone().text());
    await one.body?.cancel();
    assert.equal((await accountBooks(stack, accountId)).balance, 1_500_000n - REQUEST_COST);
  } finally {
    await fake.close();
    await stack.close();
  }
});

Deno.test("completions reserve best_of outputs for each prompt of a batch, and best_of may not be below n", async () => {
  const stack = await startStack();
  const fake = await priced(stack);
  try {
    const { secret } = await stack.createKey({ balance: "0.015" });
    const ask = (body: Record<string, unknown>) =>
      fetch(`${stack.gatewayUrl}/v1/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
        body: JSON.stringify({ model: MODEL, max_tokens: MAX_TOKENS, ...body }),
      });
    const batch = await ask({ prompt: ["a", "b"] });
    assert.equal(batch.status, 402, await batch.clone().text());
    await batch.body?.cancel();
    const best = await ask({ prompt: "a", best_of: 2 });
    assert.equal(best.status, 402, await best.clone().text());
    await best.body?.cancel();
    const wrong = await ask({ prompt: "a", n: 3, best_of: 2 });
    assert.equal(wrong.status, 400);
    const error = (await wrong.json()).error;
    assert.equal(error.type, "invalid_request_error");
    assert.equal(error.param, "best_of");
    assert.equal(fake.served, 0);
  } finally {
    await fake.close();
    await stack.close();
  }
});

Deno.test({
  name: "100 concurrent requests through two gateway processes against a balance covering 10",
  ignore: !POSTGRES_URL, // the embedded PGlite is single-process
  async fn() {
    const stack = await startStack();
    const fake = await priced(stack);
    let other: PlaneProcess | undefined;
    try {
      other = await startGatewayProcess(stack);
      // 10 requests' worth, and half of an eleventh.
      const { secret, accountId } = await stack.createKey({ balance: "0.11077500" });
      await knows(other.url, secret); // createKey waited for this gateway only
      const urls = [stack.gatewayUrl, other.url];
      const statuses = await Promise.all(
        Array.from({ length: 100 }, async (_, i) => {
          const response = await ask(urls[i % 2]!, secret);
          await response.body?.cancel();
          return response.status;
        }),
      );
      const served = statuses.filter((s) => s === 200).length;
      assert.ok(served <= 10 && served > 0, `${served} served`);
      assert.equal(served, fake.served);
      assert.deepEqual(new Set(statuses), new Set(served === 100 ? [200] : [200, 402]));
      await other.stop();
      other = undefined;
      await stack.gateway.usage.flush();
      await stack.gateway.allowances.tick(); // gives back this gateway's idle allowance
      const { balance, entries, reserved } = await accountBooks(stack, accountId);
      assert.ok(balance >= 0n, `the balance went negative: ${balance}`);
      assert.equal(balance, 11_077_500n - BigInt(served) * REQUEST_COST);
      assert.equal(entries, balance, "the ledger does not reconcile");
      assert.equal(reserved, 0n, "an allowance was not given back");
    } finally {
      await other?.stop();
      await fake.close();
      await stack.close();
    }
  },
});

/** Each request reserves (and costs) 1,055,000: 60% of this balance, 1,758,334. */
const SIXTY_PERCENT_OF = "0.01758334";
const ROUNDS = 50;

Deno.test({
  name: "two requests that each need 60% of a balance, sent together through two gateway " +
    `processes ${ROUNDS} times: exactly one is admitted each time, and charged once`,
  ignore: !POSTGRES_URL,
  async fn() {
    const stack = await startStack();
    const fake = await priced(stack);
    const gateways: PlaneProcess[] = [];
    try {
      gateways.push(
        ...await Promise.all([startGatewayProcess(stack), startGatewayProcess(stack)]),
      );
      const db = stack.database.db.db;
      // A fresh account each round: neither gateway holds a lease on it, so both must
      // lease from the database, where only the conditional update can refuse one.
      const accounts: { accountId: string; secret: string }[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        accounts.push(await stack.createKey({ balance: SIXTY_PERCENT_OF }));
      }
      for (const gateway of gateways) {
        for (const { secret } of accounts) await knows(gateway.url, secret);
      }
      // Each gateway serves once first, so no round races a cold connection pool.
      const warm = await stack.createKey({ balance: "1" });
      for (const gateway of gateways) {
        await knows(gateway.url, warm.secret);
        const response = await ask(gateway.url, warm.secret);
        assert.equal(response.status, 200, await response.text());
      }
      const served = fake.served;

      const admitted = [0, 0];
      for (let round = 0; round < ROUNDS; round++) {
        const { accountId, secret } = accounts[round]!;
        // Which gateway goes first alternates every two rounds, so each kind of round has both.
        const order = Math.floor(round / 2) % 2 === 0 ? [0, 1] : [1, 0];
        // Even rounds queue both lease growths on the account's row lock before either
        // runs; odd ones send both at once and let them meet in the database as they may.
        const queued = round % 2 === 0;
        const sends = order.map((i) => () => ask(gateways[i]!.url, secret));
        const responses = queued
          ? await queuedOnRow(db, accountId, sends)
          : await Promise.all(sends.map((send) => send()));
        const answers = await Promise.all(responses.map(async (response, k) => ({
          gateway: order[k]!,
          response,
          body: await response.text(),
        })));
        const what = `round ${round} (${queued ? "queued on the row" : "sent together"}, ` +
          `gateway ${order[0]} first): ${
            JSON.stringify(answers.map((a) => [a.gateway, a.response.status, a.body]))
          }`;
        const statuses = answers.map((a) => a.response.status);
        assert.deepEqual([...statuses].sort(), [200, 402], what);
        const winner = answers.find((a) => a.response.status === 200)!;
        const loser = answers.find((a) => a.response.status === 402)!;
        assert.equal(loser.response.headers.get("x-should-retry"), "false", what);
        assert.equal(JSON.parse(loser.body).error.code, "insufficient_quota", what);
        assert.equal(winner.response.headers.get("x-tollgate-cost"), "0.010550", what);
        assert.equal(fake.served, served + round + 1, `${what}: upstream calls`);
        admitted[winner.gateway]!++;

        await assertChargedOnce(stack, accountId, gateways[winner.gateway]!, what);
      }
      // Both gateways won rounds, and lost rounds.
      assert.ok(admitted.every((n) => n > 0), `admitted per gateway: ${admitted}`);

      for (const gateway of gateways.splice(0)) {
        assert.ok((await gateway.stop()).success, "a gateway did not stop cleanly");
      }
      const { rows } = await sql<{ leases: string; reserved: string; ledger: string }>`
        select (select count(*) from allowances)::text as leases,
          (select coalesce(sum(reserved), 0) from accounts)::text as reserved,
          (select coalesce(sum(amount), 0) from ledger_entries)::text as ledger
      `.execute(db);
      assert.deepEqual(rows[0], { leases: "0", reserved: "0", ledger: "0" }, "after shutdown");
    } finally {
      await Promise.all(gateways.map((gateway) => gateway.stop()));
      await fake.close();
      await stack.close();
    }
  },
});

/** Waits until a gateway (in its own process) has loaded a key, through NOTIFY. */
async function knows(url: string, secret: string): Promise<void> {
  await waitFor(async () => {
    const response = await fetch(`${url}/v1/models`, {
      headers: { authorization: `Bearer ${secret}` },
    });
    await response.body?.cancel();
    return response.status === 200;
  }, 10_000);
}

/**
 * Sends the requests while holding the account's row lock, each once the one
 * before is waiting on that lock, and lets go once all are: their lease
 * growths are then queued on the row, in the order sent, and contend for it
 * at the same moment.
 */
async function queuedOnRow(
  db: Kysely<Database>,
  accountId: string,
  sends: (() => Promise<Response>)[],
): Promise<Response[]> {
  const pending: Promise<Response>[] = [];
  await db.transaction().execute(async (trx) => {
    await sql`select 1 from accounts where id = ${accountId} for update`.execute(trx);
    for (const send of sends) {
      pending.push(send());
      const waiting = pending.length;
      await waitFor(async () => (await lockWaiters(db)) >= waiting, 5_000, 2);
    }
  });
  return await Promise.all(pending);
}

/** Statements of this database waiting on a lock (here: the gateways' lease growths). */
async function lockWaiters(db: Kysely<Database>): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    select count(*)::int as n from pg_stat_activity
    where datname = current_database() and wait_event_type = 'Lock'
  `.execute(db);
  return rows[0]!.n;
}

/**
 * Once settled, the account was charged one request, through the ledger,
 * against a lease of `winner` that the charge used up (the other gateway
 * holds none), and its balance is what was credited less that charge (so
 * never below zero).
 */
async function assertChargedOnce(
  stack: Stack,
  accountId: string,
  winner: PlaneProcess,
  what: string,
): Promise<void> {
  const db = stack.database.db.db;
  await waitFor(async () => (await charges(db, accountId)).length > 0, 5_000);
  assert.deepEqual(await charges(db, accountId), [{ status: 200, cost: REQUEST_COST }], what);
  const { balance, reserved, entries } = await accountBooks(stack, accountId);
  assert.equal(balance, 1_758_334n - REQUEST_COST, `${what}: the balance`);
  assert.equal(entries, balance, `${what}: the ledger does not reconcile`);
  assert.equal(reserved, 0n, `${what}: still reserved after the charge`);
  const replica = `${Deno.hostname()}:${winner.process.pid}:`;
  for (const lease of await leases(db, accountId)) {
    assert.ok(lease.replica.startsWith(replica), `${what}: a lease of the refusing gateway`);
    assert.equal(lease.amount, 0n, `${what}: a lease still holds money`);
  }
}

/** The account's charged requests: usage rows the ledger posted. */
async function charges(db: Kysely<Database>, accountId: string) {
  const rows = await db.selectFrom("usage_events")
    .select(["status", "cost", "fee"])
    .where("account_id", "=", accountId)
    .where("ledger_transaction_id", "is not", null)
    .execute();
  return rows.map((r) => ({ status: r.status, cost: BigInt(r.cost) + BigInt(r.fee) }));
}

/** The account's leases, of every kind, and the replica holding each. */
async function leases(db: Kysely<Database>, accountId: string) {
  const rows = await db.selectFrom("allowances")
    .select(["replica_id", "amount"])
    .where("account_id", "=", accountId)
    .execute();
  return rows.map((r) => ({ replica: r.replica_id, amount: BigInt(r.amount) }));
}
