/**
 * One provider contract, run against every adapter: each folder under
 * tests/fixtures/providers/ (the vendor's recorded answers, replayed by a
 * local fake upstream) and the offline mock. Adapters are built the way the
 * gateway builds them, through createProviderRegistry.
 */
import assert from "node:assert/strict";
import { GatewayError } from "../../gateway/errors.ts";
import { countTokens, loadTokenizer } from "../../gateway/metering/tokens.ts";
import type { ProviderPolicy } from "../../gateway/policy/snapshot.ts";
import { createProviderRegistry, type Provider } from "../../gateway/providers/mod.ts";
import {
  assemble,
  assertStreamEnd,
  assertUsage,
  ChatCompletion,
  Expect,
  FIXTURES,
  parseChunks,
  readAll,
  type ReplayUpstream,
  startReplayUpstream,
  unreachableUrl,
} from "./contract.ts";

const registry = createProviderRegistry({ fetch });

const CHAT = { model: "contract-model", messages: [{ role: "user", content: "Hello!" }] };
const TOOLS = {
  model: "contract-model",
  messages: [{ role: "user", content: "What is the weather in Paris?" }],
  tools: [{
    type: "function",
    function: {
      name: "get_weather",
      description: "The current weather in a city",
      parameters: {
        type: "object",
        properties: { location: { type: "string" } },
        required: ["location"],
      },
    },
  }],
};
const STREAM = { stream: true, stream_options: { include_usage: true } };

function policy(name: string, baseUrl: string | null): ProviderPolicy {
  const anthropic = name === "anthropic";
  return {
    id: `contract-${name}`,
    name,
    kind: anthropic ? "anthropic" : "openai_compat",
    baseUrl,
    credential: "sk-contract",
    preset: anthropic ? null : name,
  };
}

async function send(provider: Provider, body: Record<string, unknown>, signal?: AbortSignal) {
  const stream = body.stream === true;
  return await provider.send({
    op: "chat",
    body,
    stream,
    signal: signal ?? new AbortController().signal,
  });
}

async function completion(provider: Provider, body: Record<string, unknown>) {
  const reply = await send(provider, body);
  assert.equal(reply.stream, false);
  if (reply.stream) throw new Error("unreachable");
  assert.deepEqual(JSON.parse(reply.text), reply.json, "the text sent on is the JSON metered");
  const parsed = ChatCompletion.safeParse(reply.json);
  assert.ok(parsed.success, `not a chat.completion: ${reply.text}\n${parsed.error}`);
  return parsed.data;
}

async function streamed(provider: Provider, body: Record<string, unknown>) {
  const reply = await send(provider, { ...body, ...STREAM });
  assert.equal(reply.stream, true);
  if (!reply.stream) throw new Error("unreachable");
  return parseChunks(await readAll(reply.body));
}

async function failure(provider: Provider, stream: boolean): Promise<GatewayError> {
  try {
    const reply = await send(provider, stream ? { ...CHAT, ...STREAM } : CHAT);
    if (reply.stream) await reply.body.cancel();
  } catch (error) {
    assert.ok(error instanceof GatewayError, `a GatewayError, not ${error}`);
    return error;
  }
  throw new assert.AssertionError({ message: "the upstream failure was not thrown" });
}

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function fixtureFolders(): string[] {
  return [...Deno.readDirSync(FIXTURES)]
    .filter((entry) => entry.isDirectory && entry.name !== "mock")
    .map((entry) => entry.name)
    .sort();
}

for (const name of fixtureFolders()) {
  Deno.test(`provider contract: ${name} (recorded fixtures)`, async (t) => {
    const folder = new URL(`${name}/`, FIXTURES);
    const expect = Expect.parse(
      JSON.parse(await Deno.readTextFile(new URL("expect.json", folder))),
    );
    const fake = startReplayUpstream(folder);
    const provider = registry(policy(name, fake.url));
    const play = (scenario: ReplayUpstream["scenario"]) => (fake.scenario = scenario);
    try {
      await t.step("serves chat", () => assert.ok(provider.supports("chat")));

      await t.step("a completion is a chat.completion with the answer and its usage", async () => {
        play({ kind: "fixture", name: "chat" });
        const reply = await completion(provider, CHAT);
        assert.equal(reply.choices[0]!.message.content, expect.text);
        assert.equal(reply.choices[0]!.finish_reason, "stop");
        assertUsage(reply.usage, expect.usage);
      });

      await t.step("a stream reassembles to the answer and ends with one usage chunk", async () => {
        play({ kind: "fixture", name: "chat" });
        const chunks = await streamed(provider, CHAT);
        assert.equal(assemble(chunks).text, expect.text);
        assertStreamEnd(chunks, "stop", expect.usage);
      });

      await t.step("a tool call comes back whole, with finish_reason tool_calls", async () => {
        play({ kind: "fixture", name: "tools" });
        const reply = await completion(provider, TOOLS);
        const calls = reply.choices[0]!.message.tool_calls ?? [];
        assert.equal(calls.length, 1);
        assert.equal(calls[0]!.function.name, expect.tool.name);
        assert.deepEqual(JSON.parse(calls[0]!.function.arguments), expect.tool.arguments);
        assert.equal(reply.choices[0]!.finish_reason, "tool_calls");
        assertUsage(reply.usage, expect.toolUsage);
      });

      await t.step("a streamed tool call reassembles from its deltas", async () => {
        play({ kind: "fixture", name: "tools" });
        const chunks = await streamed(provider, TOOLS);
        const { tools } = assemble(chunks);
        assert.equal(tools.length, 1);
        assert.equal(tools[0]!.name, expect.tool.name);
        assert.deepEqual(JSON.parse(tools[0]!.arguments), expect.tool.arguments);
        assertStreamEnd(chunks, "tool_calls", expect.toolUsage);
      });

      await t.step("429 with Retry-After is a retryable 429 that keeps the pause", async () => {
        for (const stream of [false, true]) {
          play({ kind: "status", status: 429, headers: { "retry-after": "3" } });
          const error = await failure(provider, stream);
          assert.equal(error.status, 429);
          assert.equal(error.retryable, true);
          assert.equal(error.retryAfter, 3);
        }
      });

      await t.step("500 is a retryable 502; 400 a final 400; 401 a final 502", async () => {
        const cases = [[500, 502, true], [400, 400, false], [401, 502, false]] as const;
        for (const [upstream, status, retryable] of cases) {
          play({ kind: "status", status: upstream });
          const error = await failure(provider, false);
          assert.deepEqual(
            [error.status, error.retryable],
            [status, retryable],
            `HTTP ${upstream}`,
          );
        }
      });

      await t.step("an unreachable upstream is a retryable 502", async () => {
        const gone = registry(policy(name, await unreachableUrl()));
        const error = await failure(gone, false);
        assert.deepEqual([error.status, error.retryable], [502, true]);
      });

      await t.step("aborting the signal cancels the upstream request", async () => {
        play({ kind: "hang" });
        const controller = new AbortController();
        const reply = await send(provider, { ...CHAT, ...STREAM }, controller.signal);
        assert.ok(reply.stream);
        const reader = reply.body.getReader();
        assert.equal((await reader.read()).done, false, "the first event arrives");
        controller.abort();
        await reader.read().catch(() => {}); // errors (or ends) once aborted
        await within(fake.cancelled, 2000, "the upstream seeing the request go");
        await reader.cancel().catch(() => {});
      });
    } finally {
      await fake.close();
    }
  });
}

Deno.test("provider contract: mock (offline, no fixtures)", async (t) => {
  await loadTokenizer();
  const provider = registry({
    id: "contract-mock",
    name: "mock",
    kind: "mock",
    baseUrl: null,
    credential: null,
    preset: null,
  });
  let answer = "";
  let usage = { prompt_tokens: 0, completion_tokens: 0 };

  await t.step("a completion has content and consistent usage", async () => {
    const reply = await completion(provider, CHAT);
    answer = reply.choices[0]!.message.content ?? "";
    assert.ok(answer.length > 0);
    const { prompt_tokens, completion_tokens, total_tokens } = reply.usage as {
      prompt_tokens: number;
      completion_tokens: number;
      total_tokens: number;
    };
    assert.ok(prompt_tokens > 0);
    assert.equal(completion_tokens, countTokens(answer));
    assert.equal(total_tokens, prompt_tokens + completion_tokens);
    usage = { prompt_tokens, completion_tokens };
  });

  await t.step("a stream has the same answer, then one usage chunk, then [DONE]", async () => {
    const chunks = await streamed(provider, CHAT);
    assert.equal(assemble(chunks).text, answer);
    assertStreamEnd(chunks, "stop", usage);
  });

  await t.step("aborting the signal ends the stream", async () => {
    const controller = new AbortController();
    const reply = await send(provider, { ...CHAT, ...STREAM }, controller.signal);
    assert.ok(reply.stream);
    const reader = reply.body.getReader();
    await reader.read();
    controller.abort();
    // What was already queued may still come; the stream must not end normally.
    const rest = async () => {
      while (!(await reader.read()).done);
    };
    await assert.rejects(rest());
  });
});
