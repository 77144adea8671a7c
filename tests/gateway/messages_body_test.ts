/**
 * The inbound Anthropic dialect of /v1/messages: which bodies pass under
 * which `anthropic-version`, the 400 each refusal gets (param and message in
 * Anthropic's words), and the prompt's token count.
 */
import assert from "node:assert/strict";
import { GatewayError } from "../../gateway/errors.ts";
import { IMAGE_TOKENS, loadTokenizer } from "../../gateway/metering/tokens.ts";
import {
  type AnthropicVersion,
  anthropicVersion,
  countMessagesTokens,
  validateMessages,
} from "../../gateway/routes/messages_body.ts";

type Json = Record<string, unknown>;

const BASE: Json = {
  model: "claude-x",
  max_tokens: 64,
  messages: [{ role: "user", content: "hi" }],
};
const IMAGE = { type: "image", source: { type: "base64", media_type: "image/png", data: "iVBO" } };

function user(...content: Json[]): Json {
  return { role: "user", content };
}

function assistant(...content: Json[]): Json {
  return { role: "assistant", content };
}

/** The 400 `call` throws, as [param, message]. */
function refusal(call: () => unknown): [string | null, string] {
  try {
    call();
  } catch (error) {
    assert.ok(error instanceof GatewayError, `expected a GatewayError, got ${error}`);
    assert.equal(error.status, 400);
    assert.equal(error.code, "invalid_request_error");
    assert.equal(error.retryable, false);
    return [error.param, error.message];
  }
  assert.fail("expected a 400");
}

Deno.test("valid bodies pass under both versions, unknown fields kept", () => {
  const bodies: Record<string, Json> = {
    "string content": BASE,
    "blocks, system blocks, tools and options": {
      ...BASE,
      system: [{ type: "text", text: "Be brief.", cache_control: { type: "ephemeral" } }],
      messages: [
        user({ type: "text", text: "Weather in Paris?" }, IMAGE),
        assistant({ type: "tool_use", id: "tu_1", name: "weather", input: { city: "Paris" } }),
        user({ type: "tool_result", tool_use_id: "tu_1", content: "18C" }),
      ],
      tools: [{ name: "weather", description: "Weather now", input_schema: { type: "object" } }],
      tool_choice: { type: "auto", disable_parallel_tool_use: true },
      stop_sequences: ["\n\nHuman:"],
      stream: true,
      metadata: { user_id: "u-1" },
      thinking: { type: "enabled", budget_tokens: 1024 },
      service_tier: "auto",
    },
    "a document in a user message": {
      ...BASE,
      messages: [user({ type: "document", source: { type: "text", data: "x" } })],
    },
    "citations on an assistant's text": {
      ...BASE,
      messages: [
        user({ type: "text", text: "q" }),
        assistant({ type: "text", text: "a", citations: [{}] }),
      ],
    },
    "empty citations on a user's text": {
      ...BASE,
      messages: [user({ type: "text", text: "q", citations: [] })],
    },
  };
  for (const version of ["2023-06-01", "2026-10-21"] as const) {
    for (const [name, body] of Object.entries(bodies)) {
      const parsed = validateMessages(structuredClone(body), version);
      assert.deepEqual(parsed, body, `${name} under ${version}`);
    }
  }
});

Deno.test("count_tokens bodies need no max_tokens; messages bodies do", () => {
  const { max_tokens: _, ...counted } = BASE;
  assert.deepEqual(validateMessages(counted, "2026-10-21", { countTokens: true }), counted);
  assert.deepEqual(refusal(() => validateMessages(counted, "2026-10-21")), [
    "max_tokens",
    "max_tokens: Field required",
  ]);
});

Deno.test("each schema error names its param in Anthropic's words", () => {
  for (const body of [[], null, "hi"]) {
    assert.deepEqual(refusal(() => validateMessages(body, "2023-06-01")), [
      null,
      "The request body must be a JSON object.",
    ]);
  }
  const messages = (...list: Json[]) => ({ ...BASE, messages: list });
  const cases: [unknown, string, string][] = [
    [{ ...BASE, model: undefined }, "model", "Field required"],
    [{ ...BASE, model: 7 }, "model", "Input should be a valid string"],
    [{ ...BASE, model: "" }, "model", "String should have at least 1 character(s)"],
    [{ ...BASE, max_tokens: 0 }, "max_tokens", "Input should be greater than or equal to 1"],
    [{ ...BASE, max_tokens: 1.5 }, "max_tokens", "Input should be a valid integer"],
    [{ ...BASE, max_tokens: "64" }, "max_tokens", "Input should be a valid number"],
    [{ ...BASE, messages: undefined }, "messages", "Field required"],
    [{ ...BASE, messages: [] }, "messages", "at least one message is required"],
    [{ ...BASE, messages: {} }, "messages", "Input should be a valid list"],
    [
      messages({ role: "system", content: "x" }),
      "messages.0.role",
      "Input should be 'user' or 'assistant'",
    ],
    [messages({ role: "user" }), "messages.0.content", "Field required"],
    [
      messages({ role: "user", content: 3 }),
      "messages.0.content",
      "Input should be a valid string or a list of content blocks",
    ],
    [
      messages(user({ type: "text", text: "a" }, { text: "b" })),
      "messages.0.content.1.type",
      "Field required",
    ],
    [{ ...BASE, system: 5 }, "system", "Input should be a valid string or a list of text blocks"],
    [{ ...BASE, system: [IMAGE] }, "system.0.type", "Input should be 'text'"],
    [{ ...BASE, system: [{ type: "text" }] }, "system.0.text", "Field required"],
    [{ ...BASE, stop_sequences: ["a", 1] }, "stop_sequences.1", "Input should be a valid string"],
    [{ ...BASE, stream: "yes" }, "stream", "Input should be a valid boolean"],
    [{ ...BASE, temperature: 1.5 }, "temperature", "Input should be less than or equal to 1"],
    [{ ...BASE, top_p: -0.1 }, "top_p", "Input should be greater than or equal to 0"],
    [{ ...BASE, top_k: 2.5 }, "top_k", "Input should be a valid integer"],
    [{ ...BASE, tools: [{ input_schema: {} }] }, "tools.0.name", "Field required"],
    [{ ...BASE, tool_choice: {} }, "tool_choice.type", "Field required"],
    [{ ...BASE, metadata: { user_id: 1 } }, "metadata.user_id", "Input should be a valid string"],
    [{ ...BASE, thinking: "on" }, "thinking", "Input should be a valid dictionary"],
  ];
  for (const [body, param, reason] of cases) {
    assert.deepEqual(refusal(() => validateMessages(body, "2023-06-01")), [
      param,
      `${param}: ${reason}`,
    ]);
  }
});

Deno.test("2026-10-21 refuses temperature, top_p and top_k, even at their defaults; 2023-06-01 takes them", () => {
  for (const [field, value] of [["temperature", 1], ["top_p", 1], ["top_k", 0]] as const) {
    const body = { ...BASE, [field]: value };
    assert.deepEqual(validateMessages(body, "2023-06-01"), body);
    for (const countTokens of [true, false] as const) {
      assert.deepEqual(refusal(() => validateMessages(body, "2026-10-21", { countTokens })), [
        field,
        `${field}: Extra inputs are not permitted`,
      ]);
    }
  }
  // Refused as removed, not as malformed.
  assert.deepEqual(refusal(() => validateMessages({ ...BASE, temperature: "hot" }, "2026-10-21")), [
    "temperature",
    "temperature: Extra inputs are not permitted",
  ]);
});

Deno.test("2026-10-21 refuses documents in assistant messages and cited text in user messages", () => {
  const cited = { type: "text", text: "q", citations: [{ type: "char_location" }] };
  const searchResult = { type: "search_result", source: "s", title: "t", content: [cited] };
  const cases: [string, Json[], string, string][] = [
    [
      "a document in an assistant message",
      [
        user({ type: "text", text: "q" }),
        assistant({ type: "document", source: { type: "text", data: "d" } }),
      ],
      "messages.1.content.0.type",
      "document blocks are not allowed in assistant messages under anthropic-version 2026-10-21",
    ],
    [
      "cited text in a user message",
      [user({ type: "text", text: "a" }, cited)],
      "messages.0.content.1.citations",
      "citations are not allowed on text blocks in user messages under anthropic-version 2026-10-21",
    ],
    [
      "cited text in a user's search_result",
      [user(searchResult)],
      "messages.0.content.0.content.0.citations",
      "citations are not allowed on text blocks in user messages under anthropic-version 2026-10-21",
    ],
    [
      "cited text in a search_result inside a tool_result",
      [user({ type: "tool_result", tool_use_id: "t", content: [searchResult] })],
      "messages.0.content.0.content.0.content.0.citations",
      "citations are not allowed on text blocks in user messages under anthropic-version 2026-10-21",
    ],
  ];
  for (const [name, messages, param, reason] of cases) {
    const body = { ...BASE, messages };
    assert.deepEqual(validateMessages(body, "2023-06-01"), body, `${name} passes 2023-06-01`);
    assert.deepEqual(
      refusal(() => validateMessages(body, "2026-10-21")),
      [param, `${param}: ${reason}`],
      name,
    );
  }
});

Deno.test("anthropic-version: the two served versions; absent or unknown is a 400 naming it", () => {
  for (const version of ["2023-06-01", "2026-10-21"] satisfies AnthropicVersion[]) {
    assert.equal(anthropicVersion(new Headers({ "anthropic-version": version })), version);
  }
  assert.deepEqual(refusal(() => anthropicVersion(new Headers())), [
    "anthropic-version",
    "anthropic-version: header is required",
  ]);
  for (const version of ["2024-10-22", "2023-01-01", "2023-06-01, 2023-06-01", ""]) {
    const [param, message] = refusal(() =>
      anthropicVersion(new Headers({ "anthropic-version": version }))
    );
    assert.equal(param, "anthropic-version");
    assert.ok(
      message.startsWith(`anthropic-version: ${JSON.stringify(version)} is not a valid version`),
      message,
    );
  }
});

Deno.test("token count is deterministic and grows with every part of the prompt", async () => {
  await loadTokenizer();
  const count = (body: Json) => countMessagesTokens(validateMessages(body, "2023-06-01"));
  const base = {
    ...BASE,
    system: "Be brief.",
    messages: [user({ type: "text", text: "What is the weather in Paris?" })],
  };
  const baseCount = count(base);
  assert.equal(count(structuredClone(base)), baseCount);
  assert.ok(baseCount > 0);

  const tool = {
    name: "weather",
    description: "Current weather",
    input_schema: { type: "object" },
  };
  const grown: Record<string, Json> = {
    "longer system": { ...base, system: "Be brief. Answer in French, and cite sources." },
    "system as blocks": { ...base, system: [{ type: "text", text: "Be brief. Be kind." }] },
    "longer text": {
      ...base,
      messages: [user({ type: "text", text: "What is the weather in Paris and in Lyon today?" })],
    },
    "another message": {
      ...base,
      messages: [...base.messages, assistant({ type: "text", text: "Sunny." })],
    },
    "a tool": { ...base, tools: [tool] },
    "a tool_use and its result": {
      ...base,
      messages: [
        ...base.messages,
        assistant({ type: "tool_use", id: "t1", name: "weather", input: { city: "Paris" } }),
        user({ type: "tool_result", tool_use_id: "t1", content: [{ type: "text", text: "18C" }] }),
      ],
    },
    "a text document": {
      ...base,
      messages: [
        ...base.messages,
        user({ type: "document", source: { type: "text", data: "A long report." } }),
      ],
    },
  };
  for (const [name, body] of Object.entries(grown)) {
    const grownCount = count(body);
    assert.ok(grownCount > baseCount, `${name}: ${grownCount} > ${baseCount}`);
    assert.equal(count(structuredClone(body)), grownCount, `${name} again`);
  }
  // A richer tool schema costs more than a bare one.
  const schema = { type: "object", properties: { city: { type: "string" } } };
  assert.ok(
    count({ ...base, tools: [{ ...tool, input_schema: schema }] }) >
      count({ ...base, tools: [tool] }),
  );
  // Each image adds the fixed estimate, whatever its size.
  const withImage = {
    ...base,
    messages: [user({ type: "text", text: "What is the weather in Paris?" }, IMAGE)],
  };
  assert.equal(count(withImage), baseCount + IMAGE_TOKENS);
});
