/**
 * Vendor presets: what each sends upstream (request quirks, through a fake
 * upstream that records the body), where it sends it, which operations it
 * claims, and that the plain OpenAI path leaves bytes alone.
 */
import assert from "node:assert/strict";
import { createOpenAICompatProvider } from "../../gateway/providers/openai_compat.ts";
import { BEARER, VENDOR_PRESETS } from "../../gateway/providers/presets.ts";
import type { Operation, Provider } from "../../gateway/providers/provider.ts";
import { PROVIDER_PRESET_NAMES, PROVIDER_PRESETS } from "../../schema/provider_presets.ts";
import { completion, startFakeUpstream } from "../helpers/fake_upstream.ts";
import { startStack, waitFor } from "../helpers/stack.ts";

const BODY = {
  model: "m",
  messages: [
    { role: "developer", content: "Answer briefly." },
    { role: "user", content: "Hello!" },
  ],
  max_completion_tokens: 64,
  stream: true,
  stream_options: { include_usage: true },
};

function provider(preset: string | null, baseUrl: string | null, fetcher = fetch): Provider {
  const config = { id: "p", name: "p", kind: "openai_compat" as const, baseUrl, preset };
  return createOpenAICompatProvider({ ...config, credential: "sk-up" }, { fetch: fetcher });
}

/** The body the upstream received for one streamed chat call through `preset`. */
async function sentBody(preset: string | null, body: Record<string, unknown> = BODY) {
  const fake = startFakeUpstream();
  fake.reply = () =>
    new Response("data: [DONE]\n\n", { headers: { "content-type": "text/event-stream" } });
  try {
    const reply = await provider(preset, fake.url).send({
      op: "chat",
      body,
      stream: true,
      signal: new AbortController().signal,
    });
    if (reply.stream) await new Response(reply.body).text();
    return fake.requests[0]!;
  } finally {
    await fake.close();
  }
}

Deno.test("kimi gets max_tokens, a system message and no stream_options, with a Bearer key", async () => {
  const sent = await sentBody("kimi");
  assert.equal(sent.body.max_tokens, 64);
  assert.equal("max_completion_tokens" in sent.body, false);
  assert.deepEqual(sent.body.messages, [
    { role: "system", content: "Answer briefly." },
    { role: "user", content: "Hello!" },
  ]);
  assert.equal("stream_options" in sent.body, false);
  assert.equal(sent.headers.get("authorization"), "Bearer sk-up");
});

Deno.test("deepseek gets the older names but keeps stream_options, which it documents", async () => {
  const sent = await sentBody("deepseek");
  assert.equal(sent.body.max_tokens, 64);
  assert.equal(sent.body.messages && (sent.body.messages as { role: string }[])[0]!.role, "system");
  assert.deepEqual(sent.body.stream_options, { include_usage: true });
});

Deno.test("an explicit max_tokens is kept when max_completion_tokens is renamed", async () => {
  const sent = await sentBody("glm", { ...BODY, max_tokens: 10 });
  assert.equal(sent.body.max_tokens, 10);
  assert.equal("max_completion_tokens" in sent.body, false);
});

Deno.test("openai and no preset send the caller's body as it is", async () => {
  for (const preset of ["openai", null]) {
    const sent = await sentBody(preset);
    assert.deepEqual(sent.body, BODY, `preset ${preset}`);
  }
});

Deno.test("request quirks never change the caller's body", async () => {
  const body = structuredClone(BODY);
  await sentBody("minimax", body);
  assert.deepEqual(body, BODY);
});

Deno.test("a preset's base URL is used unless the provider sets its own", async () => {
  const urls: string[] = [];
  const stub: typeof fetch = (input) => {
    urls.push(String(input));
    return Promise.resolve(Response.json(completion("m", "hi")));
  };
  const call = {
    op: "chat" as const,
    body: { model: "m" },
    stream: false,
    signal: new AbortController().signal,
  };
  await provider("kimi", null, stub).send(call);
  await provider("kimi", "http://127.0.0.1:9/v1/", stub).send(call);
  await provider("gemini", null, stub).send({ ...call, op: "embeddings" });
  assert.deepEqual(urls, [
    "https://api.moonshot.ai/v1/chat/completions",
    "http://127.0.0.1:9/v1/chat/completions",
    "https://generativelanguage.googleapis.com/v1beta/openai/embeddings",
  ]);
});

Deno.test("each preset serves only the operations it claims; no preset serves all", () => {
  const served = (preset: string | null) =>
    (["chat", "completions", "embeddings", "images", "responses"] as Operation[])
      .filter((op) => provider(preset, "http://x").supports(op));
  assert.deepEqual(served(null), ["chat", "completions", "embeddings", "images", "responses"]);
  assert.deepEqual(served("openai"), ["chat", "completions", "embeddings", "images", "responses"]);
  assert.deepEqual(served("deepseek"), ["chat", "completions"]);
  assert.deepEqual(served("kimi"), ["chat"]);
  assert.deepEqual(served("glm"), ["chat", "embeddings", "images"]);
  assert.deepEqual(served("qwen"), ["chat", "embeddings"]);
});

Deno.test("every shared preset name has a vendor literal with the shared base URL", () => {
  for (const name of PROVIDER_PRESET_NAMES) {
    const preset = VENDOR_PRESETS[name];
    assert.equal(preset.name, name);
    assert.equal(preset.baseUrl, PROVIDER_PRESETS[name].baseUrl);
    assert.deepEqual(preset.auth, BEARER);
    assert.ok(preset.operations.includes("chat"), `${name} serves chat`);
  }
});

Deno.test("openai streams and bodies pass through untouched; quirky vendors' are re-written", async () => {
  const raw =
    '{ "object": "chat.completion", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 0} }';
  const upstream = new ReadableStream<Uint8Array>({ start: (c) => c.close() });
  const stub = (body: BodyInit) => () => Promise.resolve(new Response(body));
  const signal = new AbortController().signal;
  const chat = { op: "chat" as const, body: { model: "m" }, signal };

  const json = await provider("openai", "http://x", stub(raw)).send({ ...chat, stream: false });
  assert.equal(!json.stream && json.text, raw, "the very bytes the upstream sent");
  const passed = await provider("openai", "http://x", stub(upstream)).send({
    ...chat,
    stream: true,
  });
  assert.equal(passed.stream && passed.body, upstream, "the upstream's own stream, not a copy");

  const glm = await provider("glm", "http://x", stub('{"choices":[]}')).send({
    ...chat,
    stream: false,
  });
  assert.equal(!glm.stream && glm.text, '{"choices":[],"object":"chat.completion"}');
  const kimi = await provider("kimi", "http://x", stub("data: [DONE]\n\n")).send({
    ...chat,
    stream: true,
  });
  assert.ok(kimi.stream);
  assert.equal(await new Response(kimi.body).text(), "data: [DONE]\n\n");
});

Deno.test("a re-written stream passes an upstream failure on and reads nothing after [DONE]", async () => {
  const chunk =
    '{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi"}}]}';
  const signal = new AbortController().signal;
  const call = { op: "chat" as const, body: { model: "m" }, stream: true, signal };
  const failing = new ReadableStream<Uint8Array>({
    pull: (c) => c.error(new Error("connection reset")),
  });
  const cut = await provider("stepfun", "http://x", () => Promise.resolve(new Response(failing)))
    .send(call);
  assert.ok(cut.stream);
  await assert.rejects(new Response(cut.body).text(), /connection reset/);

  const late = `data: ${chunk}\n\ndata: [DONE]\n\ndata: ${chunk}\n\n`;
  const done = await provider("stepfun", "http://x", () => Promise.resolve(new Response(late)))
    .send(call);
  assert.ok(done.stream);
  assert.equal(await new Response(done.body).text(), `data: ${chunk}\n\ndata: [DONE]\n\n`);
});

Deno.test("a Kimi stream through the gateway is metered from the usage in its choice", async () => {
  const folder = new URL("../fixtures/providers/kimi/", import.meta.url);
  const stack = await startStack();
  const fake = startFakeUpstream();
  fake.reply = async (body) =>
    new Response(await Deno.readFile(new URL(body.stream ? "chat.sse" : "chat.json", folder)));
  try {
    await stack.addModel({
      provider: "moonshot",
      preset: "kimi",
      baseUrl: fake.url,
      apiKey: "sk-kimi",
      model: "kimi-test",
      upstreamName: "moonshot-v1-8k",
    });
    const client = stack.openai((await stack.createKey()).secret);
    await waitFor(async () => (await client.models.list()).data.some((m) => m.id === "kimi-test"));
    const messages = [{ role: "user" as const, content: "Hello!" }];

    // A client that did not ask for usage gets none, yet the request is metered.
    let text = "";
    const plain = await client.chat.completions.create({
      model: "kimi-test",
      messages,
      stream: true,
    });
    for await (const chunk of plain) {
      assert.equal(chunk.usage ?? null, null);
      text += chunk.choices[0]?.delta.content ?? "";
    }
    assert.equal(text, "Hello! How can I help you today?");
    assert.equal(
      "stream_options" in fake.requests[0]!.body,
      false,
      "Kimi is not sent stream_options",
    );

    // One that asked gets the usage-only chunk last.
    const asked = await client.chat.completions.create({
      model: "kimi-test",
      messages,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const chunk of asked) chunks.push(chunk);
    assert.deepEqual(chunks.at(-1)!.choices, []);
    assert.equal(chunks.at(-1)!.usage?.prompt_tokens, 19);

    await stack.gateway.usage.flush();
    const rows = await stack.database.db.db.selectFrom("usage_events").selectAll().execute();
    assert.equal(rows.length, 2);
    for (const row of rows) {
      assert.deepEqual([row.prompt_tokens, row.completion_tokens], [19, 10]);
      assert.equal(row.estimated, false);
      assert.equal(row.error_code, null);
    }
  } finally {
    await fake.close();
    await stack.close();
  }
});
