/**
 * The operator's fees as configured, end to end: TOLLGATE_STANDARD_FEE_BPS
 * and TOLLGATE_BYOK_FEE_BPS other than their defaults (5.5% and 5%) are what
 * admission reserves, what X-Tollgate-Cost says, what the usage row keeps
 * and what the ledger posts; a fee of 0 posts no revenue at all.
 */
import assert from "node:assert/strict";
import type { BillingConfig } from "../../schema/config.ts";
import { formatUsd } from "../../schema/money.ts";
import { accountBooks, chargeOf, reconcile } from "../helpers/books.ts";
import { completion, type FakeUpstream } from "../helpers/fake_upstream.ts";
import { billingHeaders, withPricedUpstream } from "../helpers/priced.ts";
import type { Stack } from "../helpers/stack.ts";

const MODEL = "priced-model";
/** Output only (1 USD per million: 100 microcents a token), for admission's worst case. */
const OUTPUT_ONLY = "output-only-model";
const CUSTOMER_KEY = "sk-customer-0123456789";
/** Each answer's usage, at 1 and 3 USD per million (100 and 300 microcents a token). */
const PROMPT_TOKENS = 1_234;
const COMPLETION_TOKENS = 567;
const COST = 1_234n * 100n + 567n * 300n; // 293,500
/** Each test account's credit: 1 USD. */
const CREDIT = 100_000_000n;

/** A stack whose gateway bills with `billing`, and the two models on a fake upstream. */
function withFees(
  billing: BillingConfig,
  test: (stack: Stack, fake: FakeUpstream) => Promise<void>,
) {
  return withPricedUpstream({
    stack: { billing },
    models: [
      { model: MODEL, inputPrice: "1", outputPrice: "3" },
      { model: OUTPUT_ONLY, upstreamName: "output-only-1", inputPrice: "0", outputPrice: "1" },
    ],
    reply: (body) =>
      Response.json(
        body.model === "output-only-1"
          ? completion("output-only-1", "ok", { prompt_tokens: 5, completion_tokens: 10_000 })
          : completion(String(body.model), "ok", {
            prompt_tokens: PROMPT_TOKENS,
            completion_tokens: COMPLETION_TOKENS,
          }),
      ),
  }, test);
}

function ask(stack: Stack, secret: string, extra: Record<string, unknown> = {}) {
  return fetch(`${stack.gatewayUrl}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
    body: JSON.stringify({
      model: MODEL,
      max_tokens: 1_000,
      messages: [{ role: "user", content: "hi" }],
      ...extra,
    }),
  });
}

/** A 200's billing headers (its body read and dropped). */
async function billed(pending: Promise<Response>) {
  const response = await pending;
  assert.equal(response.status, 200, await response.text());
  return billingHeaders(response);
}

Deno.test("a 12.5% operator fee and a 2.5% BYOK fee are what admission reserves, the headers say and the ledger posts", async (t) => {
  const billing = { standardFeeBps: 1_250, byokFeeBps: 250, byokFreeRequests: 1 };
  await withFees(billing, async (stack, fake) => {
    await t.step(
      "Standard: cost + 12.5% in the header, the usage row and the three entries",
      async () => {
        const { secret, accountId } = await stack.createKey({
          accountName: "standard",
          balance: "1",
        });
        const fee = 36_688n; // 293,500 x 12.5% = 36,687.5, rounded up
        const headers = await billed(ask(stack, secret));
        assert.equal(headers.mode, "standard");
        assert.equal(headers.cost, "0.003302"); // 330,188 microcents
        assert.equal(headers.balance, "0.996698"); // 99,669,812
        assert.deepEqual(await chargeOf(stack, headers.requestId), {
          mode: "standard",
          cost: COST,
          fee,
          kind: "charge",
          entries: {
            customer: -(COST + fee),
            "system:provider_costs": COST,
            "system:revenue": fee,
          },
          requests: 1,
        });
        const books = await accountBooks(stack, accountId);
        assert.equal(books.balance, CREDIT - COST - fee);
        assert.equal(books.entries, books.balance);
        assert.equal(headers.balance, formatUsd(books.balance));
        const account = (await reconcile(stack)).accounts.find((a) => a.accountId === accountId);
        assert.deepEqual(account, {
          accountId,
          balance: "0.99669812",
          entriesSum: "0.99669812",
          balanced: true,
        });
      },
    );

    await t.step(
      "admission reserves the worst case at 12.5%, not at the default 5.5%",
      async () => {
        // 10,000 output tokens at 100 microcents: 1,000,000, + 12.5% = 1,125,000 (+ 5.5%: 1,055,000).
        const { secret: short } = await stack.createKey({ balance: "0.01124999" });
        const refused = await ask(stack, short, { model: OUTPUT_ONLY, max_tokens: 10_000 });
        assert.equal(refused.status, 402);
        assert.equal((await refused.json()).error.code, "insufficient_quota");
        const { secret, accountId } = await stack.createKey({ balance: "0.01125" });
        const served = fake.served;
        const admitted = await billed(
          ask(stack, secret, { model: OUTPUT_ONLY, max_tokens: 10_000 }),
        );
        assert.equal(fake.served, served + 1);
        assert.equal(admitted.cost, "0.011250");
        assert.equal(admitted.balance, "0.000000");
        assert.equal((await accountBooks(stack, accountId)).balance, 0n);
      },
    );

    await t.step(
      "BYOK: past the free request, 2.5% of the would-be cost, to revenue alone",
      async () => {
        const { secret, accountId } = await stack.createKey({ accountName: "byok", balance: "1" });
        const free = await billed(ask(stack, secret, { provider_key: CUSTOMER_KEY }));
        const paid = await billed(ask(stack, secret, { provider_key: CUSTOMER_KEY }));
        const fee = 7_338n; // 293,500 x 2.5% = 7,337.5, rounded up
        assert.deepEqual([free, paid].map((h) => [h.mode, h.cost, h.balance]), [
          ["byok", "0.000000", null],
          ["byok", "0.000073", null],
        ]);
        assert.equal((await chargeOf(stack, free.requestId)).fee, 0n);
        assert.deepEqual(await chargeOf(stack, paid.requestId), {
          mode: "byok",
          cost: COST,
          fee,
          kind: "byok_fee",
          entries: { customer: -fee, "system:revenue": fee },
          requests: 1,
        });
        const books = await accountBooks(stack, accountId);
        assert.equal(books.balance, CREDIT - fee);
        assert.equal(books.entries, books.balance);
      },
    );

    const reconciliation = await reconcile(stack);
    assert.deepEqual(
      { ...reconciliation, accounts: reconciliation.accounts.every((a) => a.balanced) },
      { balanced: true, entriesSum: "0.00000000", unbalancedTransactions: 0, accounts: true },
    );
  });
});

Deno.test("fees of 0: a Standard request pays the provider cost alone and BYOK requests post nothing", async () => {
  const billing = { standardFeeBps: 0, byokFeeBps: 0, byokFreeRequests: 0 };
  await withFees(billing, async (stack) => {
    const { secret, accountId } = await stack.createKey({ balance: "1" });
    const standard = await billed(ask(stack, secret));
    assert.deepEqual([standard.mode, standard.cost, standard.balance], [
      "standard",
      "0.002935",
      "0.997065",
    ]);
    assert.deepEqual(await chargeOf(stack, standard.requestId), {
      mode: "standard",
      cost: COST,
      fee: 0n,
      kind: "charge",
      entries: { customer: -COST, "system:provider_costs": COST },
      requests: 1,
    });

    // No free requests, and a routing fee of 0: nothing to reserve, even on an empty balance.
    const { secret: empty, accountId: emptyId } = await stack.createKey({ balance: "0" });
    for (const key of [secret, empty]) {
      const byok = await billed(ask(stack, key, { provider_key: CUSTOMER_KEY }));
      assert.deepEqual([byok.mode, byok.cost, byok.balance], ["byok", "0.000000", null]);
      assert.deepEqual(await chargeOf(stack, byok.requestId), {
        mode: "byok",
        cost: COST,
        fee: 0n,
        kind: null,
        entries: {},
        requests: 0,
      });
    }
    assert.equal((await accountBooks(stack, accountId)).balance, CREDIT - COST);
    assert.equal((await accountBooks(stack, emptyId)).balance, 0n);
    const reconciliation = await reconcile(stack);
    assert.equal(reconciliation.balanced, true, JSON.stringify(reconciliation));
  });
});
