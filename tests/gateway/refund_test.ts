/**
 * Refunds: an operator gives back what a request was charged, through the
 * ledger, once per request.
 */
import assert from "node:assert/strict";
import { sql } from "kysely";
import { reconcileLedger } from "../../control/services/ledger.ts";
import { executeAs, OPERATOR, userWith } from "../helpers/as_actor.ts";
import { completion, type FakeUpstream } from "../helpers/fake_upstream.ts";
import { withPricedUpstream } from "../helpers/priced.ts";
import type { Stack } from "../helpers/stack.ts";

const MODEL = "refund-model";
/** 10,000 output tokens at 1 USD per million, + 5.5%: 1,000,000 + 55,000 microcents. */
const REQUEST_CHARGE = 1_055_000n;
const CREDIT = 500_000_000n;

interface Refunded {
  __typename: string;
  requestId?: string;
  accountId?: string;
  transactionId?: string;
  amount?: string;
  balance?: string;
  created?: boolean;
  message?: string;
  field?: string;
}

const REFUND = `mutation ($input: RefundRequestInput!) { refundRequest(input: $input) {
  __typename
  ... on RequestRefund { requestId accountId transactionId amount balance created }
  ... on Error { message } ... on InvalidInputError { field } } }`;

async function refund(stack: Stack, requestId: string, reason = "bad answer"): Promise<Refunded> {
  const result = await stack.graphql<{ refundRequest: Refunded }>(REFUND, {
    input: { requestId, reason },
  });
  assert.equal(result.errors, undefined, JSON.stringify(result.errors));
  return result.data!.refundRequest;
}

function withPriced(test: (stack: Stack, fake: FakeUpstream) => Promise<void>) {
  return withPricedUpstream({
    models: [{ model: MODEL, inputPrice: "0", outputPrice: "1" }],
    reply: (body) =>
      Response.json(
        completion(String(body.model), "ok", { prompt_tokens: 5, completion_tokens: 10_000 }),
      ),
  }, test);
}

async function ask(stack: Stack, secret: string): Promise<string> {
  const response = await fetch(`${stack.gatewayUrl}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
    body: JSON.stringify({
      model: MODEL,
      max_tokens: 10_000,
      messages: [{ role: "user", content: "hi" }],
    }),
  });
  await response.body?.cancel();
  return response.headers.get("x-request-id")!;
}

async function accountBooks(stack: Stack, accountId: string, keyId: string) {
  const { rows } = await sql<{ balance: string; entries: string; spent: string }>`
    select a.balance::text,
      (select coalesce(sum(amount), 0) from ledger_entries
        where book = 'customer:' || a.id::text)::text as entries,
      (select spent from api_keys where id = ${keyId})::text as spent
    from accounts a where a.id = ${accountId}
  `.execute(stack.database.db.db);
  const row = rows[0]!;
  return { balance: BigInt(row.balance), entries: BigInt(row.entries), spent: BigInt(row.spent) };
}

Deno.test("refundRequest gives a request's charge back through the ledger, once, audited, and lowers the key's spend", async () => {
  await withPriced(async (stack) => {
    const { secret, accountId, keyId } = await stack.createKey({ balance: "5" });
    const requestId = await ask(stack, secret);
    await ask(stack, secret); // another request, not refunded
    await stack.usageRows();
    assert.deepEqual(await accountBooks(stack, accountId, keyId), {
      balance: CREDIT - 2n * REQUEST_CHARGE,
      entries: CREDIT - 2n * REQUEST_CHARGE,
      spent: 2n * REQUEST_CHARGE,
    });

    const first = await refund(stack, requestId);
    assert.equal(first.__typename, "RequestRefund", JSON.stringify(first));
    assert.equal(first.requestId, requestId);
    assert.equal(first.accountId, accountId);
    assert.equal(first.amount, "0.01055000");
    assert.equal(first.balance, "4.98945000");
    assert.equal(first.created, true);
    assert.deepEqual(await accountBooks(stack, accountId, keyId), {
      balance: CREDIT - REQUEST_CHARGE,
      entries: CREDIT - REQUEST_CHARGE,
      spent: REQUEST_CHARGE,
    });

    const db = stack.database.db.db;
    const entries = await db.selectFrom("ledger_entries")
      .select(["book", "amount", "memo", "reference"])
      .where("transaction_id", "=", first.transactionId!).where("kind", "=", "refund")
      .orderBy("book").execute();
    assert.deepEqual(entries, [
      {
        book: `customer:${accountId}`,
        amount: REQUEST_CHARGE,
        memo: "bad answer",
        reference: requestId,
      },
      { book: "system:refunds", amount: -REQUEST_CHARGE, memo: "bad answer", reference: requestId },
    ]);
    const audit = await db.selectFrom("audit_log").select(["action", "target_id", "diff"])
      .where("action", "=", "request.refund").execute();
    assert.equal(audit.length, 1);
    assert.equal(audit[0]!.target_id, requestId);

    // Again: the first refund comes back and nothing is written.
    const again = await refund(stack, requestId, "clicked twice");
    assert.equal(again.__typename, "RequestRefund");
    assert.equal(again.created, false);
    assert.equal(again.transactionId, first.transactionId);
    assert.equal(again.amount, "0.01055000");
    assert.equal((await accountBooks(stack, accountId, keyId)).balance, CREDIT - REQUEST_CHARGE);
    assert.equal(
      (await db.selectFrom("audit_log").select("id").where("action", "=", "request.refund")
        .execute()).length,
      1,
    );
    const reconciliation = await reconcileLedger(db, { actor: OPERATOR });
    assert.equal(reconciliation.balanced, true);
  });
});

Deno.test("refundRequest refuses an unknown request, one that was not charged, and anyone but an operator", async () => {
  await withPriced(async (stack, fake) => {
    const { secret, accountId } = await stack.createKey({ balance: "5" });
    const unknown = await refund(stack, "no-such-request");
    assert.equal(unknown.__typename, "NotFoundError");
    assert.match(unknown.message!, /No request with id "no-such-request"/);

    fake.reply = () =>
      Response.json({ error: { message: "bad", type: "invalid_request_error" } }, { status: 400 });
    const failed = await ask(stack, secret);
    await stack.usageRows();
    const notCharged = await refund(stack, failed);
    assert.equal(notCharged.__typename, "InvalidInputError", JSON.stringify(notCharged));
    assert.equal(notCharged.field, "requestId");
    assert.match(notCharged.message!, /was not charged/);

    const empty = await refund(stack, failed, " ");
    assert.equal(empty.__typename, "InvalidInputError");
    assert.equal(empty.field, "reason");

    // An account's own admin may not refund its requests.
    const db = stack.database.db.db;
    const asAdmin = await executeAs<{ refundRequest: Refunded }>(
      db,
      userWith({ [accountId]: "admin" }),
      REFUND,
      { input: { requestId: failed, reason: "mine" } },
    );
    assert.equal(asAdmin.data?.refundRequest.__typename, "ForbiddenError");
    const refunds = await db.selectFrom("ledger_entries").select("id")
      .where("kind", "=", "refund").execute();
    assert.equal(refunds.length, 0);
  });
});
