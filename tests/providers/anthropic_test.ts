/**
 * The `anthropic` adapter against a fake Messages API on 127.0.0.1 serving
 * the recorded fixtures (tests/fixtures/providers/anthropic/), then through
 * the whole stack with the official openai client.
 */
import assert from "node:assert/strict";
import { createParser } from "eventsource-parser";
import OpenAI from "openai";
import { GatewayError } from "../../gateway/errors.ts";
import { createAnthropicProvider } from "../../gateway/providers/anthropic/mod.ts";
import { JSON_OBJECT_INSTRUCTION } from "../../gateway/providers/anthropic/request.ts";
import { RESPONSE_TOOL } from "../../gateway/providers/anthropic/tools.ts";
import type { Provider, UpstreamReply } from "../../gateway/providers/provider.ts";
import { type Stack, startStack, waitFor } from "../helpers/stack.ts";

const FIXTURES = new URL("../fixtures/providers/anthropic/", import.meta.url);
const fixture = (name: string) => Deno.readTextFileSync(new URL(name, FIXTURES));
const expected = JSON.parse(fixture("expect.json"));
const CREDENTIAL = "sk-ant-test-credential";

interface Fake {
  url: string;
  requests: { path: string; headers: Headers; body: Record<string, unknown> }[];
  reply: (body: Record<string, unknown>) => Response;
  close(): Promise<void>;
}

/** A fake Messages API: tools.* when the request offers tools, chat.* otherwise. */
function startFake(): Fake {
  const fake: Fake = {
    url: "",
    requests: [],
    reply: (body) => {
      const name = body.tools ? "tools" : "chat";
      return body.stream
        ? sseResponse(fixture(`${name}.sse`))
        : new Response(fixture(`${name}.json`), {
          headers: { "content-type": "application/json" },
        });
    },
    close: () => server.shutdown(),
  };
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, async (req) => {
    const body = await req.json();
    fake.requests.push({ path: new URL(req.url).pathname, headers: req.headers, body });
    return fake.reply(body);
  });
  fake.url = `http://127.0.0.1:${(server.addr as Deno.NetAddr).port}/v1`;
  return fake;
}

/** An SSE body sent in 16-byte pieces, so that events straddle reads. */
function sseResponse(text: string): Response {
  const bytes = new TextEncoder().encode(text);
  let at = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (at >= bytes.length) return controller.close();
      controller.enqueue(bytes.slice(at, at += 16));
    },
  });
  return new Response(body, { headers: { "content-type": "text/event-stream" } });
}

function adapter(fake: Fake): Provider {
  return createAnthropicProvider(
    {
      id: "p1",
      name: "claude",
      kind: "anthropic",
      baseUrl: fake.url,
      credential: CREDENTIAL,
      preset: null,
    },
    { fetch },
  );
}

async function withFake(test: (fake: Fake, provider: Provider) => Promise<void>) {
  const fake = startFake();
  try {
    await test(fake, adapter(fake));
  } finally {
    await fake.close();
  }
}

function send(provider: Provider, body: Record<string, unknown>, stream = false) {
  const signal = new AbortController().signal;
  return provider.send({
    op: "chat",
    body: { model: "claude-sonnet-4-5", ...body },
    stream,
    signal,
  });
}

const hi = [{ role: "user", content: "hi" }];
const weatherTool = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Current weather",
    parameters: { type: "object", properties: { location: { type: "string" } } },
  },
};

/** The data of every event of an OpenAI SSE body. */
async function sseEvents(body: ReadableStream<Uint8Array>, into: string[] = []): Promise<string[]> {
  const parser = createParser({ onEvent: (event) => into.push(event.data) });
  const decoder = new TextDecoder();
  for await (const chunk of body) parser.feed(decoder.decode(chunk, { stream: true }));
  return into;
}

/** What a client rebuilds from chat.completion.chunk events. */
function reassemble(events: string[]) {
  assert.equal(events.at(-1), "[DONE]");
  const chunks = events.slice(0, -1).map((data) => JSON.parse(data));
  let content = "";
  const tools: { id?: string; type?: string; name?: string; arguments: string }[] = [];
  const finishes: string[] = [];
  for (const chunk of chunks) {
    assert.equal(chunk.object, "chat.completion.chunk");
    const choice = chunk.choices[0];
    if (!choice) continue;
    content += choice.delta.content ?? "";
    for (const call of choice.delta.tool_calls ?? []) {
      const tool = tools[call.index] ??= { arguments: "" };
      tool.id ??= call.id;
      tool.type ??= call.type;
      tool.name ??= call.function?.name;
      tool.arguments += call.function?.arguments ?? "";
    }
    if (choice.finish_reason) finishes.push(choice.finish_reason);
  }
  const usageChunks = chunks.filter((c) => c.usage);
  return { chunks, content, tools, finishes, usageChunks };
}

function stream(reply: UpstreamReply): ReadableStream<Uint8Array> {
  assert.ok(reply.stream, "expected a streaming reply");
  return reply.body;
}

function json(reply: UpstreamReply): Record<string, unknown> {
  assert.ok(!reply.stream, "expected a JSON reply");
  assert.deepEqual(JSON.parse(reply.text), reply.json);
  return reply.json;
}

function isGatewayError(expected: Partial<GatewayError>) {
  return (error: unknown) => {
    assert.ok(error instanceof GatewayError, `expected a GatewayError, got ${error}`);
    for (const [key, value] of Object.entries(expected)) {
      assert.deepEqual(error[key as keyof GatewayError], value, key);
    }
    return true;
  };
}

Deno.test("the anthropic adapter serves chat only", () => {
  const provider = createAnthropicProvider(
    { id: "p", name: "claude", kind: "anthropic", baseUrl: null, credential: null, preset: null },
    { fetch },
  );
  assert.equal(provider.kind, "anthropic");
  assert.equal(provider.supports("chat"), true);
  for (const op of ["completions", "embeddings", "images", "responses"] as const) {
    assert.equal(provider.supports(op), false, op);
  }
});

Deno.test("a conversation is sent to /messages as a Messages API body with the Anthropic headers", async () => {
  await withFake(async (fake, provider) => {
    const reply = await send(provider, {
      messages: [
        { role: "system", content: "You are terse." },
        { role: "developer", content: [{ type: "text", text: "Use metric units." }] },
        {
          role: "user",
          content: [
            { type: "text", text: "Weather in Paris and Rome?" },
            { type: "image_url", image_url: { url: "data:image/png;base64,iVBORw0KGgo=" } },
          ],
        },
        {
          role: "assistant",
          content: null,
          tool_calls: [
            {
              id: "toolu_1",
              type: "function",
              function: { name: "get_weather", arguments: '{"location":"Paris"}' },
            },
            {
              id: "toolu_2",
              type: "function",
              function: { name: "get_weather", arguments: '{"location":"Rome"}' },
            },
          ],
        },
        { role: "tool", tool_call_id: "toolu_1", content: "18°C" },
        { role: "tool", tool_call_id: "toolu_2", content: "24°C" },
        { role: "user", content: "And a picture?" },
        {
          role: "user",
          content: [{ type: "image_url", image_url: { url: "https://example.com/a.png" } }],
        },
      ],
      tools: [weatherTool],
      tool_choice: "auto",
      parallel_tool_calls: false,
      stop: "END",
      temperature: 0.5,
      top_p: 0.9,
      max_tokens: 100,
      max_completion_tokens: 300,
      user: "user-42",
      seed: 7,
      presence_penalty: 0.5,
      frequency_penalty: 0.5,
      stream_options: { include_usage: true },
    }, true);
    await sseEvents(stream(reply));

    const [sent] = fake.requests;
    assert.equal(sent!.path, "/v1/messages");
    assert.equal(sent!.headers.get("x-api-key"), CREDENTIAL);
    assert.equal(sent!.headers.get("anthropic-version"), "2023-06-01");
    assert.equal(sent!.headers.get("content-type"), "application/json");
    assert.equal(sent!.headers.get("authorization"), null);
    assert.deepEqual(sent!.body, {
      model: "claude-sonnet-4-5",
      max_tokens: 300,
      system: "You are terse.\n\nUse metric units.",
      messages: [
        {
          role: "user",
          content: [
            { type: "text", text: "Weather in Paris and Rome?" },
            {
              type: "image",
              source: { type: "base64", media_type: "image/png", data: "iVBORw0KGgo=" },
            },
          ],
        },
        {
          role: "assistant",
          content: [
            { type: "tool_use", id: "toolu_1", name: "get_weather", input: { location: "Paris" } },
            { type: "tool_use", id: "toolu_2", name: "get_weather", input: { location: "Rome" } },
          ],
        },
        {
          role: "user",
          content: [
            { type: "tool_result", tool_use_id: "toolu_1", content: "18°C" },
            { type: "tool_result", tool_use_id: "toolu_2", content: "24°C" },
            { type: "text", text: "And a picture?" },
            { type: "image", source: { type: "url", url: "https://example.com/a.png" } },
          ],
        },
      ],
      tools: [{
        name: "get_weather",
        description: "Current weather",
        input_schema: { type: "object", properties: { location: { type: "string" } } },
      }],
      tool_choice: { type: "auto", disable_parallel_tool_use: true },
      stop_sequences: ["END"],
      temperature: 0.5,
      top_p: 0.9,
      metadata: { user_id: "user-42" },
      stream: true,
    });
  });
});

Deno.test("tool_choice, max_tokens and response_format translate to what Anthropic accepts", async () => {
  await withFake(async (fake, provider) => {
    await send(provider, { messages: hi, tools: [weatherTool], tool_choice: "required" });
    await send(provider, {
      messages: hi,
      tools: [weatherTool],
      tool_choice: { type: "function", function: { name: "get_weather" } },
      stop: ["a", "b"],
    });
    await send(provider, { messages: hi, tools: [weatherTool], tool_choice: "none" });
    await send(provider, {
      messages: [{ role: "system", content: "Be brief." }, ...hi],
      response_format: { type: "json_object" },
    });
    const [required, named, none, jsonObject] = fake.requests.map((r) => r.body);
    assert.deepEqual(required!.tool_choice, { type: "any" });
    assert.equal(required!.max_tokens, 4096);
    assert.deepEqual(named!.tool_choice, { type: "tool", name: "get_weather" });
    assert.deepEqual(named!.stop_sequences, ["a", "b"]);
    assert.deepEqual(none!.tool_choice, { type: "none" });
    assert.equal(jsonObject!.system, `Be brief.\n\n${JSON_OBJECT_INSTRUCTION}`);
    assert.equal(jsonObject!.stream, undefined);
  });
});

Deno.test("a json_schema response format is a forced tool whose input comes back as the content", async () => {
  await withFake(async (fake, provider) => {
    const schema = { type: "object", properties: { city: { type: "string" } }, required: ["city"] };
    const answer = {
      id: "msg_1",
      type: "message",
      role: "assistant",
      model: "claude-sonnet-4-5-20250929",
      content: [{ type: "tool_use", id: "toolu_9", name: RESPONSE_TOOL, input: { city: "Paris" } }],
      stop_reason: "tool_use",
      usage: { input_tokens: 30, output_tokens: 8 },
    };
    fake.reply = () => Response.json(answer);
    const completion = json(
      await send(provider, {
        messages: hi,
        response_format: {
          type: "json_schema",
          json_schema: { name: "place", schema, strict: true },
        },
      }),
    );
    const sent = fake.requests[0]!.body;
    assert.deepEqual(sent.tools, [{
      name: RESPONSE_TOOL,
      description: "Give the final answer, as this tool's input.",
      input_schema: schema,
    }]);
    assert.deepEqual(sent.tool_choice, { type: "tool", name: RESPONSE_TOOL });
    const choice = (completion.choices as Record<string, unknown>[])[0]!;
    assert.deepEqual(choice.message, {
      role: "assistant",
      content: '{"city":"Paris"}',
      refusal: null,
    });
    assert.equal(choice.finish_reason, "stop");

    // With the caller's own tools, the model must call one of them or answer.
    await send(provider, {
      messages: hi,
      tools: [weatherTool],
      response_format: { type: "json_schema", json_schema: { name: "place", schema } },
    });
    assert.deepEqual(fake.requests[1]!.body.tool_choice, { type: "any" });
    assert.deepEqual((fake.requests[1]!.body.tools as { name: string }[]).map((t) => t.name), [
      "get_weather",
      RESPONSE_TOOL,
    ]);
  });
});

Deno.test("a Messages API reply becomes a chat.completion", async () => {
  await withFake(async (_fake, provider) => {
    const before = Math.floor(Date.now() / 1000);
    const completion = json(await send(provider, { messages: hi }));
    assert.ok((completion.created as number) >= before);
    assert.deepEqual({ ...completion, created: 0 }, {
      id: "msg_01XFDUDYJgAACzvnptvVoYEL",
      object: "chat.completion",
      created: 0,
      model: "claude-sonnet-4-5-20250929",
      choices: [{
        index: 0,
        message: { role: "assistant", content: expected.text, refusal: null },
        logprobs: null,
        finish_reason: "stop",
      }],
      usage: { ...expected.usage, total_tokens: 22, prompt_tokens_details: { cached_tokens: 0 } },
    });

    const withTool = json(await send(provider, { messages: hi, tools: [weatherTool] }));
    const choice = (withTool.choices as Record<string, unknown>[])[0]!;
    assert.deepEqual(choice.message, {
      role: "assistant",
      content: "I'll check the weather in Paris.",
      refusal: null,
      tool_calls: [{
        id: "toolu_01A09q90qw90lq917835lq9",
        type: "function",
        function: { name: expected.tool.name, arguments: JSON.stringify(expected.tool.arguments) },
      }],
    });
    assert.equal(choice.finish_reason, "tool_calls");
    assert.deepEqual(withTool.usage, {
      ...expected.toolUsage,
      total_tokens: 60,
      prompt_tokens_details: { cached_tokens: 0 },
    });
  });
});

Deno.test("cache reads and writes count as prompt tokens; stop reasons map to finish reasons", async () => {
  await withFake(async (fake, provider) => {
    const cases: [string, string][] = [
      ["end_turn", "stop"],
      ["stop_sequence", "stop"],
      ["max_tokens", "length"],
      ["refusal", "content_filter"],
    ];
    for (const [stopReason, finish] of cases) {
      fake.reply = () =>
        Response.json({
          id: "msg_2",
          model: "claude-x",
          content: [{ type: "thinking", thinking: "hmm", signature: "s" }, {
            type: "text",
            text: "ok",
          }],
          stop_reason: stopReason,
          usage: {
            input_tokens: 5,
            cache_read_input_tokens: 100,
            cache_creation_input_tokens: 20,
            output_tokens: 3,
          },
        });
      const completion = json(await send(provider, { messages: hi }));
      const choice = (completion.choices as Record<string, unknown>[])[0]!;
      assert.equal(choice.finish_reason, finish, stopReason);
      assert.equal((choice.message as { content: string }).content, "ok");
      assert.deepEqual(completion.usage, {
        prompt_tokens: 125,
        completion_tokens: 3,
        total_tokens: 128,
        prompt_tokens_details: { cached_tokens: 100 },
      });
    }
  });
});

Deno.test("a Messages API stream becomes chat.completion.chunk events, usage, then [DONE]", async () => {
  await withFake(async (_fake, provider) => {
    const events = await sseEvents(
      stream(await send(provider, { messages: hi, stream_options: { include_usage: true } }, true)),
    );
    const { chunks, content, tools, finishes, usageChunks } = reassemble(events);
    assert.equal(content, expected.text);
    assert.deepEqual(chunks[0]!.choices[0].delta, { role: "assistant", content: "" });
    assert.ok(chunks.every((c) => c.id === "msg_01XFDUDYJgAACzvnptvVoYEL"));
    assert.ok(chunks.every((c) => c.model === "claude-sonnet-4-5-20250929"));
    assert.deepEqual(tools, []);
    assert.deepEqual(finishes, ["stop"]);
    assert.equal(usageChunks.length, 1);
    assert.equal(usageChunks[0], chunks.at(-1), "the usage chunk is the last before [DONE]");
    assert.deepEqual(usageChunks[0].choices, []);
    assert.deepEqual(usageChunks[0].usage, {
      ...expected.usage,
      total_tokens: 22,
      prompt_tokens_details: { cached_tokens: 0 },
    });

    const withoutUsage = reassemble(
      await sseEvents(stream(await send(provider, { messages: hi }, true))),
    );
    assert.equal(withoutUsage.content, expected.text);
    assert.deepEqual(withoutUsage.usageChunks, []);
  });
});

Deno.test("a streamed tool call arrives as tool_calls deltas whose arguments reassemble", async () => {
  await withFake(async (_fake, provider) => {
    const events = await sseEvents(stream(
      await send(provider, {
        messages: hi,
        tools: [weatherTool],
        stream_options: { include_usage: true },
      }, true),
    ));
    const { chunks, content, tools, finishes, usageChunks } = reassemble(events);
    assert.equal(content, "I'll check the weather in Paris.");
    assert.equal(tools.length, 1);
    assert.equal(tools[0]!.id, "toolu_01A09q90qw90lq917835lq9");
    assert.equal(tools[0]!.type, "function");
    assert.equal(tools[0]!.name, expected.tool.name);
    assert.deepEqual(JSON.parse(tools[0]!.arguments), expected.tool.arguments);
    const start = chunks.find((c) => c.choices[0]?.delta.tool_calls?.[0]?.id);
    assert.deepEqual(start.choices[0].delta.tool_calls[0].function, {
      name: "get_weather",
      arguments: "",
    });
    assert.deepEqual(finishes, ["tool_calls"]);
    assert.equal(usageChunks[0].usage.prompt_tokens, expected.toolUsage.prompt_tokens);
    assert.equal(usageChunks[0].usage.completion_tokens, expected.toolUsage.completion_tokens);
  });
});

Deno.test("fields Anthropic cannot honour are refused with a 400 naming them, before any upstream call", async () => {
  await withFake(async (fake, provider) => {
    const cases: [Record<string, unknown>, string][] = [
      [{ n: 2 }, "n"],
      [{ logprobs: true }, "logprobs"],
      [{ top_logprobs: 3 }, "top_logprobs"],
      [{ modalities: ["text", "audio"] }, "modalities"],
      [{ functions: [{ name: "f" }] }, "functions"],
      [{ tools: [{ type: "custom", custom: { name: "x" } }] }, "tools[0]"],
      [{
        messages: [{
          role: "assistant",
          tool_calls: [{ id: "t", type: "function", function: { name: "f", arguments: "{oops" } }],
        }],
      }, "messages[0].tool_calls[0].function.arguments"],
    ];
    for (const [fields, param] of cases) {
      await assert.rejects(
        send(provider, { messages: hi, ...fields }),
        isGatewayError({ status: 400, code: "invalid_request_error", param, retryable: false }),
      );
    }
    await assert.rejects(
      send(provider, { messages: hi, n: 2 }),
      /Cannot return n = 2 choices/,
    );
    assert.equal(fake.requests.length, 0);
    // n = 1 and logprobs: false change nothing, and are simply not sent.
    await send(provider, { messages: hi, n: 1, logprobs: false });
    assert.equal(fake.requests[0]!.body.n, undefined);
  });
});

Deno.test("Anthropic HTTP errors map to statuses the router can act on", async () => {
  await withFake(async (fake, provider) => {
    const error = (type: string, message: string) => ({ type: "error", error: { type, message } });
    const cases: [Response, Partial<GatewayError>][] = [
      [
        Response.json(
          error("rate_limit_error", "Number of requests has exceeded your rate limit"),
          {
            status: 429,
            headers: { "retry-after": "7" },
          },
        ),
        { status: 429, code: "upstream_rate_limited", retryable: true, retryAfter: 7 },
      ],
      [
        Response.json(error("overloaded_error", "Overloaded"), { status: 529 }),
        { status: 503, code: "upstream_overloaded", retryable: true },
      ],
      [
        Response.json(error("invalid_request_error", "max_tokens: too big"), { status: 400 }),
        { status: 400, code: "invalid_request_error", retryable: false },
      ],
      [
        Response.json(error("authentication_error", "invalid x-api-key"), { status: 401 }),
        { status: 502, code: "upstream_error", retryable: false },
      ],
    ];
    for (const [reply, expectedError] of cases) {
      fake.reply = () => reply;
      await assert.rejects(send(provider, { messages: hi }), isGatewayError(expectedError));
    }
    fake.reply = () => Response.json(error("overloaded_error", "Overloaded"), { status: 529 });
    await assert.rejects(send(provider, { messages: hi }), /Overloaded/);
  });
});

Deno.test("an error event mid-stream errors the output stream after what came before", async () => {
  await withFake(async (fake, provider) => {
    const chat = fixture("chat.sse");
    const cut = chat.indexOf("event: content_block_delta", chat.indexOf('"! How can I"'));
    fake.reply = () =>
      sseResponse(
        chat.slice(0, cut) +
          'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n' +
          chat.slice(cut),
      );
    const events: string[] = [];
    await assert.rejects(
      sseEvents(stream(await send(provider, { messages: hi }, true)), events),
      isGatewayError({ status: 503, code: "upstream_overloaded", retryable: true }),
    );
    const text = events.map((data) => JSON.parse(data).choices[0]?.delta.content ?? "").join("");
    assert.equal(text, "Hello! How can I");
    assert.ok(!events.includes("[DONE]"));
  });
});

Deno.test("aborting the call aborts the upstream request mid-stream", async () => {
  await withFake(async (fake, provider) => {
    let cancelled = false;
    const start = fixture("chat.sse").split("event: ping")[0]!;
    fake.reply = () => {
      let sent = false;
      return new Response(
        new ReadableStream<Uint8Array>({
          async pull(controller) {
            if (!sent) {
              sent = true;
              return controller.enqueue(new TextEncoder().encode(start));
            }
            await new Promise((resolve) => setTimeout(resolve, 20));
            controller.enqueue(new TextEncoder().encode('event: ping\ndata: {"type":"ping"}\n\n'));
          },
          cancel() {
            cancelled = true;
          },
        }),
        { headers: { "content-type": "text/event-stream" } },
      );
    };
    const controller = new AbortController();
    const reply = await provider.send({
      op: "chat",
      body: { model: "claude-sonnet-4-5", messages: hi },
      stream: true,
      signal: controller.signal,
    });
    const reader = stream(reply).getReader();
    const first = await reader.read();
    assert.match(new TextDecoder().decode(first.value), /"role":"assistant"/);
    controller.abort();
    await assert.rejects(reader.read());
    await waitFor(() => cancelled, 2_000);
  });
});

// End to end: the official openai client, the gateway, the adapter, the fake.

const MODEL = "claude-fake";

async function withStack(test: (stack: Stack, fake: Fake, client: OpenAI) => Promise<void>) {
  const stack = await startStack();
  const fake = startFake();
  try {
    await stack.addModel({
      provider: "claude",
      kind: "anthropic",
      baseUrl: fake.url,
      apiKey: CREDENTIAL,
      model: MODEL,
      upstreamName: "claude-sonnet-4-5",
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

Deno.test("the openai SDK talks to an Anthropic provider through the gateway, streaming and not", async () => {
  await withStack(async (stack, fake, client) => {
    const completion = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: "system", content: "Be kind." }, { role: "user", content: "hi" }],
    });
    assert.equal(completion.choices[0]!.message.content, expected.text);
    assert.equal(completion.choices[0]!.finish_reason, "stop");
    assert.equal(completion.usage?.prompt_tokens, 12);
    const sent = fake.requests[0]!;
    assert.equal(sent.path, "/v1/messages");
    assert.equal(sent.headers.get("x-api-key"), CREDENTIAL);
    assert.equal(sent.body.model, "claude-sonnet-4-5");
    assert.equal(sent.body.system, "Be kind.");

    const toolCall = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: "Weather in Paris?" }],
      tools: [{ type: "function", function: weatherTool.function }],
    });
    const call = toolCall.choices[0]!.message.tool_calls![0]!;
    assert.equal(call.type, "function");
    assert.ok(call.type === "function");
    assert.equal(call.function.name, expected.tool.name);
    assert.deepEqual(JSON.parse(call.function.arguments), expected.tool.arguments);
    assert.equal(toolCall.choices[0]!.finish_reason, "tool_calls");

    const chatStream = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: "hi" }],
      stream: true,
    });
    let text = "";
    for await (const chunk of chatStream) text += chunk.choices[0]?.delta?.content ?? "";
    assert.equal(text, expected.text);
    assert.equal(fake.requests[2]!.body.stream, true);
    assert.equal(fake.requests[2]!.body.stream_options, undefined);

    const toolStream = client.chat.completions.stream({
      model: MODEL,
      messages: [{ role: "user", content: "Weather in Paris?" }],
      tools: [{ type: "function", function: weatherTool.function }],
      stream_options: { include_usage: true },
    });
    const final = await toolStream.finalChatCompletion();
    const streamedCall = final.choices[0]!.message.tool_calls![0]!;
    assert.ok(streamedCall.type === "function");
    assert.equal(streamedCall.id, "toolu_01A09q90qw90lq917835lq9");
    assert.equal(streamedCall.function.name, expected.tool.name);
    assert.deepEqual(JSON.parse(streamedCall.function.arguments), expected.tool.arguments);
    assert.equal(final.choices[0]!.finish_reason, "tool_calls");
    assert.equal(final.usage?.completion_tokens, expected.toolUsage.completion_tokens);

    const rows = await waitFor(async () => (await stack.usageRows()).length === 4)
      .then(() => stack.usageRows());
    const tokens = rows.map((r) => [r.stream, r.prompt_tokens, r.completion_tokens, r.estimated])
      .sort((a, b) => Number(a[0]) - Number(b[0]) || Number(a[1]) - Number(b[1]));
    assert.deepEqual(tokens, [
      [false, 12, 10, false],
      [false, 40, 20, false],
      [true, 12, 10, false],
      [true, 40, 20, false],
    ]);
    assert.ok(rows.every((r) => r.provider_name === "claude" && r.error_code === null));
    const chat = rows.find((r) => !r.stream && r.prompt_tokens === 12);
    assert.equal(chat!.cost, 12n * 100n + 10n * 200n);
  });
});

Deno.test("an Anthropic rate limit reaches the SDK as a 429 with Retry-After", async () => {
  await withStack(async (_stack, fake, client) => {
    fake.reply = () =>
      Response.json({ type: "error", error: { type: "rate_limit_error", message: "slow down" } }, {
        status: 429,
        headers: { "retry-after": "30" },
      });
    const error = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: "hi" }],
    })
      .then(() => null, (e) => e);
    assert.ok(error instanceof OpenAI.APIError);
    assert.equal(error.status, 429);
    assert.equal(error.code, "upstream_rate_limited");
    assert.equal(error.headers?.get("retry-after"), "30");
    assert.ok(!JSON.stringify(error.error).includes(CREDENTIAL));
  });
});
