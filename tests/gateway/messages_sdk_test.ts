/**
 * POST /v1/messages and count_tokens as Anthropic's official SDKs call them,
 * 1.x and 0.x over the same cases, served by upstreams that speak OpenAI's
 * dialect: the built-in mock, and a fake OpenAI-compatible upstream that
 * shows what the translated request looked like. Each answered request is
 * metered exactly once.
 */
import assert from "node:assert/strict";
import type Anthropic from "@anthropic-ai/sdk";
import { createParser } from "eventsource-parser";
import {
  chunk,
  completion,
  type FakeUpstream,
  sseResponse,
  startFakeUpstream,
} from "../helpers/fake_upstream.ts";
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

const MOCK = "tollgate-mock";
const PLAIN = "plain-model";

const ask = (content: string, maxTokens = 200) => ({
  model: MOCK,
  max_tokens: maxTokens,
  messages: [{ role: "user" as const, content }],
});

/** Usage rows as requests add them: `one` is the single row a request added. */
function usageLog(stack: Stack) {
  let count = 0;
  const rows = async () => {
    await stack.gateway.usage.flush();
    return await stack.database.db.db.selectFrom("usage_events").selectAll().execute();
  };
  return {
    async one(requestId: string | null | undefined) {
      let all = await rows();
      // A stream's row is written when the stream ends, just after the client has read it.
      await waitFor(async () => (all = await rows()).length > count);
      assert.equal(all.length, count + 1, "exactly one usage row per request");
      count = all.length;
      const row = all.find((r) => r.request_id === requestId);
      assert.ok(row, `no usage row for request ${requestId}`);
      assert.equal(row.endpoint, "/v1/messages");
      assert.equal(row.status, 200);
      return row;
    },
    async none() {
      assert.equal((await rows()).length, count, "nothing more was metered");
    },
  };
}

/** Anthropic's stream grammar: message_start, each block started, delta'd and stopped, the end. */
function assertEventSequence(names: string[]) {
  assert.match(
    names.filter((name) => name !== "ping").join(" "),
    /^message_start( content_block_start( content_block_delta)+ content_block_stop)+ message_delta message_stop$/,
  );
}

/** The event names of an SSE body, each checked against its data's `type`. */
async function sseEventNames(response: Response): Promise<string[]> {
  const names: string[] = [];
  const parser = createParser({
    onEvent: (event) => {
      assert.equal(JSON.parse(event.data).type, event.event);
      names.push(event.event!);
    },
  });
  const decoder = new TextDecoder();
  for await (const bytes of response.body!) parser.feed(decoder.decode(bytes, { stream: true }));
  return names;
}

interface Ctx {
  stack: Stack;
  secret: string;
  usage: ReturnType<typeof usageLog>;
}

async function withStack(test: (ctx: Ctx) => Promise<void>, options: StackOptions = {}) {
  const stack = await startStack(options);
  try {
    const { secret } = await stack.createKey();
    await test({ stack, secret, usage: usageLog(stack) });
  } finally {
    await stack.close();
  }
}

/** As withStack, with PLAIN served by a fake OpenAI-compatible upstream as "up-model". */
async function withUpstream(test: (ctx: Ctx & { fake: FakeUpstream }) => Promise<void>) {
  const fake = startFakeUpstream();
  try {
    await withStack(async (ctx) => {
      await ctx.stack.addModel({
        provider: "up",
        baseUrl: fake.url,
        apiKey: "sk-up",
        model: PLAIN,
        upstreamName: "up-model",
      });
      await waitFor(() => ctx.stack.gateway.policy.model(PLAIN) !== undefined);
      await test({ ...ctx, fake });
    });
  } finally {
    await fake.close();
  }
}

Deno.test("each Anthropic SDK gets a message from the mock with usage, metered once", async () => {
  await withStack(async ({ stack, secret, usage }) => {
    for (const sdk of SDK_MAJORS) {
      const client = stack.anthropic(secret, { sdk });
      const { data: message, response } = await client.messages.create(ask("Say hello"))
        .withResponse();
      assert.equal(message.type, "message");
      assert.equal(message.role, "assistant");
      assert.equal(message.model, MOCK);
      assert.match(message.id, /^msg_/);
      assert.equal(message.content.length, 1);
      const [block] = message.content;
      assert.ok(block?.type === "text");
      assert.match(block.text, /You said: "Say hello"/);
      assert.equal(message.stop_reason, "end_turn");
      assert.equal(message.stop_sequence, null);
      assert.ok(message.usage.input_tokens > 0 && message.usage.output_tokens > 0);
      assert.equal(message.usage.cache_read_input_tokens, 0);
      assert.equal(message.usage.cache_creation_input_tokens, 0);
      assert.match(response.headers.get("request-id")!, /^req_[0-9a-f]{32}$/);
      assert.equal(response.headers.get("x-request-id"), response.headers.get("request-id"));

      const row = await usage.one(response.headers.get("request-id"));
      assert.equal(row.model, MOCK);
      assert.equal(row.stream, false);
      assert.equal(row.estimated, false);
      assert.equal(row.prompt_tokens, message.usage.input_tokens);
      assert.equal(row.completion_tokens, message.usage.output_tokens);
      assert.ok(row.cost > 0n);

      const models = await client.models.list();
      assert.deepEqual(
        models.data.map((m) => [m.type, m.id, m.display_name]),
        [["model", MOCK, MOCK]],
        `SDK ${sdk}`,
      );
      assert.match(models.data[0]!.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    }
  });
});

Deno.test("a stream arrives as Anthropic's events, whole through stream() and raw, metered once each", async () => {
  await withStack(async ({ stack, secret, usage }) => {
    for (const sdk of SDK_MAJORS) {
      const client = stack.anthropic(secret, { sdk });
      const whole = await client.messages.create(ask("Stream it"));
      const wholeText = whole.content.map((b) => b.type === "text" ? b.text : "").join("");
      await usage.one(whole._request_id);

      const { data: raw, response } = await client.messages.create({
        ...ask("Stream it"),
        stream: true,
      }).withResponse();
      const names: string[] = [];
      let text = "";
      for await (const event of raw) {
        names.push(event.type);
        if (event.type === "content_block_delta" && event.delta.type === "text_delta") {
          text += event.delta.text;
        }
      }
      assertEventSequence(names);
      assert.equal(text, wholeText, `SDK ${sdk}`);
      const rawRow = await usage.one(response.headers.get("request-id"));
      assert.deepEqual(
        [rawRow.stream, rawRow.estimated, rawRow.prompt_tokens, rawRow.completion_tokens],
        [true, false, whole.usage.input_tokens, whole.usage.output_tokens],
      );

      const stream = client.messages.stream(ask("Stream it"));
      const final = await stream.finalMessage();
      assert.deepEqual(
        final.content.map((b) => b.type === "text" ? [b.type, b.text] : [b.type]),
        [["text", wholeText]],
      );
      assert.equal(final.stop_reason, "end_turn");
      assert.equal(final.model, MOCK);
      assert.equal(final.usage.input_tokens, whole.usage.input_tokens);
      assert.equal(final.usage.output_tokens, whole.usage.output_tokens);
      const row = await usage.one(stream.request_id);
      assert.deepEqual([row.stream, row.estimated], [true, false]);
    }

    // Over the wire: every event is named after its type, and a ping follows message_start.
    const response = await fetch(`${stack.gatewayUrl}/v1/messages`, {
      method: "POST",
      headers: {
        "x-api-key": secret,
        "anthropic-version": SDK_VERSIONS[0],
        "content-type": "application/json",
      },
      body: JSON.stringify({ ...ask("Stream it"), stream: true }),
    });
    assert.match(response.headers.get("content-type")!, /^text\/event-stream/);
    const names = await sseEventNames(response);
    assert.deepEqual(names.slice(0, 3), ["message_start", "ping", "content_block_start"]);
    assertEventSequence(names);
    await usage.one(response.headers.get("request-id"));
  });
});

Deno.test("max_tokens cuts the answer: stop_reason max_tokens with exactly that many output tokens", async () => {
  await withStack(async ({ stack, secret, usage }) => {
    for (const sdk of SDK_MAJORS) {
      const client = stack.anthropic(secret, { sdk });
      const message = await client.messages.create(ask("Hi", 5));
      assert.equal(message.stop_reason, "max_tokens");
      assert.equal(message.usage.output_tokens, 5);
      await usage.one(message._request_id);

      const stream = client.messages.stream(ask("Hi", 5));
      const final = await stream.finalMessage();
      assert.equal(final.stop_reason, "max_tokens");
      assert.equal(final.usage.output_tokens, 5);
      assert.equal((await usage.one(stream.request_id)).completion_tokens, 5);
    }
  });
});

const PNG =
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
const weatherTool = {
  name: "get_weather",
  description: "Current weather",
  input_schema: {
    type: "object" as const,
    properties: { location: { type: "string" } },
    required: ["location"],
  },
};

Deno.test("tools, tool history, system, images and stop sequences reach an OpenAI upstream translated", async () => {
  await withUpstream(async ({ stack, secret, usage, fake }) => {
    fake.reply = (body) =>
      Response.json({
        ...completion(String(body.model), ""),
        choices: [{
          index: 0,
          message: {
            role: "assistant",
            content: null,
            tool_calls: [{
              id: "call_9",
              type: "function",
              function: { name: "get_weather", arguments: '{"location":"Paris","day":"tomorrow"}' },
            }],
          },
          finish_reason: "tool_calls",
        }],
        usage: {
          prompt_tokens: 120,
          completion_tokens: 15,
          total_tokens: 135,
          prompt_tokens_details: { cached_tokens: 100 },
        },
      });
    for (const sdk of SDK_MAJORS) {
      const client = stack.anthropic(secret, { sdk });
      const message = await client.messages.create({
        model: PLAIN,
        max_tokens: 300,
        system: [
          { type: "text", text: "You are terse.", cache_control: { type: "ephemeral" } },
          { type: "text", text: "Use metric units." },
        ],
        messages: [
          {
            role: "user",
            content: [
              { type: "text", text: "Weather here?" },
              { type: "image", source: { type: "base64", media_type: "image/png", data: PNG } },
              { type: "image", source: { type: "url", url: "https://example.com/sky.jpg" } },
            ],
          },
          {
            role: "assistant",
            content: [
              { type: "text", text: "Checking." },
              {
                type: "tool_use",
                id: "toolu_1",
                name: "get_weather",
                input: { location: "Paris" },
              },
            ],
          },
          {
            role: "user",
            content: [
              { type: "tool_result", tool_use_id: "toolu_1", content: "18°C" },
              { type: "text", text: "And tomorrow?" },
            ],
          },
        ],
        tools: [weatherTool],
        tool_choice: { type: "tool", name: "get_weather", disable_parallel_tool_use: true },
        stop_sequences: ["END"],
        metadata: { user_id: "user-42" },
      });
      assert.deepEqual(fake.requests.at(-1)!.body, {
        model: "up-model",
        messages: [
          { role: "system", content: "You are terse.\n\nUse metric units." },
          {
            role: "user",
            content: [
              { type: "text", text: "Weather here?" },
              { type: "image_url", image_url: { url: `data:image/png;base64,${PNG}` } },
              { type: "image_url", image_url: { url: "https://example.com/sky.jpg" } },
            ],
          },
          {
            role: "assistant",
            content: "Checking.",
            tool_calls: [{
              id: "toolu_1",
              type: "function",
              function: { name: "get_weather", arguments: '{"location":"Paris"}' },
            }],
          },
          { role: "tool", tool_call_id: "toolu_1", content: "18°C" },
          { role: "user", content: "And tomorrow?" },
        ],
        max_tokens: 300,
        tools: [{
          type: "function",
          function: {
            name: "get_weather",
            description: "Current weather",
            parameters: weatherTool.input_schema,
          },
        }],
        tool_choice: { type: "function", function: { name: "get_weather" } },
        parallel_tool_calls: false,
        stop: ["END"],
        user: "user-42",
      }, `SDK ${sdk}`);

      assert.deepEqual(message.content, [{
        type: "tool_use",
        id: "call_9",
        name: "get_weather",
        input: { location: "Paris", day: "tomorrow" },
      }]);
      assert.equal(message.stop_reason, "tool_use");
      assert.deepEqual(message.usage, {
        input_tokens: 20,
        output_tokens: 15,
        cache_read_input_tokens: 100,
        cache_creation_input_tokens: 0,
      });
      const row = await usage.one(message._request_id);
      assert.deepEqual(
        [row.prompt_tokens, row.cached_tokens, row.completion_tokens, row.estimated],
        [120, 100, 15, false],
      );
      assert.equal(row.upstream_model, "up-model");
    }
  });
});

Deno.test("each tool_choice becomes its OpenAI equivalent", async () => {
  await withUpstream(async ({ stack, secret, fake }) => {
    const cases: [Anthropic.ToolChoice, unknown][] = [
      [{ type: "auto" }, "auto"],
      [{ type: "any" }, "required"],
      [{ type: "none" }, "none"],
      [{ type: "tool", name: "get_weather" }, {
        type: "function",
        function: { name: "get_weather" },
      }],
    ];
    for (const sdk of SDK_MAJORS) {
      const client = stack.anthropic(secret, { sdk });
      for (const [choice, expected] of cases) {
        await client.messages.create({
          ...ask("Weather?"),
          model: PLAIN,
          tools: [weatherTool],
          tool_choice: choice,
        });
        const sent = fake.requests.at(-1)!.body;
        assert.deepEqual(sent.tool_choice, expected, JSON.stringify(choice));
        assert.equal(sent.parallel_tool_calls, undefined);
      }
    }
  });
});

Deno.test("a streamed tool call arrives at the SDK as one tool_use block with its input parsed", async () => {
  await withUpstream(async ({ stack, secret, usage, fake }) => {
    fake.reply = (body) => {
      const model = String(body.model);
      const call = (fields: Record<string, unknown>) =>
        chunk(model, { tool_calls: [{ index: 0, ...fields }] });
      return sseResponse([
        chunk(model, { role: "assistant", content: "" }),
        chunk(model, { content: "Let me check." }),
        call({ id: "call_7", type: "function", function: { name: "get_weather", arguments: "" } }),
        call({ function: { arguments: '{"loca' } }),
        call({ function: { arguments: 'tion": "Par' } }),
        call({ function: { arguments: 'is"}' } }),
        chunk(model, {}, "tool_calls"),
        JSON.stringify({
          id: "chatcmpl-fake",
          object: "chat.completion.chunk",
          model,
          choices: [],
          usage: {
            prompt_tokens: 60,
            completion_tokens: 12,
            total_tokens: 72,
            prompt_tokens_details: { cached_tokens: 40 },
          },
        }),
        "[DONE]",
      ]);
    };
    for (const sdk of SDK_MAJORS) {
      const client = stack.anthropic(secret, { sdk });
      const stream = client.messages.stream({
        ...ask("Weather in Paris?"),
        model: PLAIN,
        tools: [weatherTool],
      });
      const final = await stream.finalMessage();
      const sent = fake.requests.at(-1)!.body;
      assert.equal(sent.stream, true);
      assert.deepEqual(sent.stream_options, { include_usage: true });
      assert.deepEqual(final.content.map((block) => ({ ...block, citations: undefined })), [
        { type: "text", text: "Let me check.", citations: undefined },
        {
          type: "tool_use",
          id: "call_7",
          name: "get_weather",
          input: { location: "Paris" },
          citations: undefined,
        },
      ], `SDK ${sdk}`);
      assert.equal(final.stop_reason, "tool_use");
      assert.equal(final.usage.input_tokens, 20);
      assert.equal(final.usage.cache_read_input_tokens, 40);
      assert.equal(final.usage.output_tokens, 12);
      const row = await usage.one(stream.request_id);
      assert.deepEqual(
        [row.stream, row.prompt_tokens, row.cached_tokens, row.completion_tokens, row.estimated],
        [true, 60, 40, 12, false],
      );
    }
  });
});

Deno.test("count_tokens through the SDK is positive, deterministic and grows with the prompt", async () => {
  await withStack(async ({ stack, secret, usage }) => {
    for (const sdk of SDK_MAJORS) {
      const client = stack.anthropic(secret, { sdk });
      const count = async (params: Omit<Anthropic.MessageCountTokensParams, "model">) =>
        (await client.messages.countTokens({ model: MOCK, ...params })).input_tokens;
      const short = [{ role: "user" as const, content: "Hello there" }];
      const base = await count({ messages: short });
      assert.ok(Number.isInteger(base) && base > 0);
      assert.equal(await count({ messages: short }), base);
      const longer = await count({
        messages: [{ role: "user", content: "Hello there, and a good deal more to say." }],
      });
      assert.ok(longer > base);
      assert.ok(await count({ messages: short, system: "Be brief." }) > base);
      assert.ok(await count({ messages: short, tools: [weatherTool] }) > base);

      const missing = await client.messages.countTokens({ model: "no-such-model", messages: short })
        .then(() => null, (e) => e);
      assert.ok(missing instanceof ANTHROPIC_SDKS[sdk].NotFoundError, `SDK ${sdk}: ${missing}`);
    }
    await usage.none();
  });
});

interface AnthropicErrorBody {
  type: string;
  error: { type: string; message: string };
  request_id: string;
}

/**
 * The error `call` failed with, checked to be the SDK's APIError for
 * `status`, in Anthropic's shape with error type `type`, its request id in
 * the body and the request-id header.
 */
async function refusal(sdk: AnthropicSdk, call: Promise<unknown>, status: number, type: string) {
  const error = await call.then(() => null, (e) => e);
  assert.ok(
    error instanceof ANTHROPIC_SDKS[sdk].APIError,
    `SDK ${sdk}: expected an APIError, got ${error}`,
  );
  assert.equal(error.status, status);
  assert.match(error.requestID ?? "", /^req_[0-9a-f]{32}$/);
  assert.equal(error.headers?.get("request-id"), error.requestID);
  const body = error.error as AnthropicErrorBody;
  assert.deepEqual(Object.keys(body).sort(), ["error", "request_id", "type"]);
  assert.equal(body.type, "error");
  assert.equal(body.error.type, type);
  assert.equal(body.request_id, error.requestID);
  return { error, message: body.error.message };
}

Deno.test("the gateway's refusals reach each SDK in Anthropic's shape, with a request id", async () => {
  await withStack(async ({ stack, secret, usage }) => {
    for (const sdk of SDK_MAJORS) {
      const errors = ANTHROPIC_SDKS[sdk];
      const client = stack.anthropic(secret, { sdk });
      const unknown = await refusal(
        sdk,
        client.messages.create({ ...ask("x"), model: "no-such-model" }),
        404,
        "not_found_error",
      );
      assert.ok(unknown.error instanceof errors.NotFoundError);
      assert.match(unknown.message, /no-such-model/);

      const badKey = await refusal(
        sdk,
        stack.anthropic("tg_notakey", { sdk }).messages.create(ask("x")),
        401,
        "authentication_error",
      );
      assert.ok(badKey.error instanceof errors.AuthenticationError);
      const header = sdk === 0 ? "x-api-key" : "Authorization";
      assert.match(badKey.message, new RegExp(`^Incorrect API key provided in ${header}`));

      const noMaxTokens = { model: MOCK, messages: [{ role: "user", content: "x" }] };
      const missing = await refusal(
        sdk,
        client.messages.create(noMaxTokens as unknown as Anthropic.MessageCreateParamsNonStreaming),
        400,
        "invalid_request_error",
      );
      assert.ok(missing.error instanceof errors.BadRequestError);
      assert.equal(missing.message, "max_tokens: Field required");
      const wizard = { ...ask("x"), messages: [{ role: "wizard", content: "x" }] };
      const badRole = await refusal(
        sdk,
        client.messages.create(wizard as unknown as Anthropic.MessageCreateParamsNonStreaming),
        400,
        "invalid_request_error",
      );
      assert.equal(badRole.message, "messages.0.role: Input should be 'user' or 'assistant'");
    }

    // 1.x sends 2026-10-21, which removed temperature; 0.x sends 2023-06-01, which has it.
    const withTemperature = {
      ...ask("x"),
      temperature: 0.5,
    } as Anthropic.MessageCreateParamsNonStreaming;
    const removed = await refusal(
      1,
      stack.anthropic(secret, { sdk: 1 }).messages.create(withTemperature),
      400,
      "invalid_request_error",
    );
    assert.ok(removed.error instanceof ANTHROPIC_SDKS[1].BadRequestError);
    assert.equal(removed.message, "temperature: Extra inputs are not permitted");
    await usage.none();
    const accepted = await stack.anthropic(secret, { sdk: 0 }).messages.create(withTemperature);
    assert.equal(accepted.stop_reason, "end_turn");
    await usage.one(accepted._request_id);

    const notJson = await fetch(`${stack.gatewayUrl}/v1/messages`, {
      method: "POST",
      headers: {
        "x-api-key": secret,
        "anthropic-version": SDK_VERSIONS[0],
        "content-type": "application/json",
      },
      body: "{not json",
    });
    assert.equal(notJson.status, 400);
    assert.equal((await notJson.json()).error.type, "invalid_request_error");
    assert.equal(notJson.headers.get("x-should-retry"), "false");
    await usage.none();
  });
});

Deno.test("a body over the limit is a 413 request_too_large for each SDK", async () => {
  await withStack(async ({ stack, secret, usage }) => {
    for (const sdk of SDK_MAJORS) {
      await refusal(
        sdk,
        stack.anthropic(secret, { sdk }).messages.create(ask("x".repeat(5000))),
        413,
        "request_too_large",
      );
    }
    await usage.none();
  }, { maxBodyBytes: 4096 });
});
