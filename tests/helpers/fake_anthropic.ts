/**
 * A fake Anthropic Messages API on 127.0.0.1 that records what it was sent
 * (path, headers, the body as sent and parsed) and answers as each test sets:
 * a Message, its stream, or an Anthropic error. The builders write bodies the
 * way Anthropic does, so that a test can compare what a client received with
 * what the upstream sent, byte for byte.
 */

type Json = Record<string, unknown>;

export interface FakeAnthropic {
  /** Base URL, ending in /v1. */
  url: string;
  requests: { path: string; headers: Headers; text: string; body: Json }[];
  reply: (body: Json, request: Request) => Response | Promise<Response>;
  close(): Promise<void>;
}

export interface AnthropicUsage {
  input_tokens: number;
  output_tokens: number;
  cache_creation_input_tokens: number;
  cache_read_input_tokens: number;
}

export interface MessageOptions {
  model?: string;
  /** Content blocks; one text block of FAKE_ANTHROPIC_TEXT by default. */
  content?: Json[];
  stopReason?: string;
  stopSequence?: string | null;
  usage?: Partial<AnthropicUsage>;
}

export const FAKE_ANTHROPIC_TEXT = "Hello from the fake Anthropic.";

/** Answers with messageStream(body) or anthropicMessage(body) until a test sets `reply`. */
export function startFakeAnthropic(): FakeAnthropic {
  const fake: FakeAnthropic = {
    url: "",
    requests: [],
    reply: (body) => {
      const options = { model: String(body.model) };
      return body.stream
        ? sseResponse(messageStream(options))
        : Response.json(anthropicMessage(options));
    },
    close: () => server.shutdown(),
  };
  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen: () => {} },
    async (request) => {
      const text = await request.text();
      const body = JSON.parse(text);
      fake.requests.push({
        path: new URL(request.url).pathname,
        headers: request.headers,
        text,
        body,
      });
      return fake.reply(body, request);
    },
  );
  fake.url = `http://127.0.0.1:${(server.addr as Deno.NetAddr).port}/v1`;
  return fake;
}

export function anthropicMessage(options: MessageOptions = {}): Json {
  return {
    id: "msg_fake01",
    type: "message",
    role: "assistant",
    model: options.model ?? "claude-sonnet-4-5-20250929",
    content: options.content ?? [{ type: "text", text: FAKE_ANTHROPIC_TEXT }],
    stop_reason: options.stopReason ?? "end_turn",
    stop_sequence: options.stopSequence ?? null,
    usage: fullUsage(options.usage),
  };
}

/**
 * The SSE text of anthropicMessage(options) as Anthropic streams it: input
 * usage on message_start, a ping, each block started, delta'd in pieces
 * (tool input as partial JSON) and stopped, then the stop reason and the
 * output tokens on message_delta.
 */
export function messageStream(options: MessageOptions = {}): string {
  const message = anthropicMessage(options);
  const usage = message.usage as AnthropicUsage;
  const events: [string, Json][] = [[
    "message_start",
    {
      type: "message_start",
      message: {
        ...message,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: { ...usage, output_tokens: 1 },
      },
    },
  ]];
  events.push(["ping", { type: "ping" }]);
  (message.content as Json[]).forEach((block, index) => {
    const isTool = block.type === "tool_use";
    const start = isTool ? { ...block, input: {} } : { ...block, text: "" };
    events.push(["content_block_start", {
      type: "content_block_start",
      index,
      content_block: start,
    }]);
    const whole = isTool ? JSON.stringify(block.input) : String(block.text);
    for (const piece of pieces(whole, 5)) {
      const delta = isTool
        ? { type: "input_json_delta", partial_json: piece }
        : { type: "text_delta", text: piece };
      events.push(["content_block_delta", { type: "content_block_delta", index, delta }]);
    }
    events.push(["content_block_stop", { type: "content_block_stop", index }]);
  });
  events.push([
    "message_delta",
    {
      type: "message_delta",
      delta: { stop_reason: message.stop_reason, stop_sequence: message.stop_sequence },
      usage: { output_tokens: usage.output_tokens },
    },
  ]);
  events.push(["message_stop", { type: "message_stop" }]);
  return events.map(([name, data]) => `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`).join("");
}

/**
 * An SSE body sent in pieces of `pieceBytes`, so that events straddle reads;
 * with `endAfter`, the body ends cleanly after that many bytes, as an
 * upstream that stops mid-answer does.
 */
export function sseResponse(
  text: string,
  options: { pieceBytes?: number; endAfter?: number } = {},
): Response {
  const bytes = new TextEncoder().encode(text).slice(0, options.endAfter);
  const size = options.pieceBytes ?? 16;
  let at = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (at >= bytes.length) return controller.close();
      controller.enqueue(bytes.slice(at, at += size));
    },
  });
  return new Response(body, { headers: { "content-type": "text/event-stream" } });
}

/** An Anthropic error answer: `{type:"error", error:{type,message}}`. */
export function anthropicError(
  status: number,
  type: string,
  message: string,
  headers: Record<string, string> = {},
): Response {
  return Response.json({ type: "error", error: { type, message } }, { status, headers });
}

function fullUsage(usage: Partial<AnthropicUsage> = {}): AnthropicUsage {
  return {
    input_tokens: 12,
    cache_creation_input_tokens: 0,
    cache_read_input_tokens: 0,
    output_tokens: 10,
    ...usage,
  };
}

function pieces(text: string, size: number): string[] {
  const out: string[] = [];
  for (let at = 0; at < text.length; at += size) out.push(text.slice(at, at + size));
  return out;
}
