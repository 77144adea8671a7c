import assert from "node:assert/strict";
import OpenAI from "openai";
import {
  chunk,
  type FakeUpstream,
  sseResponse,
  startFakeUpstream,
  usageChunk,
} from "../helpers/fake_upstream.ts";
import { type Stack, startStack, waitFor } from "../helpers/stack.ts";

const MODEL = "fake-gpt";

/** A stack whose model `fake-gpt` is served by a fake OpenAI-compatible upstream. */
async function withUpstream(
  test: (stack: Stack, fake: FakeUpstream, client: OpenAI) => Promise<void>,
) {
  const stack = await startStack();
  const fake = startFakeUpstream();
  try {
    await stack.addModel({
      provider: "fake",
      baseUrl: fake.url,
      apiKey: "sk-upstream-secret",
      model: MODEL,
      upstreamName: "gpt-upstream",
    });
    const { secret } = await stack.createKey();
    const client = stack.openai(secret);
    await waitFor(async () => (await client.models.list()).data.some((m) => m.id === MODEL));
    await test(stack, fake, client);
  } finally {
    await fake.close();
    await stack.close();
  }
}

Deno.test("requests reach the upstream unchanged but for the model, with the provider's credential", async () => {
  await withUpstream(async (stack, fake, client) => {
    const tools = [{
      type: "function" as const,
      function: { name: "lookup", parameters: { type: "object", properties: {} } },
    }];
    const completion = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: "hi" }],
      tools,
      seed: 7,
      stop: ["END"],
      response_format: { type: "json_object" },
    });
    assert.equal(completion.choices[0]!.message.content, "Hello from the fake upstream.");
    const sent = fake.requests[0]!;
    assert.equal(sent.headers.get("authorization"), "Bearer sk-upstream-secret");
    assert.equal(sent.body.model, "gpt-upstream");
    assert.deepEqual(sent.body.tools, tools);
    assert.equal(sent.body.seed, 7);
    assert.deepEqual(sent.body.stop, ["END"]);
    assert.deepEqual(sent.body.response_format, { type: "json_object" });

    const [row] = await stack.usageRows();
    assert.equal(row!.prompt_tokens, 11);
    assert.equal(row!.completion_tokens, 7);
    // $1 and $2 per million tokens: 100 and 200 microcents a token.
    assert.equal(row!.cost, 11n * 100n + 7n * 200n);
    assert.equal(row!.provider_name, "fake");
    assert.equal(row!.upstream_model, "gpt-upstream");
  });
});

Deno.test("a stream always asks the upstream for usage, and strips it when the client did not", async () => {
  await withUpstream(async (stack, fake, client) => {
    fake.reply = (body) =>
      sseResponse([
        chunk(String(body.model), { role: "assistant", content: "" }),
        chunk(String(body.model), { content: "Hel" }),
        chunk(String(body.model), { content: "lo" }, "stop"),
        usageChunk(String(body.model), 12, 3),
        "[DONE]",
      ]);
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: "hi" }],
      stream: true,
    });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    assert.equal(chunks.map((c) => c.choices[0]?.delta?.content ?? "").join(""), "Hello");
    assert.ok(chunks.every((c) => c.choices.length > 0), "no usage-only chunk reaches the client");
    assert.deepEqual(fake.requests[0]!.body.stream_options, { include_usage: true });

    const [row] = await stack.usageRows();
    assert.equal(row!.prompt_tokens, 12);
    assert.equal(row!.completion_tokens, 3);
    assert.equal(row!.estimated, false);
    assert.equal(row!.error_code, null);
  });
});

Deno.test("a stream cut before usage is estimated with the tokenizer, never billed as zero", async () => {
  await withUpstream(async (stack, fake, client) => {
    fake.reply = (body) =>
      sseResponse([
        chunk(String(body.model), { role: "assistant", content: "" }),
        chunk(String(body.model), { content: "The quick brown fox jumps over the lazy dog." }),
      ]);
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: "hi" }],
      stream: true,
    });
    let text = "";
    for await (const c of stream) text += c.choices[0]?.delta?.content ?? "";
    assert.equal(text, "The quick brown fox jumps over the lazy dog.");

    const [row] = await stack.usageRows();
    assert.equal(row!.estimated, true);
    assert.equal(row!.error_code, "upstream_cut");
    assert.equal(row!.completion_tokens, 10); // o200k_base: 9 words and the full stop
    assert.ok(row!.prompt_tokens > 0);
    assert.ok(row!.cost > 0n);
  });
});

Deno.test("an upstream failing mid-stream becomes an in-band error event", async () => {
  await withUpstream(async (stack, fake, client) => {
    fake.reply = (body) =>
      sseResponse([
        chunk(String(body.model), { role: "assistant", content: "" }),
        chunk(String(body.model), { content: "partial" }),
      ], {
        cutAfter: 2,
      });
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: "hi" }],
      stream: true,
    });
    let text = "";
    const error = await (async () => {
      for await (const c of stream) text += c.choices[0]?.delta?.content ?? "";
    })().then(() => null, (e) => e);
    assert.equal(text, "partial");
    assert.ok(error instanceof OpenAI.APIError, `expected an in-band APIError, got ${error}`);
    assert.match(error.message, /upstream stream from "fake" failed/);

    const [row] = await stack.usageRows();
    assert.equal(row!.error_code, "upstream_error");
    assert.equal(row!.estimated, true);
  });
});

Deno.test("a client that leaves mid-stream aborts the upstream request and is still metered", async () => {
  await withUpstream(async (stack, fake, client) => {
    let upstreamCancelled = false;
    fake.reply = (body) => {
      const encoder = new TextEncoder();
      let i = 0;
      return new Response(
        new ReadableStream<Uint8Array>({
          async pull(controller) {
            await new Promise((resolve) => setTimeout(resolve, 10));
            controller.enqueue(
              encoder.encode(`data: ${chunk(String(body.model), { content: `word${i++} ` })}\n\n`),
            );
          },
          cancel() {
            upstreamCancelled = true;
          },
        }),
        { headers: { "content-type": "text/event-stream" } },
      );
    };
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: "hi" }],
      stream: true,
    });
    let seen = 0;
    for await (const _ of stream) if (++seen === 3) break;
    await waitFor(() => upstreamCancelled, 2_000);
    const rows = await waitFor(async () => (await stack.usageRows()).length === 1, 2_000).then(() =>
      stack.usageRows()
    );
    assert.equal(rows[0]!.error_code, "client_cancelled");
    assert.equal(rows[0]!.estimated, true);
    assert.ok(rows[0]!.completion_tokens >= 3);
  });
});

Deno.test("upstream errors map to statuses a client can act on", async () => {
  await withUpstream(async (stack, fake, client) => {
    const cases: [Response, number, string][] = [
      [
        Response.json({ error: { message: "slow down" } }, {
          status: 429,
          headers: { "retry-after": "7" },
        }),
        429,
        "upstream_rate_limited",
      ],
      [
        Response.json({ error: { message: "bad field" } }, { status: 400 }),
        400,
        "invalid_request_error",
      ],
      [new Response("boom", { status: 503 }), 502, "upstream_error"],
      [new Response("no", { status: 401 }), 502, "upstream_error"],
    ];
    for (const [reply, status, code] of cases) {
      fake.reply = () => reply;
      const error = await client.chat.completions.create({
        model: MODEL,
        messages: [{ role: "user", content: "hi" }],
      })
        .then(() => null, (e) => e);
      assert.ok(error instanceof OpenAI.APIError);
      assert.equal(error.status, status, code);
      assert.equal(error.code, code);
      assert.ok(!JSON.stringify(error.error).includes("sk-upstream-secret"));
      if (status === 429) assert.equal(error.headers?.get("retry-after"), "7");
    }
    const rows = await stack.usageRows();
    assert.deepEqual(rows.map((r) => r.status).sort(), [400, 429, 502, 502]);
    assert.ok(rows.every((r) => r.cost === 0n));
  });
});
