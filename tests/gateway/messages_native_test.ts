/**
 * POST /v1/messages served by an Anthropic upstream (a fake Messages API):
 * Anthropic's official SDKs, 1.x and 0.x over the same cases, through a
 * pass-through that changes nothing but the model. The upstream sees the
 * caller's anthropic-version and anthropic-beta and the operator's
 * credential, never the caller's key; the caller gets the upstream's bytes;
 * usage, cache reads and writes included, is metered from what the upstream
 * reported. (OpenAI's client on an Anthropic upstream, the other way, is
 * tests/providers/anthropic_test.ts.)
 */
import type { UsageEvent } from "../../schema/database.ts";
import assert from "node:assert/strict";
import type Anthropic from "@anthropic-ai/sdk";
import {
  anthropicError,
  anthropicMessage,
  FAKE_ANTHROPIC_TEXT,
  type FakeAnthropic,
  messageStream,
  sseResponse,
  startFakeAnthropic,
} from "../helpers/fake_anthropic.ts";
import {
  ANTHROPIC_SDKS,
  type AnthropicSdk,
  SDK_MAJORS,
  SDK_VERSIONS,
  type Stack,
  type StackOptions,
  startStack,
  waitFor,
} from "../helpers/stack.ts";

const MODEL = "claude-fake";
const UPSTREAM_MODEL = "claude-sonnet-4-5";
const CREDENTIAL = "sk-ant-operator-credential";
const BETA = "prompt-caching-2024-07-31,token-efficient-tools-2025-02-19";

const ask = (content = "hi") => ({
  model: MODEL,
  max_tokens: 100,
  messages: [{ role: "user" as const, content }],
});

const weatherTool = {
  name: "get_weather",
  description: "Current weather",
  input_schema: { type: "object" as const, properties: { location: { type: "string" } } },
};

interface Ctx {
  stack: Stack;
  fake: FakeAnthropic;
  secret: string;
  /** The one usage row added since the last call, for the request `requestId`. */
  meteredOnce(requestId: string | null | undefined): Promise<UsageRow>;
}

type UsageRow = UsageEvent;

async function withNative(test: (ctx: Ctx) => Promise<void>, options: StackOptions = {}) {
  const stack = await startStack(options);
  const fake = startFakeAnthropic();
  try {
    await stack.addModel({
      provider: "claude",
      kind: "anthropic",
      baseUrl: fake.url,
      apiKey: CREDENTIAL,
      model: MODEL,
      upstreamName: UPSTREAM_MODEL,
    });
    const { secret } = await stack.createKey();
    await waitFor(() => stack.gateway.policy.model(MODEL) !== undefined);
    let count = 0;
    const meteredOnce = async (requestId: string | null | undefined) => {
      let rows = await stack.usageRows();
      await waitFor(async () => (rows = await stack.usageRows()).length > count);
      assert.equal(rows.length, count + 1, "exactly one usage row per request");
      count = rows.length;
      const row = rows.find((r) => r.request_id === requestId);
      assert.ok(row, `no usage row for request ${requestId}`);
      assert.deepEqual([row.endpoint, row.model], ["/v1/messages", MODEL]);
      if (row.status === 200) {
        assert.deepEqual([row.provider_name, row.upstream_model], ["claude", UPSTREAM_MODEL]);
      }
      return row;
    };
    await test({ stack, fake, secret, meteredOnce });
  } finally {
    await fake.close();
    await stack.close();
  }
}

/** The headers each SDK major sends, for a raw fetch that stands in for it. */
function sdkHeaders(sdk: AnthropicSdk, secret: string): Record<string, string> {
  const headers: Record<string, string> = {
    "anthropic-version": SDK_VERSIONS[sdk],
    "content-type": "application/json",
  };
  if (sdk === 0) headers["x-api-key"] = secret;
  else headers.authorization = `Bearer ${secret}`;
  return headers;
}

Deno.test("the body reaches the Anthropic upstream unchanged but for the model, with the caller's version and beta", async () => {
  await withNative(async ({ stack, fake, secret, meteredOnce }) => {
    for (const sdk of SDK_MAJORS) {
      const params = {
        model: MODEL,
        max_tokens: 256,
        system: [{
          type: "text",
          text: "You are terse.",
          cache_control: { type: "ephemeral" },
        }],
        messages: [
          {
            role: "user",
            content: [
              { type: "text", text: "Weather here?" },
              { type: "image", source: { type: "url", url: "https://example.com/sky.jpg" } },
            ],
          },
          {
            role: "assistant",
            content: [{ type: "tool_use", id: "toolu_1", name: "get_weather", input: {} }],
          },
          {
            role: "user",
            content: [{ type: "tool_result", tool_use_id: "toolu_1", content: "18°C" }],
          },
        ],
        tools: [weatherTool, { type: "web_search_20250305", name: "web_search", max_uses: 2 }],
        tool_choice: { type: "auto", disable_parallel_tool_use: true },
        stop_sequences: ["END"],
        metadata: { user_id: "user-42" },
        service_tier: "auto",
        a_field_tollgate_does_not_know: { kept: [1, 2, 3] },
      } as unknown as Anthropic.MessageCreateParamsNonStreaming;
      const { data: message, response } = await stack.anthropic(secret, { sdk }).messages
        .create(params, { headers: { "anthropic-beta": BETA } }).withResponse();

      const sent = fake.requests.at(-1)!;
      assert.equal(sent.path, "/v1/messages");
      assert.deepEqual(sent.body, { ...params, model: UPSTREAM_MODEL }, `SDK ${sdk}`);
      assert.equal(sent.headers.get("anthropic-version"), SDK_VERSIONS[sdk]);
      assert.equal(sent.headers.get("anthropic-beta"), BETA);
      assert.equal(sent.headers.get("x-api-key"), CREDENTIAL);
      assert.equal(sent.headers.get("authorization"), null);
      for (const [name, value] of sent.headers) {
        assert.ok(!value.includes(secret), `the caller's key leaked upstream in ${name}`);
      }

      assert.deepEqual(message, anthropicMessage({ model: UPSTREAM_MODEL }));
      assert.equal(response.headers.get("x-tollgate-provider"), "claude");
      const row = await meteredOnce(response.headers.get("request-id"));
      assert.deepEqual(
        [row.stream, row.prompt_tokens, row.completion_tokens, row.estimated, row.cost],
        [false, 12, 10, false, 12n * 100n + 10n * 200n],
      );
    }

    // Over the wire the body is the upstream's, byte for byte.
    const raw = await fetch(`${stack.gatewayUrl}/v1/messages`, {
      method: "POST",
      headers: sdkHeaders(0, secret),
      body: JSON.stringify(ask()),
    });
    assert.equal(await raw.text(), JSON.stringify(anthropicMessage({ model: UPSTREAM_MODEL })));
    await meteredOnce(raw.headers.get("request-id"));
  });
});

Deno.test("a native stream is passed through byte for byte (then its billing comments), metered from message_start and message_delta", async () => {
  await withNative(async ({ stack, fake, secret, meteredOnce }) => {
    const usage = {
      input_tokens: 5,
      cache_creation_input_tokens: 20,
      cache_read_input_tokens: 100,
      output_tokens: 30,
    };
    const sse = messageStream({ model: UPSTREAM_MODEL, usage });
    // 7-byte pieces: events straddle reads on the way in and must arrive intact.
    fake.reply = () => sseResponse(sse, { pieceBytes: 7 });
    const expectRow = (row: UsageRow) =>
      assert.deepEqual(
        [row.stream, row.prompt_tokens, row.cached_tokens, row.completion_tokens, row.estimated],
        [true, 125, 100, 30, false],
      );

    for (const sdk of SDK_MAJORS) {
      const raw = await fetch(`${stack.gatewayUrl}/v1/messages`, {
        method: "POST",
        headers: { ...sdkHeaders(sdk, secret), "anthropic-beta": BETA },
        body: JSON.stringify({ ...ask(), stream: true }),
      });
      assert.equal(raw.status, 200);
      assert.match(raw.headers.get("content-type")!, /^text\/event-stream/);
      // The upstream's stream, then the gateway's billing comments (which clients skip).
      const text = await raw.text();
      assert.equal(text.slice(0, sse.length), sse, `SDK ${sdk}: the stream is the upstream's`);
      assert.match(
        text.slice(sse.length),
        /^: x-tollgate-mode: standard\n: x-tollgate-cost: \S+\n: x-tollgate-balance: \S+\n\n$/,
      );
      assert.equal(fake.requests.at(-1)!.body.stream, true);
      assert.equal(fake.requests.at(-1)!.headers.get("anthropic-beta"), BETA);
      expectRow(await meteredOnce(raw.headers.get("request-id")));

      const client = stack.anthropic(secret, { sdk });
      const { data: events, response } = await client.messages.create({ ...ask(), stream: true })
        .withResponse();
      const names: string[] = [];
      for await (const event of events) names.push(event.type);
      assert.deepEqual(names, [
        "message_start",
        "content_block_start",
        ...Array(Math.ceil(FAKE_ANTHROPIC_TEXT.length / 5)).fill("content_block_delta"),
        "content_block_stop",
        "message_delta",
        "message_stop",
      ]);
      expectRow(await meteredOnce(response.headers.get("request-id")));

      const stream = client.messages.stream(ask());
      const final = await stream.finalMessage();
      assert.deepEqual(
        final.content.map((b) => b.type === "text" ? b.text : b.type),
        [FAKE_ANTHROPIC_TEXT],
      );
      assert.deepEqual(
        [final.stop_reason, final.model, final.usage.input_tokens, final.usage.output_tokens],
        ["end_turn", UPSTREAM_MODEL, 5, 30],
      );
      assert.equal(final.usage.cache_creation_input_tokens, 20);
      assert.equal(final.usage.cache_read_input_tokens, 100);
      expectRow(await meteredOnce(stream.request_id));
    }
  });
});

Deno.test("stop reasons and tool calls come back as the upstream sent them, streaming or not", async () => {
  await withNative(async ({ stack, fake, secret, meteredOnce }) => {
    const toolUse = {
      type: "tool_use",
      id: "toolu_01A09q90qw90lq917835lq9",
      name: "get_weather",
      input: { location: "Paris", unit: "celsius" },
    };
    const cases: [string, string | null, Record<string, unknown>[]][] = [
      ["end_turn", null, [{ type: "text", text: "Done." }]],
      ["max_tokens", null, [{ type: "text", text: "Cut sh" }]],
      ["stop_sequence", "END", [{ type: "text", text: "Up to the" }]],
      ["tool_use", null, [{ type: "text", text: "Checking." }, toolUse]],
    ];
    for (const sdk of SDK_MAJORS) {
      const client = stack.anthropic(secret, { sdk });
      for (const [stopReason, stopSequence, content] of cases) {
        const answer = { model: UPSTREAM_MODEL, content, stopReason, stopSequence };
        fake.reply = (body) =>
          body.stream
            ? sseResponse(messageStream(answer))
            : Response.json(anthropicMessage(answer));
        const params = { ...ask(), tools: [weatherTool], stop_sequences: ["END"] };
        const message = await client.messages.create(params);
        assert.deepEqual(message, anthropicMessage(answer), `SDK ${sdk}, ${stopReason}`);
        await meteredOnce(message._request_id);

        const stream = client.messages.stream(params);
        const final = await stream.finalMessage();
        assert.deepEqual(
          [final.stop_reason, final.stop_sequence],
          [stopReason, stopSequence],
          `SDK ${sdk}, streamed ${stopReason}`,
        );
        assert.deepEqual(
          final.content.map((b) => b.type === "text" ? { type: b.type, text: b.text } : b),
          content,
        );
        await meteredOnce(stream.request_id);
      }
    }
  });
});

Deno.test("the upstream's errors reach each SDK in Anthropic's shape, and are metered", async () => {
  await withNative(async ({ stack, fake, secret, meteredOnce }) => {
    const cases: [Response, number, string, RegExp][] = [
      [
        anthropicError(429, "rate_limit_error", "Number of requests has exceeded your rate limit", {
          "retry-after": "30",
        }),
        429,
        "rate_limit_error",
        /rate limit/,
      ],
      [
        anthropicError(529, "overloaded_error", "Overloaded"),
        529,
        "overloaded_error",
        /Overloaded/,
      ],
      [
        anthropicError(400, "invalid_request_error", "max_tokens: 999999 > 64000"),
        400,
        "invalid_request_error",
        /max_tokens: 999999 > 64000/,
      ],
      [
        anthropicError(401, "authentication_error", "invalid x-api-key"),
        502,
        "api_error",
        /refused the gateway's credential/,
      ],
      [anthropicError(500, "api_error", "Internal server error"), 502, "api_error", /HTTP 500/],
    ];
    for (const sdk of SDK_MAJORS) {
      const client = stack.anthropic(secret, { sdk });
      for (const [reply, status, type, message] of cases) {
        fake.reply = () => reply.clone();
        const error = await client.messages.create(ask()).then(() => null, (e) => e);
        assert.ok(error instanceof ANTHROPIC_SDKS[sdk].APIError, `${error}`);
        assert.equal(error.status, status, `SDK ${sdk}, ${type}`);
        const body = error.error as { error: { type: string; message: string } };
        assert.equal(body.error.type, type);
        assert.match(body.error.message, message);
        assert.ok(!JSON.stringify(body).includes(CREDENTIAL));
        if (status === 429) assert.equal(error.headers?.get("retry-after"), "30");
        const row = await meteredOnce(error.requestID);
        assert.deepEqual([row.status, row.completion_tokens], [status === 529 ? 503 : status, 0]);
      }
    }
  });
});

/** The gateway's fetch, each upstream body failing after `bytes` bytes as a reset connection does. */
function resetAfter(bytes: number): typeof fetch {
  return async (input, init) => {
    const response = await fetch(input, init);
    const reader = response.body!.getReader();
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (sent >= bytes) {
          await reader.cancel();
          return controller.error(new TypeError("connection reset"));
        }
        const read = await reader.read();
        if (read.done) return controller.close();
        const piece = read.value.slice(0, bytes - sent);
        sent += piece.byteLength;
        controller.enqueue(piece);
      },
      cancel: (reason) => reader.cancel(reason),
    });
    return new Response(body, response);
  };
}

/** The stream of messageStream() up to its second text delta. */
function streamStart(): { sse: string; cut: number } {
  const sse = messageStream({ model: UPSTREAM_MODEL });
  return { sse, cut: sse.indexOf("event: content_block_delta", sse.indexOf("text_delta") + 1) };
}

/** Reads a raw SDK stream to its end; the event types it yielded, and the error it ended with. */
async function readRaw(stream: AsyncIterable<{ type: string }>) {
  const names: string[] = [];
  try {
    for await (const event of stream) names.push(event.type);
    return { names, error: null };
  } catch (error) {
    return { names, error };
  }
}

const STARTED = ["message_start", "content_block_start", "content_block_delta"];

/** Checks the row of a cut stream: estimated from the prompt and what streamed, never zero. */
function assertEstimated(row: UsageRow, errorCode: string) {
  assert.deepEqual([row.stream, row.estimated, row.error_code], [true, true, errorCode]);
  assert.ok(row.prompt_tokens > 0, "the prompt is estimated");
  assert.ok(row.completion_tokens > 0, "what streamed is estimated");
}

Deno.test("a native stream reset mid-way is metered as estimated, and each SDK sees an error", async () => {
  const { cut } = streamStart();
  await withNative(async ({ stack, secret, meteredOnce }) => {
    for (const sdk of SDK_MAJORS) {
      const client = stack.anthropic(secret, { sdk });
      const { data, response } = await client.messages.create({ ...ask(), stream: true })
        .withResponse();
      const raw = await readRaw(data);
      assert.deepEqual(raw.names, STARTED);
      assert.ok(raw.error instanceof ANTHROPIC_SDKS[sdk].APIError, `SDK ${sdk}: ${raw.error}`);
      const body = raw.error.error as { error: { type: string; message: string } };
      assert.equal(body.error.type, "api_error");
      assert.match(body.error.message, /^The upstream stream from "claude" failed/);
      assertEstimated(await meteredOnce(response.headers.get("request-id")), "upstream_error");

      const stream = client.messages.stream(ask("Tell me something"));
      const texts: string[] = [];
      stream.on("text", (text) => texts.push(text));
      const error = await stream.finalMessage().then(() => null, (e) => e);
      assert.ok(error instanceof ANTHROPIC_SDKS[sdk].APIError, `SDK ${sdk}: ${error}`);
      assert.deepEqual(texts, [FAKE_ANTHROPIC_TEXT.slice(0, 5)]);
      assertEstimated(await meteredOnce(stream.request_id), "upstream_error");
    }
  }, { fetch: resetAfter(cut) });
});

// A clean end without message_stop is a cut too: the client gets an in-band error event after
// what was passed through, as for a reset.
Deno.test("a native stream the upstream ends before message_stop is metered as estimated, and each SDK sees an error", async () => {
  const { sse, cut } = streamStart();
  await withNative(async ({ stack, fake, secret, meteredOnce }) => {
    fake.reply = () => sseResponse(sse, { endAfter: cut });
    const rawErrors: unknown[] = [];
    for (const sdk of SDK_MAJORS) {
      const client = stack.anthropic(secret, { sdk });
      const { data, response } = await client.messages.create({ ...ask(), stream: true })
        .withResponse();
      const raw = await readRaw(data);
      assert.deepEqual(raw.names, STARTED);
      rawErrors.push(raw.error);
      assertEstimated(await meteredOnce(response.headers.get("request-id")), "upstream_cut");

      const stream = client.messages.stream(ask());
      const error = await stream.finalMessage().then(() => null, (e) => e);
      assert.ok(error instanceof ANTHROPIC_SDKS[sdk].AnthropicError, `SDK ${sdk}: ${error}`);
      assertEstimated(await meteredOnce(stream.request_id), "upstream_cut");
    }
    SDK_MAJORS.forEach((sdk, i) => {
      assert.ok(
        rawErrors[i] instanceof ANTHROPIC_SDKS[sdk].APIError,
        `SDK ${sdk}: raw iteration of a cut stream ended without an error (${rawErrors[i]})`,
      );
    });
  });
});

Deno.test("refusals and token counts are the gateway's own: nothing reaches the upstream", async () => {
  await withNative(async ({ stack, fake, secret }) => {
    const withTemperature = { ...ask(), temperature: 0.2 } as Anthropic.MessageCreateParams;
    const removed = await stack.anthropic(secret, { sdk: 1 }).messages.create(withTemperature)
      .then(() => null, (e) => e);
    assert.ok(removed instanceof ANTHROPIC_SDKS[1].BadRequestError, `${removed}`);
    for (const sdk of SDK_MAJORS) {
      const counted = await stack.anthropic(secret, { sdk }).messages.countTokens({
        model: MODEL,
        messages: ask().messages,
      });
      assert.ok(counted.input_tokens > 0);
    }
    assert.equal(fake.requests.length, 0);
  });
});
