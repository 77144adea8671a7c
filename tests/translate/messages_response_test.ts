/**
 * toAnthropicMessage: an OpenAI chat.completion as an Anthropic Message, one
 * row per case; and the tool arguments that do not parse surviving a round
 * trip through the request translation.
 */
import assert from "node:assert/strict";
import { GatewayError } from "../../gateway/errors.ts";
import { toChatRequest } from "../../gateway/translate/messages_request.ts";
import { toAnthropicMessage } from "../../gateway/translate/messages_response.ts";
import { UNPARSED_ARGUMENTS } from "../../gateway/translate/tool_arguments.ts";

type Json = Record<string, unknown>;

const USAGE = { prompt_tokens: 20, completion_tokens: 5, total_tokens: 25 };

function completion(message: Json, finish: string | null, usage: unknown = USAGE): Json {
  return {
    id: "chatcmpl-1",
    object: "chat.completion",
    created: 1741570283,
    model: "gpt-4.1",
    choices: [{ index: 0, message: { role: "assistant", ...message }, finish_reason: finish }],
    usage,
  };
}

const call = (id: string, args: unknown) => ({
  id,
  type: "function",
  function: { name: "get_weather", arguments: args },
});
const toolUse = (id: string, input: Json) => ({ type: "tool_use", id, name: "get_weather", input });

interface Row {
  name: string;
  chat: Json;
  /** The Message fields checked. */
  expected: Json;
}

const rows: Row[] = [
  {
    name: "text answer",
    chat: completion({ content: "Hello!" }, "stop"),
    expected: { content: [{ type: "text", text: "Hello!" }], stop_reason: "end_turn" },
  },
  {
    name: "empty answer keeps an empty text block",
    chat: completion({ content: "" }, "stop"),
    expected: { content: [{ type: "text", text: "" }] },
  },
  {
    name: "content given as text parts",
    chat: completion(
      { content: [{ type: "text", text: "Hel" }, { type: "text", text: "lo" }] },
      "stop",
    ),
    expected: { content: [{ type: "text", text: "Hello" }] },
  },
  {
    name: "a refusal without content is the text",
    chat: completion({ content: null, refusal: "I can't help with that." }, "stop"),
    expected: { content: [{ type: "text", text: "I can't help with that." }] },
  },
  {
    name: "tool calls without text: tool_use blocks only, inputs parsed",
    chat: completion({
      content: null,
      tool_calls: [call("call_1", '{"location":"Paris"}'), call("call_2", '{"location":"Rome"}')],
    }, "tool_calls"),
    expected: {
      content: [toolUse("call_1", { location: "Paris" }), toolUse("call_2", { location: "Rome" })],
      stop_reason: "tool_use",
    },
  },
  {
    name: "text then tool call",
    chat: completion(
      { content: "Let me check.", tool_calls: [call("call_1", "{}")] },
      "tool_calls",
    ),
    expected: {
      content: [{ type: "text", text: "Let me check." }, toolUse("call_1", {})],
    },
  },
  {
    name: "empty arguments are an empty input",
    chat: completion({ content: null, tool_calls: [call("call_1", "")] }, "tool_calls"),
    expected: { content: [toolUse("call_1", {})] },
  },
  {
    name: "arguments that are not a JSON object are kept raw",
    chat: completion({ content: null, tool_calls: [call("call_1", '{"location":"Par')] }, "length"),
    expected: {
      content: [toolUse("call_1", { [UNPARSED_ARGUMENTS]: '{"location":"Par' })],
      stop_reason: "max_tokens",
    },
  },
  {
    name: "arguments sent as an object are the input",
    chat: completion(
      { content: null, tool_calls: [call("call_1", { location: "Paris" })] },
      "tool_calls",
    ),
    expected: { content: [toolUse("call_1", { location: "Paris" })] },
  },
  {
    name: "stop reason: length is max_tokens",
    chat: completion({ content: "Once upon" }, "length"),
    expected: { stop_reason: "max_tokens", stop_sequence: null },
  },
  {
    name: "stop reason: content_filter is refusal",
    chat: completion({ content: "" }, "content_filter"),
    expected: { stop_reason: "refusal" },
  },
  {
    name: "stop reason: legacy function_call is tool_use",
    chat: completion({ content: null, tool_calls: [call("call_1", "{}")] }, "function_call"),
    expected: { stop_reason: "tool_use" },
  },
  {
    name: "stop reason: stop with tool calls (Gemini) is tool_use",
    chat: completion({ content: null, tool_calls: [call("call_1", "{}")] }, "stop"),
    expected: { stop_reason: "tool_use" },
  },
  {
    name: "stop reason: tool_calls without any call is end_turn",
    chat: completion({ content: "Done." }, "tool_calls"),
    expected: { stop_reason: "end_turn" },
  },
  {
    name: "stop reason: missing is end_turn",
    chat: completion({ content: "Done." }, null),
    expected: { stop_reason: "end_turn" },
  },
  {
    name: "usage without cache",
    chat: completion({ content: "Hi" }, "stop"),
    expected: {
      usage: {
        input_tokens: 20,
        output_tokens: 5,
        cache_read_input_tokens: 0,
        cache_creation_input_tokens: 0,
      },
    },
  },
  {
    name: "usage with OpenAI cached tokens: cache reads apart from input",
    chat: completion({ content: "Hi" }, "stop", {
      ...USAGE,
      prompt_tokens: 2006,
      prompt_tokens_details: { cached_tokens: 1920 },
    }),
    expected: {
      usage: {
        input_tokens: 86,
        output_tokens: 5,
        cache_read_input_tokens: 1920,
        cache_creation_input_tokens: 0,
      },
    },
  },
  {
    name: "usage with DeepSeek cache hits",
    chat: completion({ content: "Hi" }, "stop", {
      ...USAGE,
      prompt_cache_hit_tokens: 16,
      prompt_cache_miss_tokens: 4,
    }),
    expected: {
      usage: {
        input_tokens: 4,
        output_tokens: 5,
        cache_read_input_tokens: 16,
        cache_creation_input_tokens: 0,
      },
    },
  },
  {
    name: "missing usage is zeros",
    chat: completion({ content: "Hi" }, "stop", null),
    expected: {
      usage: {
        input_tokens: 0,
        output_tokens: 0,
        cache_read_input_tokens: 0,
        cache_creation_input_tokens: 0,
      },
    },
  },
  {
    name: "only the first choice is read",
    chat: {
      ...completion({ content: "First" }, "stop"),
      choices: [
        { index: 0, message: { role: "assistant", content: "First" }, finish_reason: "stop" },
        { index: 1, message: { role: "assistant", content: "Second" }, finish_reason: "length" },
      ],
    },
    expected: { content: [{ type: "text", text: "First" }], stop_reason: "end_turn" },
  },
];

for (const row of rows) {
  Deno.test(`messages response: ${row.name}`, () => {
    const message = toAnthropicMessage(row.chat, { model: "claude-sonnet-4-5", id: "msg_1" });
    const checked = Object.fromEntries(Object.keys(row.expected).map((key) => [key, message[key]]));
    assert.deepEqual(checked, row.expected);
  });
}

Deno.test("messages response: the envelope is a Message with the client's model and the id given", () => {
  const message = toAnthropicMessage(completion({ content: "Hi" }, "stop"), {
    model: "claude-sonnet-4-5",
    id: "msg_given",
  });
  assert.deepEqual(
    { id: message.id, type: message.type, role: message.role, model: message.model },
    { id: "msg_given", type: "message", role: "assistant", model: "claude-sonnet-4-5" },
  );
});

Deno.test("messages response: without an id, a new msg_ id; a tool call without one gets one", () => {
  const message = toAnthropicMessage(
    completion(
      { content: null, tool_calls: [{ function: { name: "f", arguments: "{}" } }] },
      "stop",
    ),
    { model: "m" },
  );
  assert.match(String(message.id), /^msg_[0-9a-f]{32}$/);
  const [block] = message.content as Json[];
  assert.match(String(block?.id), /^toolu_/);
});

Deno.test("messages response: a body without choices is a 502", () => {
  assert.throws(
    () => toAnthropicMessage({ id: "x", object: "chat.completion", choices: [] }, { model: "m" }),
    (error: unknown) => error instanceof GatewayError && error.status === 502,
  );
});

Deno.test("messages response: raw arguments go back upstream unchanged in the next request", () => {
  const raw = '{"location":"Par';
  const message = toAnthropicMessage(
    completion({ content: null, tool_calls: [call("call_1", raw)] }, "length"),
    { model: "m" },
  );
  const chat = toChatRequest({
    model: "m",
    max_tokens: 10,
    messages: [{ role: "user", content: "Weather?" }, {
      role: "assistant",
      content: message.content,
    }],
  }, { stream: false });
  const [, replayed] = chat.messages as Json[];
  assert.deepEqual(replayed?.tool_calls, [call("call_1", raw)]);
});
