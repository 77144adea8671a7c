/**
 * Billed answers of every non-chat endpoint (completions, embeddings,
 * images, responses): X-Tollgate-Mode, and X-Tollgate-Cost to the exact
 * amount the model's prices make of the usage the upstream reported, and in
 * Standard mode X-Tollgate-Balance, which the settled ledger agrees with.
 * Images are priced per token like text: the `input_tokens` and
 * `output_tokens` of their usage, at the model's input and output prices.
 */
import assert from "node:assert/strict";
import { formatUsd } from "../../schema/money.ts";
import { accountBooks, chargeOf, reconcile } from "../helpers/books.ts";
import type { FakeUpstream } from "../helpers/fake_upstream.ts";
import { billingHeaders, withPricedUpstream } from "../helpers/priced.ts";
import type { Stack, StackOptions } from "../helpers/stack.ts";

const MODEL = "priced-model";
const CUSTOMER_KEY = "sk-customer-0123456789";
/** The model's prices in microcents a token: 2, 0.50 (cached input) and 8 USD per million. */
const INPUT = 200n;
const CACHED = 50n;
const OUTPUT = 800n;
/** Each test account's credit: 1 USD. */
const CREDIT = 100_000_000n;

interface Case {
  path: string;
  body: Record<string, unknown>;
  /** The upstream's answer in the endpoint's shape, with the usage it reports. */
  answer: Record<string, unknown>;
  /** That usage at the model's prices, in microcents. */
  cost: bigint;
  /** X-Tollgate-Cost and -Balance (from CREDIT) at the default 5.5% fee. */
  standard: { cost: string; balance: string };
  /** X-Tollgate-Cost past the free BYOK requests, at the default 5% routing fee. */
  byokFee: string;
}

const CASES: Record<string, Case> = {
  completions: {
    path: "/v1/completions",
    body: { model: MODEL, prompt: "Say hello", max_tokens: 100 },
    answer: {
      id: "cmpl-fake",
      object: "text_completion",
      created: 1_700_000_000,
      model: "fake-1",
      choices: [{ index: 0, text: "Hello", finish_reason: "stop", logprobs: null }],
      usage: { prompt_tokens: 120, completion_tokens: 45, total_tokens: 165 },
    },
    cost: 120n * INPUT + 45n * OUTPUT, // 60,000; fee 3,300
    standard: { cost: "0.000633", balance: "0.999367" },
    byokFee: "0.000030",
  },
  embeddings: {
    path: "/v1/embeddings",
    body: { model: MODEL, input: "Embed me" },
    answer: {
      object: "list",
      model: "fake-1",
      data: [{ object: "embedding", index: 0, embedding: [0.6, 0.8] }],
      usage: { prompt_tokens: 37, total_tokens: 37 },
    },
    cost: 37n * INPUT, // 7,400; fee 407
    standard: { cost: "0.000078", balance: "0.999922" },
    byokFee: "0.000004",
  },
  images: {
    path: "/v1/images/generations",
    body: { model: MODEL, prompt: "A lighthouse at dawn", n: 2 },
    answer: {
      created: 1_700_000_000,
      data: [{ b64_json: "iVBORw0KGgo=" }, { b64_json: "iVBORw0KGgo=" }],
      usage: {
        input_tokens: 13,
        input_tokens_details: { text_tokens: 13, image_tokens: 0 },
        output_tokens: 544,
        total_tokens: 557,
      },
    },
    cost: 13n * INPUT + 544n * OUTPUT, // 437,800; fee 24,079
    standard: { cost: "0.004619", balance: "0.995381" },
    byokFee: "0.000219",
  },
  responses: {
    path: "/v1/responses",
    body: { model: MODEL, input: "Say hello", max_output_tokens: 100 },
    answer: {
      id: "resp_fake",
      object: "response",
      created_at: 1_700_000_000,
      status: "completed",
      model: "fake-1",
      output: [{
        type: "message",
        id: "msg_fake",
        status: "completed",
        role: "assistant",
        content: [{ type: "output_text", text: "Hello", annotations: [] }],
      }],
      usage: {
        input_tokens: 100,
        input_tokens_details: { cached_tokens: 30 },
        output_tokens: 25,
        output_tokens_details: { reasoning_tokens: 0 },
        total_tokens: 125,
      },
    },
    cost: 70n * INPUT + 30n * CACHED + 25n * OUTPUT, // 35,500; fee 1,952.5, rounded up
    standard: { cost: "0.000375", balance: "0.999625" },
    byokFee: "0.000018",
  },
};

/** `amount` x `bps` / 10,000, rounded up to the next microcent (the fee rule). */
function feeAt(amount: bigint, bps: bigint): bigint {
  return (amount * bps + 9_999n) / 10_000n;
}

/** A stack with the priced model on a fake upstream that answers each endpoint as CASES says. */
function withPricedStack(
  options: StackOptions,
  test: (stack: Stack, fake: FakeUpstream) => Promise<void>,
) {
  return withPricedUpstream({
    stack: options,
    models: [{ model: MODEL, inputPrice: "2", cachedInputPrice: "0.5", outputPrice: "8" }],
    reply: (_body, request) => {
      const path = new URL(request.url).pathname;
      const known = Object.values(CASES).find((c) => c.path === path);
      return known ? Response.json(known.answer) : new Response("unknown path", { status: 404 });
    },
  }, test);
}

async function post(stack: Stack, secret: string, c: Case, extra: Record<string, unknown> = {}) {
  const response = await fetch(`${stack.gatewayUrl}${c.path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
    body: JSON.stringify({ ...c.body, ...extra }),
  });
  assert.equal(response.status, 200, await response.clone().text());
  assert.deepEqual(await response.json(), c.answer, "the answer did not come through as sent");
  return billingHeaders(response);
}

Deno.test("completions, embeddings, images and responses carry their mode, exact cost and the balance the ledger settles to", async (t) => {
  await withPricedStack({}, async (stack) => {
    for (const [name, c] of Object.entries(CASES)) {
      await t.step(name, async () => {
        const { secret, accountId } = await stack.createKey({ accountName: name, balance: "1" });
        const headers = await post(stack, secret, c);
        const fee = feeAt(c.cost, 550n);
        assert.deepEqual(
          { mode: headers.mode, cost: headers.cost, balance: headers.balance },
          { mode: "standard", ...c.standard },
        );
        assert.equal(headers.cost, formatUsd(c.cost + fee));

        assert.deepEqual(await chargeOf(stack, headers.requestId), {
          mode: "standard",
          cost: c.cost,
          fee,
          kind: "charge",
          entries: {
            customer: -(c.cost + fee),
            "system:provider_costs": c.cost,
            "system:revenue": fee,
          },
          requests: 1,
        });
        const books = await accountBooks(stack, accountId);
        assert.equal(books.balance, CREDIT - c.cost - fee);
        assert.equal(books.entries, books.balance, "the ledger and the balance disagree");
        assert.equal(headers.balance, formatUsd(books.balance), "the header is not the balance");
      });
    }
    const reconciliation = await reconcile(stack);
    assert.equal(reconciliation.balanced, true, JSON.stringify(reconciliation));
    assert.equal(reconciliation.entriesSum, "0.00000000");
    assert.equal(reconciliation.accounts.length, Object.keys(CASES).length);
  });
});

Deno.test("BYOK on completions, embeddings, images and responses: cost 0 in the free tier, then the routing fee, and no balance", async (t) => {
  const billing = { standardFeeBps: 550, byokFeeBps: 500, byokFreeRequests: 1 };
  await withPricedStack({ billing }, async (stack, fake) => {
    for (const [name, c] of Object.entries(CASES)) {
      await t.step(name, async () => {
        const { secret, accountId } = await stack.createKey({ accountName: name, balance: "1" });
        const free = await post(stack, secret, c, { provider_key: CUSTOMER_KEY });
        assert.equal(fake.requests.at(-1)!.headers.get("authorization"), `Bearer ${CUSTOMER_KEY}`);
        assert.ok(!("provider_key" in fake.requests.at(-1)!.body), "provider_key went upstream");
        const paid = await post(stack, secret, c, { provider_key: CUSTOMER_KEY });
        const fee = feeAt(c.cost, 500n);
        assert.deepEqual(
          [free, paid].map((h) => ({ mode: h.mode, cost: h.cost, balance: h.balance })),
          [
            { mode: "byok", cost: "0.000000", balance: null },
            { mode: "byok", cost: c.byokFee, balance: null },
          ],
        );
        assert.equal(paid.cost, formatUsd(fee));

        // The would-be cost is recorded, not charged; the free request posts nothing.
        assert.deepEqual(await chargeOf(stack, free.requestId), {
          mode: "byok",
          cost: c.cost,
          fee: 0n,
          kind: null,
          entries: {},
          requests: 0,
        });
        assert.deepEqual(await chargeOf(stack, paid.requestId), {
          mode: "byok",
          cost: c.cost,
          fee,
          kind: "byok_fee",
          entries: { customer: -fee, "system:revenue": fee },
          requests: 1,
        });
        const books = await accountBooks(stack, accountId);
        assert.equal(books.balance, CREDIT - fee);
        assert.equal(books.entries, books.balance, "the ledger and the balance disagree");
      });
    }
    assert.equal((await reconcile(stack)).balanced, true);
  });
});
