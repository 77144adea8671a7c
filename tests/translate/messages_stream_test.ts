/**
 * toAnthropicStream: OpenAI chat chunk SSE as Anthropic Messages SSE. Each row
 * feeds chunks (in 7-byte reads, so that events straddle reads) and compares
 * the events, written compactly; then the official Anthropic SDK (1.12.0)
 * reads the translated streams through its MessageStream accumulator.
 */
import assert from "node:assert/strict";
import Anthropic from "@anthropic-ai/sdk";
import { createParser } from "eventsource-parser";
import { toAnthropicStream } from "../../gateway/translate/messages_stream.ts";

type Json = Record<string, unknown>;

const encoder = new TextEncoder();
const USAGE = { prompt_tokens: 82, completion_tokens: 17, total_tokens: 99 };
const USAGE_LINE = '{"input_tokens":82,"output_tokens":17,"cache_read_input_tokens":0,' +
  '"cache_creation_input_tokens":0}';

/** A chat.completion.chunk with one choice. */
function chunk(delta: Json, finish: string | null = null, usage: unknown = null): Json {
  return {
    id: "chatcmpl-1",
    object: "chat.completion.chunk",
    created: 1741570283,
    model: "gpt-4.1",
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    usage,
  };
}
const usageChunk = (usage: Json = USAGE): Json => ({ ...chunk({}), choices: [], usage });
const text = (content: string) => chunk({ content });
const toolStart = (index: number, id: string, name: string) =>
  chunk({ tool_calls: [{ index, id, type: "function", function: { name, arguments: "" } }] });
const args = (index: number, fragment: string) =>
  chunk({ tool_calls: [{ index, function: { arguments: fragment } }] });
const finish = (reason: string) => chunk({}, reason);
const DONE = "[DONE]";

/** The SSE body of these events; a string is sent as the data as it is. */
function sse(events: (Json | string)[]): string {
  return events.map((e) => `data: ${typeof e === "string" ? e : JSON.stringify(e)}\n\n`).join("");
}

/** An upstream body sent in small reads; `fail` errors the reader after the last one. */
function upstream(body: string, options: { fail?: boolean; onCancel?: () => void } = {}) {
  const bytes = encoder.encode(body);
  let at = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (at >= bytes.length) {
        return options.fail ? controller.error(new Error("connection reset")) : controller.close();
      }
      controller.enqueue(bytes.slice(at, at += 7));
    },
    cancel() {
      options.onCancel?.();
    },
  });
}

function translate(body: string, options: { fail?: boolean } = {}) {
  return toAnthropicStream(upstream(body, options), {
    model: "claude-sonnet-4-5",
    id: "msg_1",
    promptTokens: 80,
  });
}

/** The named events of an Anthropic SSE body; an unnamed one fails the test. */
function parseEvents(body: string): { event: string; data: Json }[] {
  const events: { event: string; data: Json }[] = [];
  const parser = createParser({
    onEvent(message) {
      assert.ok(message.event, `unnamed event: ${message.data}`);
      const data = JSON.parse(message.data);
      assert.equal(data.type, message.event, "the event name is the data's type");
      events.push({ event: message.event, data });
    },
  });
  parser.feed(body);
  return events;
}

/** One line per event, e.g. `start 1 tool_use call_1 get_weather` or `json 1 {"a"`. */
function compact({ event, data }: { event: string; data: Json }): string {
  const block = data.content_block as Json | undefined;
  const delta = data.delta as Json | undefined;
  switch (event) {
    case "content_block_start":
      return block?.type === "tool_use"
        ? `start ${data.index} tool_use ${block.id} ${block.name}`
        : `start ${data.index} ${block?.type}`;
    case "content_block_delta":
      return delta?.type === "text_delta"
        ? `text ${data.index} ${delta.text}`
        : `json ${data.index} ${delta?.partial_json}`;
    case "content_block_stop":
      return `stop ${data.index}`;
    case "message_delta":
      return `message_delta ${delta?.stop_reason} ${JSON.stringify(data.usage)}`;
    case "error":
      return `error ${(data.error as Json).type}`;
    default:
      return event;
  }
}

const OPENING = ["message_start", "ping"];
const ENDING = [`message_delta end_turn ${USAGE_LINE}`, "message_stop"];

interface Row {
  name: string;
  upstream: (Json | string)[];
  expected: string[];
}

const rows: Row[] = [
  {
    name: "text stream, usage chunk after the finish",
    upstream: [
      chunk({ role: "assistant", content: "" }),
      text("Hel"),
      text("lo!"),
      finish("stop"),
      usageChunk(),
      DONE,
    ],
    expected: [...OPENING, "start 0 text", "text 0 Hel", "text 0 lo!", "stop 0", ...ENDING],
  },
  {
    name: "text then a tool call",
    upstream: [
      text("Let me check."),
      toolStart(0, "call_1", "get_weather"),
      args(0, '{"location"'),
      args(0, ':"Paris"}'),
      finish("tool_calls"),
      usageChunk(),
      DONE,
    ],
    expected: [
      ...OPENING,
      "start 0 text",
      "text 0 Let me check.",
      "stop 0",
      "start 1 tool_use call_1 get_weather",
      'json 1 {"location"',
      'json 1 :"Paris"}',
      "stop 1",
      `message_delta tool_use ${USAGE_LINE}`,
      "message_stop",
    ],
  },
  {
    name: "parallel tool calls one after the other stream live",
    upstream: [
      toolStart(0, "call_1", "get_weather"),
      args(0, '{"location":"Paris"}'),
      toolStart(1, "call_2", "get_weather"),
      args(1, '{"location":"Rome"}'),
      finish("tool_calls"),
      usageChunk(),
      DONE,
    ],
    expected: [
      ...OPENING,
      "start 0 tool_use call_1 get_weather",
      'json 0 {"location":"Paris"}',
      "stop 0",
      "start 1 tool_use call_2 get_weather",
      'json 1 {"location":"Rome"}',
      "stop 1",
      `message_delta tool_use ${USAGE_LINE}`,
      "message_stop",
    ],
  },
  {
    name: "interleaved tool calls: the first streams, the other is sent whole after it",
    upstream: [
      toolStart(0, "call_1", "get_weather"),
      toolStart(1, "call_2", "get_time"),
      args(0, '{"location":'),
      args(1, '{"zone":'),
      args(0, '"Paris"}'),
      args(1, '"CET"}'),
      finish("tool_calls"),
      usageChunk(),
      DONE,
    ],
    expected: [
      ...OPENING,
      "start 0 tool_use call_1 get_weather",
      'json 0 {"location":',
      'json 0 "Paris"}',
      "stop 0",
      "start 1 tool_use call_2 get_time",
      'json 1 {"zone":"CET"}',
      "stop 1",
      `message_delta tool_use ${USAGE_LINE}`,
      "message_stop",
    ],
  },
  {
    name: "a whole tool call in one delta, ended with stop (Gemini), is tool_use",
    upstream: [
      chunk({
        tool_calls: [{
          index: 0,
          id: "call_1",
          type: "function",
          function: { name: "get_weather", arguments: '{"location":"Paris"}' },
        }],
      }),
      finish("stop"),
      usageChunk(),
      DONE,
    ],
    expected: [
      ...OPENING,
      "start 0 tool_use call_1 get_weather",
      'json 0 {"location":"Paris"}',
      "stop 0",
      `message_delta tool_use ${USAGE_LINE}`,
      "message_stop",
    ],
  },
  {
    name: "usage on the finish chunk (DeepSeek), with cache hits",
    upstream: [
      text("Hi"),
      chunk({}, "stop", { ...USAGE, prompt_cache_hit_tokens: 64, prompt_cache_miss_tokens: 18 }),
      DONE,
    ],
    expected: [
      ...OPENING,
      "start 0 text",
      "text 0 Hi",
      "stop 0",
      'message_delta end_turn {"input_tokens":18,"output_tokens":17,"cache_read_input_tokens":64,' +
      '"cache_creation_input_tokens":0}',
      "message_stop",
    ],
  },
  {
    name: "usage with OpenAI cached tokens",
    upstream: [
      text("Hi"),
      finish("length"),
      usageChunk({ ...USAGE, prompt_tokens_details: { cached_tokens: 80 } }),
      DONE,
    ],
    expected: [
      ...OPENING,
      "start 0 text",
      "text 0 Hi",
      "stop 0",
      'message_delta max_tokens {"input_tokens":2,"output_tokens":17,"cache_read_input_tokens":80,' +
      '"cache_creation_input_tokens":0}',
      "message_stop",
    ],
  },
  {
    name: "running usage before the finish waits for the final count",
    upstream: [
      chunk({ content: "Hi" }, null, { ...USAGE, completion_tokens: 1 }),
      finish("stop"),
      usageChunk(),
      DONE,
    ],
    expected: [...OPENING, "start 0 text", "text 0 Hi", "stop 0", ...ENDING],
  },
  {
    name: "no usage at all: the end keeps the estimate and counts no output",
    upstream: [text("Hi"), finish("content_filter"), DONE],
    expected: [
      ...OPENING,
      "start 0 text",
      "text 0 Hi",
      "stop 0",
      'message_delta refusal {"output_tokens":0}',
      "message_stop",
    ],
  },
  {
    name: "[DONE] without a finish reason ends the turn",
    upstream: [text("Hi"), usageChunk(), DONE],
    expected: [...OPENING, "start 0 text", "text 0 Hi", "stop 0", ...ENDING],
  },
  {
    name: "finish and usage but no [DONE] (MiniMax) is complete",
    upstream: [text("Hi"), finish("stop"), usageChunk()],
    expected: [...OPENING, "start 0 text", "text 0 Hi", "stop 0", ...ENDING],
  },
  {
    name: "a stream cut before the finish ends with an error event",
    upstream: [text("Hel")],
    expected: [...OPENING, "start 0 text", "text 0 Hel", "error api_error"],
  },
  {
    name: "an in-band error keeps its Anthropic type and ends the stream",
    upstream: [
      text("Hel"),
      { error: { message: "Slow down", type: "rate_limit_error", code: "rate_limited" } },
      text("never sent"),
      DONE,
    ],
    expected: [...OPENING, "start 0 text", "text 0 Hel", "error rate_limit_error"],
  },
  {
    name: "an in-band error of an OpenAI type is an api_error",
    upstream: [{ error: { message: "boom", type: "server_error" } }],
    expected: [...OPENING, "error api_error"],
  },
  {
    name: "an in-band error given as a string",
    upstream: [{ error: "Upstream overloaded" }],
    expected: [...OPENING, "error api_error"],
  },
  {
    name: "an event that is not JSON is an error",
    upstream: [text("Hi"), "{not json"],
    expected: [...OPENING, "start 0 text", "text 0 Hi", "error api_error"],
  },
  {
    name: "reasoning deltas are dropped; an empty stream still ends",
    upstream: [chunk({ reasoning_content: "Thinking…" }), finish("stop"), usageChunk(), DONE],
    expected: [...OPENING, ...ENDING],
  },
];

for (const row of rows) {
  Deno.test(`messages stream: ${row.name}`, async () => {
    const body = await new Response(translate(sse(row.upstream))).text();
    assert.deepEqual(parseEvents(body).map(compact), row.expected);
  });
}

Deno.test("messages stream: message_start carries the id, model and estimated input", async () => {
  const body = await new Response(translate(sse([text("Hi"), finish("stop"), DONE]))).text();
  const [start] = parseEvents(body);
  assert.deepEqual(start?.data.message, {
    id: "msg_1",
    type: "message",
    role: "assistant",
    model: "claude-sonnet-4-5",
    content: [],
    stop_reason: null,
    stop_sequence: null,
    usage: {
      input_tokens: 80,
      output_tokens: 0,
      cache_read_input_tokens: 0,
      cache_creation_input_tokens: 0,
    },
  });
});

Deno.test("messages stream: a failing upstream read ends with an error event", async () => {
  const body = await new Response(translate(sse([text("Hel")]), { fail: true })).text();
  const events = parseEvents(body);
  assert.deepEqual(events.map(compact), [
    ...OPENING,
    "start 0 text",
    "text 0 Hel",
    "error api_error",
  ]);
  assert.match(String((events.at(-1)?.data.error as Json).message), /connection reset/);
});

Deno.test("messages stream: a client cancel cancels the upstream", async () => {
  let cancelled = false;
  const never = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(encoder.encode(sse([text("Hi")])));
    },
    cancel() {
      cancelled = true;
    },
  });
  const reader = toAnthropicStream(never, { model: "m", promptTokens: 1 }).getReader();
  const first = await reader.read();
  assert.match(new TextDecoder().decode(first.value), /^event: message_start\n/);
  await reader.cancel("client left");
  assert.equal(cancelled, true);
});

Deno.test("messages stream: the upstream is read to its end after message_stop", async () => {
  let cancelled = false;
  const body = sse([text("Hi"), finish("stop"), usageChunk(), DONE]) + ": trailing comment\n\n";
  const stream = toAnthropicStream(
    upstream(body, { onCancel: () => cancelled = true }),
    { model: "m", promptTokens: 1 },
  );
  const events = parseEvents(await new Response(stream).text());
  assert.equal(events.at(-1)?.event, "message_stop");
  assert.equal(cancelled, false, "a complete stream is drained, not cancelled");
});

/** The official SDK's accumulated message of a translated stream. */
function sdkClient(upstreamBody: string): Anthropic {
  return new Anthropic({
    apiKey: "x",
    baseURL: "http://gateway.test",
    maxRetries: 0,
    fetch: () =>
      Promise.resolve(
        new Response(translate(upstreamBody), {
          headers: { "content-type": "text/event-stream" },
        }),
      ),
  });
}
const REQUEST = {
  model: "tollgate-test-model",
  max_tokens: 100,
  messages: [{ role: "user" as const, content: "Weather in Paris and time in Rome?" }],
};

Deno.test("messages stream: the Anthropic SDK accumulates text and interleaved tool calls", async () => {
  const client = sdkClient(sse([
    text("Checking both."),
    toolStart(0, "call_1", "get_weather"),
    toolStart(1, "call_2", "get_time"),
    args(1, '{"zone":'),
    args(0, '{"location":'),
    args(1, '"CET"}'),
    args(0, '"Paris"}'),
    finish("tool_calls"),
    usageChunk({ ...USAGE, prompt_tokens_details: { cached_tokens: 64 } }),
    DONE,
  ]));
  const message = await client.messages.stream(REQUEST).finalMessage();
  assert.deepEqual(message.content, [
    { type: "text", text: "Checking both." },
    { type: "tool_use", id: "call_1", name: "get_weather", input: { location: "Paris" } },
    { type: "tool_use", id: "call_2", name: "get_time", input: { zone: "CET" } },
  ]);
  assert.equal(message.stop_reason, "tool_use");
  assert.deepEqual(
    {
      input: message.usage.input_tokens,
      output: message.usage.output_tokens,
      cached: message.usage.cache_read_input_tokens,
    },
    { input: 18, output: 17, cached: 64 },
  );
});

Deno.test("messages stream: the Anthropic SDK rejects a cut stream instead of finishing it", async () => {
  const client = sdkClient(sse([toolStart(0, "call_1", "get_weather"), args(0, '{"loc')]));
  await assert.rejects(
    client.messages.stream(REQUEST).finalMessage(),
    (error: unknown) => error instanceof Anthropic.APIError && /ended before/.test(error.message),
  );
});

Deno.test("messages stream: the Anthropic SDK raises an in-band upstream error", async () => {
  const client = sdkClient(sse([{ error: { message: "Slow down", type: "rate_limit_error" } }]));
  await assert.rejects(
    client.messages.stream(REQUEST).finalMessage(),
    (error: unknown) => error instanceof Anthropic.APIError && /Slow down/.test(error.message),
  );
});
