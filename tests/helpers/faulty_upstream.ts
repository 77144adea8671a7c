/**
 * A fault-injecting fake OpenAI upstream, written on raw TCP so that it can
 * fail the way real networks do: delay, answer 429 with Retry-After or a 5xx,
 * reset the connection before or after the first byte, cut a stream short,
 * or never answer. Each request takes the next fault from the script; when
 * the script is empty it answers normally. Every response closes its
 * connection, so one request's fault never leaks into the next.
 */

export type Fault =
  | { kind: "ok" }
  | { kind: "delay"; ms: number }
  | { kind: "status"; status: number; retryAfter?: string; message?: string }
  | { kind: "reset_before_first_byte" }
  /** Non-streaming: headers and half the body; streaming: headers and the first event. */
  | { kind: "reset_after_first_byte" }
  /** Streams `events` content events, then ends the body cleanly: no usage, no [DONE]. */
  | { kind: "truncate"; events: number }
  | { kind: "hang" };

export interface FaultyUpstream {
  /** Base URL, ending in /v1. */
  url: string;
  /** Faults for the next requests, taken in order. */
  script: Fault[];
  /** The parsed body of every request received, in order. */
  requests: Record<string, unknown>[];
  /** The answer's words; usage is 9 prompt tokens and one completion token per word. */
  words: string[];
  close(): Promise<void>;
}

const encoder = new TextEncoder();

export function startFaultyUpstream(name = "faulty"): FaultyUpstream {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.Conn>();
  const upstream: FaultyUpstream = {
    url: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}/v1`,
    script: [],
    requests: [],
    words: ["Hello", " from", ` ${name}`, "."],
    async close() {
      listener.close();
      for (const conn of open) closeQuietly(conn);
      await accepting;
    },
  };

  const accepting = (async () => {
    for await (const conn of listener) {
      open.add(conn);
      serve(conn, upstream).finally(() => {
        open.delete(conn);
        closeQuietly(conn);
      });
    }
  })().catch(() => {});
  return upstream;
}

async function serve(conn: Deno.Conn, upstream: FaultyUpstream): Promise<void> {
  const request = await readRequest(conn);
  if (!request) return;
  upstream.requests.push(request);
  const fault = upstream.script.shift() ?? { kind: "ok" };
  const stream = request.stream === true;
  const model = String(request.model);
  const write = (text: string) => conn.write(encoder.encode(text)).then(() => {});

  switch (fault.kind) {
    case "hang":
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 60_000);
        Deno.unrefTimer(timer);
      });
      return;
    case "reset_before_first_byte":
      return;
    case "status": {
      const body = JSON.stringify({
        error: { message: fault.message ?? `HTTP ${fault.status}`, type: "server_error" },
      });
      const extra = fault.retryAfter ? `Retry-After: ${fault.retryAfter}\r\n` : "";
      await write(head(fault.status, "application/json", extra, body.length) + body);
      return;
    }
    case "delay":
      await new Promise((resolve) => setTimeout(resolve, fault.ms));
      break;
  }

  if (!stream) {
    const body = JSON.stringify(completionBody(model, upstream.words));
    if (fault.kind === "reset_after_first_byte") {
      await write(head(200, "application/json", "", body.length) + body.slice(0, body.length / 2));
      return;
    }
    await write(head(200, "application/json", "", body.length) + body);
    return;
  }

  await write(head(200, "text/event-stream", "", null));
  const events = streamEvents(model, upstream.words, request);
  const limit = fault.kind === "truncate"
    ? fault.events + 1 // the role chunk, then `events` content chunks
    : fault.kind === "reset_after_first_byte"
    ? 1
    : events.length;
  for (const event of events.slice(0, limit)) {
    const data = `data: ${event}\n\n`;
    await write(`${encoder.encode(data).byteLength.toString(16)}\r\n${data}\r\n`);
  }
  if (fault.kind === "reset_after_first_byte") return; // no terminating chunk: a cut body
  await write("0\r\n\r\n");
}

function head(status: number, type: string, extra: string, length: number | null): string {
  const framing = length === null
    ? "Transfer-Encoding: chunked\r\n"
    : `Content-Length: ${length}\r\n`;
  return `HTTP/1.1 ${status} X\r\nContent-Type: ${type}\r\n${framing}${extra}Connection: close\r\n\r\n`;
}

function completionBody(model: string, words: string[]) {
  return {
    id: "chatcmpl-faulty",
    object: "chat.completion",
    created: 1_700_000_000,
    model,
    choices: [{
      index: 0,
      message: { role: "assistant", content: words.join("") },
      finish_reason: "stop",
      logprobs: null,
    }],
    usage: { prompt_tokens: 9, completion_tokens: words.length, total_tokens: 9 + words.length },
  };
}

function streamEvents(model: string, words: string[], request: Record<string, unknown>): string[] {
  const chunk = (delta: Record<string, unknown>, finish: string | null) =>
    JSON.stringify({
      id: "chatcmpl-faulty",
      object: "chat.completion.chunk",
      created: 1_700_000_000,
      model,
      choices: [{ index: 0, delta, finish_reason: finish }],
    });
  const events = [
    chunk({ role: "assistant", content: "" }, null),
    ...words.map((word) => chunk({ content: word }, null)),
    chunk({}, "stop"),
  ];
  const options = request.stream_options as { include_usage?: boolean } | undefined;
  if (options?.include_usage) {
    events.push(JSON.stringify({
      id: "chatcmpl-faulty",
      object: "chat.completion.chunk",
      created: 1_700_000_000,
      model,
      choices: [],
      usage: { prompt_tokens: 9, completion_tokens: words.length, total_tokens: 9 + words.length },
    }));
  }
  events.push("[DONE]");
  return events;
}

/** Reads one HTTP/1.1 request with a Content-Length body; null if the peer left. */
async function readRequest(conn: Deno.Conn): Promise<Record<string, unknown> | null> {
  const buffer = new Uint8Array(64 * 1024);
  let received: Uint8Array = new Uint8Array(0);
  for (;;) {
    const n = await conn.read(buffer).catch(() => null);
    if (n === null) return null;
    received = concat(received, buffer.subarray(0, n));
    const text = new TextDecoder().decode(received);
    const end = text.indexOf("\r\n\r\n");
    if (end < 0) continue;
    const length = Number(/content-length:\s*(\d+)/i.exec(text.slice(0, end))?.[1] ?? 0);
    const bodyBytes = received.subarray(encoder.encode(text.slice(0, end + 4)).byteLength);
    if (bodyBytes.byteLength < length) continue;
    return JSON.parse(new TextDecoder().decode(bodyBytes.subarray(0, length)));
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a);
  out.set(b, a.byteLength);
  return out;
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}
