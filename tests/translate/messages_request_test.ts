/**
 * toChatRequest: an Anthropic Messages request as an OpenAI chat body, one
 * row per field or case; each row names the output fields it checks.
 */
import assert from "node:assert/strict";
import { GatewayError } from "../../gateway/errors.ts";
import { toChatRequest } from "../../gateway/translate/messages_request.ts";
import { UNPARSED_ARGUMENTS } from "../../gateway/translate/tool_arguments.ts";

type Json = Record<string, unknown>;

const BASE = {
  model: "claude-sonnet-4-5",
  max_tokens: 256,
  messages: [{ role: "user", content: "Hi" }],
};
const PNG = { type: "base64", media_type: "image/png", data: "iVBORw0KGgo=" };
const WEATHER_TOOL = {
  name: "get_weather",
  description: "The current weather in a city",
  input_schema: { type: "object", properties: { location: { type: "string" } } },
};
const CHAT_WEATHER_TOOL = {
  type: "function",
  function: {
    name: "get_weather",
    description: "The current weather in a city",
    parameters: WEATHER_TOOL.input_schema,
  },
};
const CALL = { type: "tool_use", id: "toolu_1", name: "get_weather", input: { location: "Paris" } };
const CHAT_CALL = {
  id: "toolu_1",
  type: "function",
  function: { name: "get_weather", arguments: '{"location":"Paris"}' },
};
const user = (content: unknown) => ({ role: "user", content });
const assistant = (content: unknown) => ({ role: "assistant", content });

interface Row {
  name: string;
  body: Json;
  stream?: boolean;
  /** The output fields checked; `undefined` means the field is absent. */
  expected: Json;
}

const rows: Row[] = [
  {
    name: "keeps the model and max_tokens, a string content as it is",
    body: {},
    expected: { model: "claude-sonnet-4-5", max_tokens: 256, messages: [user("Hi")] },
  },
  {
    name: "system string becomes a leading system message",
    body: { system: "Be brief." },
    expected: { messages: [{ role: "system", content: "Be brief." }, user("Hi")] },
  },
  {
    name: "system text blocks are joined and their cache_control dropped",
    body: {
      system: [
        { type: "text", text: "You are a helper." },
        { type: "text", text: "Be brief.", cache_control: { type: "ephemeral" } },
      ],
    },
    expected: {
      messages: [{ role: "system", content: "You are a helper.\n\nBe brief." }, user("Hi")],
    },
  },
  {
    name: "multi-turn conversation keeps its order; text blocks become a string",
    body: {
      messages: [
        user("Hi"),
        assistant([{ type: "text", text: "Hello!" }]),
        user([
          { type: "text", text: "Two things:" },
          { type: "text", text: "first, second.", cache_control: { type: "ephemeral" } },
        ]),
      ],
    },
    expected: {
      messages: [user("Hi"), assistant("Hello!"), user("Two things:\n\nfirst, second.")],
    },
  },
  {
    name: "base64 image becomes a data: URL part beside the text",
    body: {
      messages: [user([{ type: "image", source: PNG }, { type: "text", text: "What is it?" }])],
    },
    expected: {
      messages: [user([
        { type: "image_url", image_url: { url: "data:image/png;base64,iVBORw0KGgo=" } },
        { type: "text", text: "What is it?" },
      ])],
    },
  },
  {
    name: "url image becomes an image_url part",
    body: {
      messages: [user([{ type: "image", source: { type: "url", url: "https://x.test/a.jpg" } }])],
    },
    expected: {
      messages: [user([{ type: "image_url", image_url: { url: "https://x.test/a.jpg" } }])],
    },
  },
  {
    name: "document with a text source becomes text, after its title",
    body: {
      messages: [user([
        {
          type: "document",
          title: "Notes",
          source: { type: "text", media_type: "text/plain", data: "Paris is sunny." },
        },
        { type: "text", text: "Summarise." },
      ])],
    },
    expected: { messages: [user("Notes\n\nParis is sunny.\n\nSummarise.")] },
  },
  {
    name: "assistant tool_use becomes tool_calls, its tool_result a tool message right after",
    body: {
      messages: [
        user("Weather in Paris?"),
        assistant([{ type: "text", text: "Let me check." }, CALL]),
        user([{ type: "tool_result", tool_use_id: "toolu_1", content: "18°C, sunny" }]),
      ],
    },
    expected: {
      messages: [
        user("Weather in Paris?"),
        { role: "assistant", content: "Let me check.", tool_calls: [CHAT_CALL] },
        { role: "tool", tool_call_id: "toolu_1", content: "18°C, sunny" },
      ],
    },
  },
  {
    name: "parallel tool results come first, in order, then the turn's text",
    body: {
      messages: [
        assistant([CALL, { ...CALL, id: "toolu_2", input: { location: "Rome" } }]),
        user([
          { type: "text", text: "Here you go." },
          {
            type: "tool_result",
            tool_use_id: "toolu_1",
            content: [{ type: "text", text: "18°C" }],
          },
          { type: "tool_result", tool_use_id: "toolu_2", content: "21°C" },
        ]),
      ],
    },
    expected: {
      messages: [
        {
          role: "assistant",
          content: null,
          tool_calls: [CHAT_CALL, {
            ...CHAT_CALL,
            id: "toolu_2",
            function: { name: "get_weather", arguments: '{"location":"Rome"}' },
          }],
        },
        { role: "tool", tool_call_id: "toolu_1", content: "18°C" },
        { role: "tool", tool_call_id: "toolu_2", content: "21°C" },
        user("Here you go."),
      ],
    },
  },
  {
    name: "tool_result text blocks are joined and is_error is noted",
    body: {
      messages: [user([{
        type: "tool_result",
        tool_use_id: "toolu_1",
        is_error: true,
        content: [{ type: "text", text: "City not found." }, { type: "text", text: "Try again." }],
      }])],
    },
    expected: {
      messages: [{
        role: "tool",
        tool_call_id: "toolu_1",
        content: "Error: City not found.\n\nTry again.",
      }],
    },
  },
  {
    name: "images in a tool_result follow in a user message, which the tool message mentions",
    body: {
      messages: [user([
        {
          type: "tool_result",
          tool_use_id: "toolu_1",
          content: [{ type: "text", text: "Screenshot:" }, { type: "image", source: PNG }],
        },
        { type: "text", text: "What does it show?" },
      ])],
    },
    expected: {
      messages: [
        {
          role: "tool",
          tool_call_id: "toolu_1",
          content: "Screenshot:\n\n[1 image(s) of this result follow in the next user message.]",
        },
        user([
          { type: "image_url", image_url: { url: "data:image/png;base64,iVBORw0KGgo=" } },
          { type: "text", text: "What does it show?" },
        ]),
      ],
    },
  },
  {
    name: "thinking and redacted_thinking blocks are dropped from the history",
    body: {
      messages: [
        user("Hi"),
        assistant([
          { type: "thinking", thinking: "Hmm.", signature: "sig" },
          { type: "redacted_thinking", data: "xyz" },
          { type: "text", text: "Hello!" },
        ]),
        assistant([{ type: "thinking", thinking: "Only thoughts.", signature: "sig" }]),
      ],
    },
    expected: { messages: [user("Hi"), assistant("Hello!")] },
  },
  {
    name: "tool input kept raw by the response translation goes back as the raw arguments",
    body: {
      messages: [assistant([{ ...CALL, input: { [UNPARSED_ARGUMENTS]: '{"location":"Par' } }])],
    },
    expected: {
      messages: [{
        role: "assistant",
        content: null,
        tool_calls: [{
          ...CHAT_CALL,
          function: { name: "get_weather", arguments: '{"location":"Par' },
        }],
      }],
    },
  },
  {
    name: "custom tools become functions; Anthropic-defined tools are skipped",
    body: {
      tools: [
        WEATHER_TOOL,
        { type: "web_search_20250305", name: "web_search", max_uses: 3 },
        { type: "custom", name: "ping", input_schema: { type: "object" }, strict: true },
      ],
    },
    expected: {
      tools: [CHAT_WEATHER_TOOL, {
        type: "function",
        function: { name: "ping", parameters: { type: "object" }, strict: true },
      }],
      tool_choice: undefined,
    },
  },
  {
    name: "no custom tool left: neither tools nor tool_choice",
    body: {
      tools: [{ type: "bash_20250124", name: "bash" }],
      tool_choice: { type: "any" },
    },
    expected: { tools: undefined, tool_choice: undefined, parallel_tool_calls: undefined },
  },
  {
    name: "tool_choice auto",
    body: { tools: [WEATHER_TOOL], tool_choice: { type: "auto" } },
    expected: { tool_choice: "auto", parallel_tool_calls: undefined },
  },
  {
    name: "tool_choice any is required",
    body: { tools: [WEATHER_TOOL], tool_choice: { type: "any" } },
    expected: { tool_choice: "required" },
  },
  {
    name: "tool_choice tool is a named function",
    body: { tools: [WEATHER_TOOL], tool_choice: { type: "tool", name: "get_weather" } },
    expected: { tool_choice: { type: "function", function: { name: "get_weather" } } },
  },
  {
    name: "tool_choice none",
    body: { tools: [WEATHER_TOOL], tool_choice: { type: "none" } },
    expected: { tool_choice: "none" },
  },
  {
    name: "disable_parallel_tool_use is parallel_tool_calls false",
    body: {
      tools: [WEATHER_TOOL],
      tool_choice: { type: "auto", disable_parallel_tool_use: true },
    },
    expected: { tool_choice: "auto", parallel_tool_calls: false },
  },
  {
    name: "stop_sequences become stop",
    body: { stop_sequences: ["END", "###"] },
    expected: { stop: ["END", "###"], stop_sequences: undefined },
  },
  {
    name: "temperature and top_p pass; top_k has no equivalent",
    body: { temperature: 0.2, top_p: 0.9, top_k: 40 },
    expected: { temperature: 0.2, top_p: 0.9, top_k: undefined },
  },
  {
    name: "metadata.user_id becomes user",
    body: { metadata: { user_id: "user-42" } },
    expected: { user: "user-42", metadata: undefined },
  },
  {
    name: "thinking is dropped",
    body: { thinking: { type: "enabled", budget_tokens: 1024 } },
    expected: { thinking: undefined },
  },
  {
    name: "a stream asks for the usage chunk",
    body: { stream: true },
    stream: true,
    expected: { stream: true, stream_options: { include_usage: true } },
  },
  {
    name: "no stream: neither stream nor stream_options",
    body: {},
    expected: { stream: undefined, stream_options: undefined },
  },
];

for (const row of rows) {
  Deno.test(`messages request: ${row.name}`, () => {
    const chat = toChatRequest({ ...BASE, ...row.body }, { stream: row.stream ?? false });
    const checked = Object.fromEntries(Object.keys(row.expected).map((key) => [key, chat[key]]));
    assert.deepEqual(checked, row.expected);
  });
}

interface Refusal {
  name: string;
  messages: unknown[];
  param: string;
  says: RegExp;
}

const pdf = { type: "base64", media_type: "application/pdf", data: "JVBERi0=" };
const refusals: Refusal[] = [
  {
    name: "a base64 PDF document",
    messages: [
      user("Hi"),
      assistant("Hello"),
      user([
        { type: "text", text: "Read this:" },
        { type: "document", source: pdf },
      ]),
    ],
    param: "messages.2.content.1",
    says: /PDF/,
  },
  {
    name: "a PDF document by URL",
    messages: [user([{ type: "document", source: { type: "url", url: "https://x.test/a.pdf" } }])],
    param: "messages.0.content.0",
    says: /PDF/,
  },
  {
    name: "a PDF inside a tool result",
    messages: [user([{
      type: "tool_result",
      tool_use_id: "toolu_1",
      content: [{ type: "document", source: pdf }],
    }])],
    param: "messages.0.content.0.content.0",
    says: /PDF/,
  },
  {
    name: "an image from the Files API",
    messages: [user([{ type: "image", source: { type: "file", file_id: "file_1" } }])],
    param: "messages.0.content.0.source",
    says: /"file" source/,
  },
  {
    name: "a server tool block in the history",
    messages: [assistant([{
      type: "server_tool_use",
      id: "srvtoolu_1",
      name: "web_search",
      input: {},
    }])],
    param: "messages.0.content.0",
    says: /"server_tool_use" block/,
  },
];

for (const row of refusals) {
  Deno.test(`messages request: refuses ${row.name} with a 400 naming its path`, () => {
    assert.throws(
      () => toChatRequest({ ...BASE, messages: row.messages }, { stream: false }),
      (error: unknown) => {
        assert.ok(error instanceof GatewayError);
        assert.equal(error.status, 400);
        assert.equal(error.code, "invalid_request_error");
        assert.equal(error.param, row.param);
        assert.match(error.message, row.says);
        assert.match(error.message, new RegExp(row.param.replaceAll(".", "\\.")));
        return true;
      },
    );
  });
}
