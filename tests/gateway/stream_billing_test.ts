/**
 * A stream's billing: its headers leave before its cost is known, so it
 * carries X-Tollgate-Mode there, and its cost and balance last, as SSE
 * comments (`: x-tollgate-cost: …`) that the official clients skip. They
 * agree with the usage row and the settled ledger, in either dialect, and
 * for a stream the upstream cut (charged at its estimate).
 */
import assert from "node:assert/strict";
import { accountBooks, chargeOf, reconcile } from "../helpers/books.ts";
import { chunk, type FakeUpstream, sseResponse, usageChunk } from "../helpers/fake_upstream.ts";
import { withPricedUpstream } from "../helpers/priced.ts";
import type { Stack } from "../helpers/stack.ts";
import { formatUsd } from "../../schema/money.ts";

const MODEL = "streamed-model";
/** 1 USD of credit; 1 USD per million input tokens and 2 per million output: 100 and 200 microcents. */
const CREDIT = 100_000_000n;

function withStreams(test: (stack: Stack, fake: FakeUpstream) => Promise<void>) {
  return withPricedUpstream({
    models: [{ model: MODEL, inputPrice: "1", outputPrice: "2" }],
    reply: (body) =>
      sseResponse([
        chunk(String(body.model), { role: "assistant", content: "Hello" }),
        chunk(String(body.model), { content: " there" }),
        chunk(String(body.model), {}, "stop"),
        usageChunk(String(body.model), 40, 300),
        "[DONE]",
      ]),
  }, test);
}

/** The `: x-tollgate-…: value` comments of an SSE body, by name, and what came before them. */
function trailer(text: string): { before: string; lines: Record<string, string> } {
  const at = text.indexOf(": x-tollgate-");
  assert.ok(at > 0, `no billing comments in ${JSON.stringify(text)}`);
  assert.ok(text.endsWith("\n\n"), "the comments end the stream with a blank line");
  const lines: Record<string, string> = {};
  // One block, or (translated to Anthropic's events) one block per comment.
  for (const line of text.slice(at).trim().split("\n").filter((l) => l !== "")) {
    const match = /^: (x-tollgate-[a-z]+): (.+)$/.exec(line.trim());
    assert.ok(match, `not a billing comment: ${line}`);
    lines[match[1]!] = match[2]!;
  }
  return { before: text.slice(0, at), lines };
}

/** Cost and fee (5.5%, rounded up) of a usage, in microcents. */
function charged(promptTokens: bigint, completionTokens: bigint): bigint {
  const cost = promptTokens * 100n + completionTokens * 200n;
  return cost + (cost * 550n + 9_999n) / 10_000n;
}

Deno.test("a stream ends with its cost and balance as SSE comments, which the ledger agrees with", async () => {
  await withStreams(async (stack) => {
    const { secret, accountId } = await stack.createKey({ balance: "1" });
    for (const includeUsage of [false, true]) {
      const response = await fetch(`${stack.gatewayUrl}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
        body: JSON.stringify({
          model: MODEL,
          stream: true,
          stream_options: includeUsage ? { include_usage: true } : undefined,
          messages: [{ role: "user", content: "hi" }],
        }),
      });
      assert.equal(response.status, 200);
      assert.equal(response.headers.get("x-tollgate-mode"), "standard");
      assert.equal(response.headers.get("x-tollgate-cost"), null, "not known when headers leave");
      const { before, lines } = trailer(await response.text());
      assert.ok(before.endsWith("data: [DONE]\n\n"), "the comments come after the last event");
      assert.equal(before.includes('"prompt_tokens":40'), includeUsage);
      const { cost, fee, entries } = await chargeOf(stack, response.headers.get("x-request-id")!);
      assert.equal(cost + fee, charged(40n, 300n));
      assert.equal(entries.customer, -(cost + fee));
      const { balance } = await accountBooks(stack, accountId);
      assert.deepEqual(lines, {
        "x-tollgate-mode": "standard",
        "x-tollgate-cost": formatUsd(cost + fee),
        "x-tollgate-balance": formatUsd(balance),
      });
    }
    const { balance, entries } = await accountBooks(stack, accountId);
    assert.equal(balance, CREDIT - 2n * charged(40n, 300n));
    assert.equal(entries, balance);
    assert.equal((await reconcile(stack)).balanced, true);
  });
});

Deno.test("the official clients read a stream with billing comments as before, in either dialect", async () => {
  await withStreams(async (stack) => {
    const { secret, accountId } = await stack.createKey({ balance: "1" });
    const stream = await stack.openai(secret).chat.completions.create({
      model: MODEL,
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: "user", content: "hi" }],
    });
    let text = "";
    let usage = null;
    for await (const part of stream) {
      text += part.choices[0]?.delta.content ?? "";
      usage = part.usage ?? usage;
    }
    assert.equal(text, "Hello there");
    assert.equal(usage?.completion_tokens, 300);

    // Anthropic's Messages, translated from the upstream's chat stream: the
    // comments come after message_stop, and the SDK's stream ends normally.
    const anthropic = stack.anthropic(secret);
    const raw = await anthropic.messages.create({
      model: MODEL,
      max_tokens: 1_000,
      stream: true,
      messages: [{ role: "user", content: "hi" }],
    }).asResponse();
    const { before, lines } = trailer(await raw.text());
    assert.ok(before.trimEnd().endsWith('data: {"type":"message_stop"}'), before);
    assert.equal(lines["x-tollgate-mode"], "standard");
    const message = await anthropic.messages.stream({
      model: MODEL,
      max_tokens: 1_000,
      messages: [{ role: "user", content: "hi" }],
    }).finalMessage();
    assert.deepEqual(message.content, [{ type: "text", text: "Hello there" }]);
    assert.equal(message.usage.output_tokens, 300);
    const { balance, entries } = await accountBooks(stack, accountId);
    assert.equal(balance, CREDIT - 3n * charged(40n, 300n));
    assert.equal(entries, balance);
  });
});

Deno.test("a stream the upstream cuts ends with its estimated cost, as charged", async () => {
  await withStreams(async (stack, fake) => {
    const { secret, accountId } = await stack.createKey({ balance: "1" });
    fake.reply = (body) =>
      sseResponse([
        chunk(String(body.model), { role: "assistant", content: "Hello" }),
        chunk(String(body.model), { content: " there, and then" }),
      ], { cutAfter: 2 });
    const response = await fetch(`${stack.gatewayUrl}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
      body: JSON.stringify({
        model: MODEL,
        stream: true,
        messages: [{ role: "user", content: "hi" }],
      }),
    });
    const { before, lines } = trailer(await response.text());
    assert.match(before, /"code":"upstream_error"/, "the cut is told in-band first");
    const requestId = response.headers.get("x-request-id")!;
    const { cost, fee } = await chargeOf(stack, requestId);
    const row = await stack.database.db.db.selectFrom("usage_events").selectAll()
      .where("request_id", "=", requestId).executeTakeFirstOrThrow();
    assert.equal(row.estimated, true);
    assert.ok(cost > 0n, "a cut stream is never billed as zero");
    assert.equal(lines["x-tollgate-cost"], formatUsd(cost + fee));
    assert.equal(
      lines["x-tollgate-balance"],
      formatUsd((await accountBooks(stack, accountId)).balance),
    );
  });
});
