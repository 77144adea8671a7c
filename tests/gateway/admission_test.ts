/** Admission: the worst case a request reserves, and the 402 when it does not fit. */
import assert from "node:assert/strict";
import { admit, DEFAULT_OUTPUT_CAP, worstCaseCost } from "../../gateway/billing/admission.ts";
import type { Allowances, Reservation } from "../../gateway/billing/allowances.ts";
import { GatewayError } from "../../gateway/errors.ts";
import type { ModelPolicy } from "../../gateway/policy/snapshot.ts";

function model(input: bigint, output: bigint, maxOutputTokens: number | null = null): ModelPolicy {
  return {
    id: `m-${input}-${output}`,
    name: "m",
    providerId: "p",
    upstreamName: "m",
    prices: { input, output, cachedInput: 0n },
    maxOutputTokens,
    createdAt: 0,
  };
}

// Prices are microcents per million tokens: 1_000_000n is one microcent a token.
const CASES: [string, ModelPolicy[], number, number | null, number, bigint][] = [
  ["prompt and max_tokens at their prices", [model(1_000_000n, 2_000_000n)], 100, 50, 0, 200n],
  ["the fee on top, rounded up", [model(1_000_000n, 2_000_000n)], 100, 50, 550, 200n + 11n],
  ["the model's output cap without max_tokens", [model(0n, 1_000_000n, 300)], 0, null, 0, 300n],
  [
    "the default cap without either",
    [model(0n, 1_000_000n)],
    0,
    null,
    0,
    BigInt(DEFAULT_OUTPUT_CAP),
  ],
  ["max_tokens wins over the cap", [model(0n, 1_000_000n, 300)], 0, 10, 0, 10n],
  [
    "the dearest target of an alias",
    [model(1_000_000n, 1_000_000n), model(3_000_000n, 1_000_000n)],
    10,
    10,
    0,
    40n,
  ],
  ["a fraction of a unit rounds up", [model(1n, 1n)], 1, 1, 0, 2n],
];

Deno.test("worstCaseCost: prompt x input price + most output x output price + fee", () => {
  for (const [name, models, prompt, maxTokens, feeBps, expected] of CASES) {
    assert.equal(
      worstCaseCost(models, { promptTokens: prompt, maxTokens }, feeBps),
      expected,
      name,
    );
  }
});

/** Allowances over a plain number: what is free, and what was asked for. */
function fakeAllowances(free: bigint) {
  const asked: bigint[] = [];
  const allowances = {
    reserve(accountId: string, amount: bigint): Reservation | null {
      asked.push(amount);
      if (amount > free) return null;
      free -= amount;
      return { accountId, leaseId: "lease", amount };
    },
  } as unknown as Allowances;
  return { allowances, asked };
}

Deno.test("worstCaseCost: every output the request may make is reserved (n, best_of, images)", () => {
  const models = [model(0n, 1_000_000n)];
  // 1 unit a token of output. Each of the outputs may use max_tokens, or the cap without it.
  assert.equal(worstCaseCost(models, { promptTokens: 10, maxTokens: 100, outputs: 1 }, 0), 100n);
  assert.equal(worstCaseCost(models, { promptTokens: 10, maxTokens: 100, outputs: 8 }, 0), 800n);
  assert.equal(
    worstCaseCost(models, { promptTokens: 0, maxTokens: null, outputs: 3 }, 0),
    BigInt(3 * DEFAULT_OUTPUT_CAP),
  );
});

const PRICED = [model(1_000_000n, 1_000_000n)];

Deno.test("admit reserves the free bound first, and never counts the prompt when it fits", async () => {
  const { allowances, asked } = fakeAllowances(10_000n);
  let counted = 0;
  const reservation = await admit(allowances, {
    accountId: "a",
    models: PRICED,
    maxTokens: 100,
    promptBound: 2_000,
    countPrompt: () => (counted++, 400),
    feeBps: 0,
  });
  assert.equal(reservation!.amount, 2_100n);
  assert.deepEqual(asked, [2_100n]);
  assert.equal(counted, 0);
});

Deno.test("admit counts the prompt when the bound does not fit, and reserves the count", async () => {
  const { allowances, asked } = fakeAllowances(600n);
  const reservation = await admit(allowances, {
    accountId: "a",
    models: PRICED,
    maxTokens: 100,
    promptBound: 2_000,
    countPrompt: () => 400,
    feeBps: 0,
  });
  assert.equal(reservation!.amount, 500n);
  assert.deepEqual(asked, [2_100n, 500n]);
});

Deno.test("a free model reserves nothing, whatever the balance", async () => {
  const { allowances, asked } = fakeAllowances(0n);
  const free = [model(0n, 0n)];
  assert.equal(
    await admit(allowances, {
      accountId: "a",
      models: free,
      maxTokens: null,
      promptBound: 10_000,
      countPrompt: () => 10,
      feeBps: 550,
    }),
    null,
  );
  assert.deepEqual(asked, []);
});

Deno.test("admit refuses with a 402 insufficient_quota that says what to do", async () => {
  const { allowances } = fakeAllowances(100n);
  const error = await admit(allowances, {
    accountId: "a",
    models: PRICED,
    maxTokens: 100_000_000,
    promptBound: 10,
    countPrompt: () => 10,
    feeBps: 550,
  }).then(() => null, (e) => e);
  assert.ok(error instanceof GatewayError);
  assert.equal(error.status, 402);
  assert.equal(error.code, "insufficient_quota");
  assert.equal(error.type, "insufficient_quota");
  assert.equal(error.retryable, false);
  // 100,000,010 units + 5.5% = 1.055... USD, rounded up to the cent.
  assert.match(error.message, /up to 1\.06 USD\)\. Top up the account's balance/);
});
