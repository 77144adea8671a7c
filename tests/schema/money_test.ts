import assert from "node:assert/strict";
import { formatUsd, parseUsd, tokenCost, UNITS_PER_USD, usageCost } from "../../schema/money.ts";

Deno.test("USD amounts parse exactly into microcents", () => {
  assert.equal(parseUsd("2.50"), 250_000_000n);
  assert.equal(parseUsd("0.00000001"), 1n);
  assert.equal(parseUsd("-1"), -UNITS_PER_USD);
  assert.equal(parseUsd("92233720368.54775807"), 9_223_372_036_854_775_807n);
  assert.throws(() => parseUsd("1.000000001"), /at most 8 decimals/);
  assert.throws(() => parseUsd("1e3"), /Cannot parse/);
  assert.throws(() => parseUsd(""), /Cannot parse/);
});

Deno.test("microcents format to 6 decimals, rounding half up", () => {
  assert.equal(formatUsd(250_000_000n), "2.500000");
  assert.equal(formatUsd(1815n), "0.000018");
  assert.equal(formatUsd(50n), "0.000001");
  assert.equal(formatUsd(49n), "0.000000");
  assert.equal(formatUsd(-150n), "-0.000002");
  assert.equal(formatUsd(123n, 8), "0.00000123");
});

Deno.test("token cost rounds up to the next microcent, never down to zero", () => {
  assert.equal(tokenCost(1, 15_000_000n), 15n); // $0.15 per million: 15 microcents a token
  assert.equal(tokenCost(1, 1n), 1n);
  assert.equal(tokenCost(0, 1_000n), 0n);
  assert.equal(tokenCost(3, 333_333n), 1n);
});

Deno.test("usage cost prices cached prompt tokens at the cached rate", () => {
  const prices = { input: 250_000_000n, output: 1_000_000_000n, cachedInput: 125_000_000n };
  const cost = usageCost({ promptTokens: 1000, completionTokens: 100, cachedTokens: 400 }, prices);
  // 600 * 250 + 400 * 125 + 100 * 1000 microcents
  assert.equal(cost, 150_000n + 50_000n + 100_000n);
});
