/**
 * Money end to end: prepaid balances are never overspent, across gateway
 * processes, and every answered request is charged through the ledger.
 */
import assert from "node:assert/strict";
import { sql } from "kysely";
import { POSTGRES_URL } from "../helpers/database.ts";
import { completion, startFakeUpstream } from "../helpers/fake_upstream.ts";
import { type PlaneProcess, startPlaneProcess } from "../helpers/process.ts";
import { type Stack, startStack, TEST_SECRET } from "../helpers/stack.ts";

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

async function books(stack: Stack, accountId: string) {
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
    const { balance, entries } = await books(stack, accountId);
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
    assert.equal((await books(stack, accountId)).balance, 1_000_000n);
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
    assert.equal((await books(stack, accountId)).balance, 1_500_000n - REQUEST_COST);
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
      other = await startPlaneProcess("gateway/main.ts", {
        DATABASE_URL: stack.database.url!,
        TOLLGATE_SECRET: TEST_SECRET,
        TOLLGATE_GATEWAY_PORT: "0",
        TOLLGATE_HOST: "127.0.0.1",
        TOLLGATE_SPOOL_DIR: await Deno.makeTempDir({ prefix: "tollgate-spool-" }),
      });
      // 10 requests' worth, and half of an eleventh.
      const { secret, accountId } = await stack.createKey({ balance: "0.11077500" });
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
      const { balance, entries, reserved } = await books(stack, accountId);
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

Deno.test({
  name:
    "two requests that each need 60% of a balance, run together many times: exactly one is admitted",
  ignore: !POSTGRES_URL,
  async fn() {
    const stack = await startStack();
    const fake = await priced(stack);
    try {
      for (let round = 0; round < 10; round++) {
        // Each request reserves (and costs) 1,055,000: 60% of 1,758,334.
        const { secret } = await stack.createKey({ balance: "0.01758334" });
        const statuses = await Promise.all([
          ask(stack.gatewayUrl, secret),
          ask(stack.gatewayUrl, secret),
        ].map(async (pending) => {
          const response = await pending;
          await response.body?.cancel();
          return response.status;
        }));
        assert.deepEqual(statuses.sort(), [200, 402], `round ${round}`);
      }
    } finally {
      await fake.close();
      await stack.close();
    }
  },
});
