/**
 * The OpenAI-dialect contract every provider adapter must keep, as reusable
 * checks: a fake upstream that replays recorded fixtures (streams split into
 * small writes), zod schemas for completions and chunks, and the reading of
 * an adapter's SSE output.
 */
import assert from "node:assert/strict";
import { createParser } from "eventsource-parser";
import { z } from "zod";
import { parseUsage } from "../../gateway/metering/usage.ts";

export const FIXTURES = new URL("../fixtures/providers/", import.meta.url);

export const Expect = z.object({
  text: z.string(),
  usage: z.object({ prompt_tokens: z.number(), completion_tokens: z.number() }),
  tool: z.object({ name: z.string(), arguments: z.record(z.string(), z.unknown()) }),
  toolUsage: z.object({ prompt_tokens: z.number(), completion_tokens: z.number() }),
});
export type Expect = z.infer<typeof Expect>;

const FinishReason = z.enum(["stop", "length", "tool_calls", "content_filter", "function_call"]);
const Usage = z.looseObject({ prompt_tokens: z.number(), completion_tokens: z.number() });

export const ChatCompletion = z.looseObject({
  object: z.literal("chat.completion"),
  choices: z.array(z.looseObject({
    index: z.number().int(),
    message: z.looseObject({
      role: z.literal("assistant"),
      content: z.string().nullish(),
      tool_calls: z.array(z.looseObject({
        id: z.string(),
        type: z.literal("function"),
        function: z.object({ name: z.string(), arguments: z.string() }),
      })).optional(),
    }),
    finish_reason: FinishReason,
  })).min(1),
  usage: Usage,
});

export const ChatChunk = z.looseObject({
  object: z.literal("chat.completion.chunk"),
  choices: z.array(z.looseObject({
    index: z.number().int(),
    delta: z.looseObject({
      role: z.literal("assistant").nullish(),
      content: z.string().nullish(),
      tool_calls: z.array(z.looseObject({
        index: z.number().int(),
        id: z.string().nullish(),
        function: z.looseObject({ name: z.string().nullish(), arguments: z.string().nullish() })
          .optional(),
      })).nullish(),
    }),
    finish_reason: FinishReason.nullish(),
  })),
  usage: Usage.nullish(),
});
export type ChatChunk = z.infer<typeof ChatChunk>;

/** A scenario the fake upstream plays: a fixture pair, an HTTP error, or a stream that hangs. */
export type Scenario =
  | { kind: "fixture"; name: "chat" | "tools" }
  | { kind: "status"; status: number; headers?: Record<string, string> }
  | { kind: "hang" };

export interface ReplayUpstream {
  url: string;
  scenario: Scenario;
  requests: { path: string; body: Record<string, unknown> }[];
  /** Resolves when a hanging stream was cancelled by the adapter's side. */
  cancelled: Promise<void>;
  close(): Promise<void>;
}

/** A local upstream that answers with the fixtures of `folder`, whatever the path. */
export function startReplayUpstream(folder: URL): ReplayUpstream {
  let onCancel = () => {};
  const fake: ReplayUpstream = {
    url: "",
    scenario: { kind: "fixture", name: "chat" },
    requests: [],
    cancelled: new Promise((resolve) => (onCancel = resolve)),
    close: () => server.shutdown(),
  };
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, async (req) => {
    const body = await req.json();
    fake.requests.push({ path: new URL(req.url).pathname, body });
    const scenario = fake.scenario;
    if (scenario.kind === "status") {
      return Response.json(
        { error: { message: `fake HTTP ${scenario.status}`, type: "fake_error" } },
        { status: scenario.status, headers: scenario.headers },
      );
    }
    if (scenario.kind === "hang") return hangingStream(folder, onCancel);
    if (body.stream !== true) {
      const text = await Deno.readTextFile(new URL(`${scenario.name}.json`, folder));
      return new Response(text, { headers: { "content-type": "application/json" } });
    }
    const bytes = await Deno.readFile(new URL(`${scenario.name}.sse`, folder));
    return new Response(inPieces(bytes, 23), { headers: { "content-type": "text/event-stream" } });
  });
  fake.url = `http://127.0.0.1:${(server.addr as Deno.NetAddr).port}/v1`;
  return fake;
}

/** The bytes in small writes, one per macrotask, so that events straddle reads. */
function inPieces(bytes: Uint8Array, size: number): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    async pull(controller) {
      if (at >= bytes.byteLength) return controller.close();
      await new Promise((resolve) => setTimeout(resolve, 0));
      controller.enqueue(bytes.slice(at, at + size));
      at += size;
    },
  });
}

/** The first event of the chat stream, then nothing until the reader goes away. */
async function hangingStream(folder: URL, onCancel: () => void): Promise<Response> {
  const text = await Deno.readTextFile(new URL("chat.sse", folder));
  const first = text.slice(0, text.indexOf("\n\n") + 2);
  let sent = false;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (!sent) {
        sent = true;
        controller.enqueue(new TextEncoder().encode(first));
      }
      return new Promise(() => {}); // never more
    },
    cancel: () => onCancel(),
  });
  return new Response(body, { headers: { "content-type": "text/event-stream" } });
}

/** A URL where nothing listens (a server that was started and shut down). */
export async function unreachableUrl(): Promise<string> {
  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen: () => {} },
    () => new Response(),
  );
  const port = (server.addr as Deno.NetAddr).port;
  await server.shutdown();
  return `http://127.0.0.1:${port}/v1`;
}

export async function readAll(body: ReadableStream<Uint8Array>): Promise<string> {
  return await new Response(body).text();
}

/** Every SSE event's data, checked: chunks that match the schema, then `[DONE]` once, last. */
export function parseChunks(sse: string): ChatChunk[] {
  const data: string[] = [];
  const parser = createParser({ onEvent: (event) => data.push(event.data) });
  parser.feed(sse);
  assert.equal(data.at(-1), "[DONE]", `the stream ends with [DONE]:\n${sse}`);
  assert.equal(data.filter((d) => d === "[DONE]").length, 1, "[DONE] comes once");
  return data.slice(0, -1).map((d) => {
    const parsed = ChatChunk.safeParse(JSON.parse(d));
    assert.ok(parsed.success, `not a chat.completion.chunk: ${d}\n${parsed.error}`);
    return parsed.data;
  });
}

/** What a client makes of the chunks: text, one tool call, finish reasons, usage. */
export function assemble(chunks: ChatChunk[]) {
  let text = "";
  const tools = new Map<number, { name: string; arguments: string }>();
  const finishes: string[] = [];
  for (const chunk of chunks) {
    for (const choice of chunk.choices) {
      text += choice.delta.content ?? "";
      for (const call of choice.delta.tool_calls ?? []) {
        const tool = tools.get(call.index) ?? { name: "", arguments: "" };
        if (call.function?.name) tool.name ||= call.function.name;
        tool.arguments += call.function?.arguments ?? "";
        tools.set(call.index, tool);
      }
      if (choice.finish_reason) finishes.push(choice.finish_reason);
    }
  }
  const usageChunks = chunks.filter((c) => c.usage);
  return { text, tools: [...tools.values()], finishes, usageChunks };
}

/** Asserts an assembled stream: one finish, one usage-only chunk last, matching `usage`. */
export function assertStreamEnd(
  chunks: ChatChunk[],
  finish: string,
  usage: Expect["usage"],
): void {
  const { finishes, usageChunks } = assemble(chunks);
  assert.deepEqual(finishes, [finish]);
  assert.equal(usageChunks.length, 1, "exactly one chunk carries usage");
  const [usageChunk] = usageChunks;
  assert.deepEqual(usageChunk!.choices, [], "the usage chunk has no choices");
  assert.equal(chunks.at(-1), usageChunk, "the usage chunk comes just before [DONE]");
  assertUsage(usageChunk!.usage, usage);
}

export function assertUsage(value: unknown, expected: Expect["usage"]): void {
  const usage = parseUsage(value);
  assert.ok(usage, `usage is readable: ${JSON.stringify(value)}`);
  assert.deepEqual(
    { prompt_tokens: usage.promptTokens, completion_tokens: usage.completionTokens },
    expected,
  );
}
