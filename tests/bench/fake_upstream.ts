/**
 * A fast fake OpenAI upstream for the bench, run as its own process so its CPU
 * can be read from /proc. Same answers as the shared bench's mock-upstream.mjs:
 * POST /v1/chat/completions gives a chat.completion with `usage`, or with
 * "stream": true an SSE stream of a role chunk, N content chunks, a finish
 * chunk, a usage chunk (choices: []) and `data: [DONE]`. GET /health answers ok;
 * GET /stats, `{"answered": N}`: the chat completions answered so far.
 *
 *   deno run -A tests/bench/fake_upstream.ts --port 0 --chunks 20 [--chunk-delay-ms 0]
 *
 * A request may override the stream's shape in its (forwarded) metadata:
 * `"metadata": { "bench_chunks": "100", "bench_chunk_delay_ms": "1" }`.
 * Prints `fake upstream listening on http://127.0.0.1:PORT/v1` once ready.
 */
import { parseArgs } from "node:util";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    port: { type: "string", default: "0" },
    chunks: { type: "string", default: "20" },
    "chunk-delay-ms": { type: "string", default: "0" },
    "delay-ms": { type: "string", default: "0" },
    "ttl-s": { type: "string", default: "3600" },
  },
});

const CHUNKS = Number(values.chunks);
const CHUNK_DELAY_MS = Number(values["chunk-delay-ms"]);
const DELAY_MS = Number(values["delay-ms"]);
const WORDS = ["The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", "."];
const PROMPT_TOKENS = 12;
const encoder = new TextEncoder();
let seq = 0;
/** Chat completions answered (a stream counts when its answer begins), for GET /stats. */
let answered = 0;

interface Shape {
  model: string;
  stream: boolean;
  chunks: number;
  chunkDelayMs: number;
}

function usage(chunks: number) {
  return {
    prompt_tokens: PROMPT_TOKENS,
    completion_tokens: chunks,
    total_tokens: PROMPT_TOKENS + chunks,
  };
}

function pieces(chunks: number): string[] {
  return Array.from({ length: chunks }, (_, i) => WORDS[i % WORDS.length]!);
}

function completionJson(shape: Shape): string {
  return JSON.stringify({
    id: `chatcmpl-bench-${++seq}`,
    object: "chat.completion",
    created: Math.floor(Date.now() / 1000),
    model: shape.model,
    system_fingerprint: "fp_bench",
    choices: [{
      index: 0,
      message: { role: "assistant", content: pieces(shape.chunks).join(""), refusal: null },
      logprobs: null,
      finish_reason: "stop",
    }],
    usage: usage(shape.chunks),
  });
}

function sseEvents(shape: Shape): Uint8Array[] {
  const id = `chatcmpl-bench-${++seq}`;
  const created = Math.floor(Date.now() / 1000);
  const event = (choices: unknown[], extra: Record<string, unknown> = {}) =>
    encoder.encode(
      `data: ${
        JSON.stringify({
          id,
          object: "chat.completion.chunk",
          created,
          model: shape.model,
          system_fingerprint: "fp_bench",
          choices,
          ...extra,
        })
      }\n\n`,
    );
  const delta = (d: Record<string, unknown>, finish: string | null = null) => ({
    index: 0,
    delta: d,
    logprobs: null,
    finish_reason: finish,
  });
  return [
    event([delta({ role: "assistant", content: "" })]),
    ...pieces(shape.chunks).map((p) => event([delta({ content: p })])),
    event([delta({}, "stop")]),
    event([], { usage: usage(shape.chunks) }),
    encoder.encode("data: [DONE]\n\n"),
  ];
}

function readShape(text: string): Shape | null {
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(text || "{}");
  } catch {
    return null;
  }
  const meta = (body.metadata ?? {}) as Record<string, unknown>;
  const chunks = Number(meta.bench_chunks ?? CHUNKS);
  const delay = Number(meta.bench_chunk_delay_ms ?? CHUNK_DELAY_MS);
  return {
    model: typeof body.model === "string" ? body.model : "bench-model",
    stream: body.stream === true,
    chunks: Number.isInteger(chunks) && chunks >= 0 ? chunks : CHUNKS,
    chunkDelayMs: Number.isFinite(delay) && delay >= 0 ? delay : CHUNK_DELAY_MS,
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function streamBody(events: Uint8Array[], delayMs: number): ReadableStream<Uint8Array> {
  if (delayMs <= 0) {
    return new ReadableStream({
      start(controller) {
        for (const e of events) controller.enqueue(e);
        controller.close();
      },
    });
  }
  let i = 0;
  return new ReadableStream({
    async pull(controller) {
      if (i > 0) await sleep(delayMs);
      controller.enqueue(events[i++]!);
      if (i === events.length) controller.close();
    },
  });
}

const JSON_HEADERS = { "content-type": "application/json" };
const SSE_HEADERS = { "content-type": "text/event-stream", "cache-control": "no-cache" };

async function handle(request: Request): Promise<Response> {
  const path = new URL(request.url).pathname;
  if (request.method === "GET" && path === "/health") return new Response("ok");
  if (request.method === "GET" && path === "/stats") {
    return new Response(JSON.stringify({ answered }), { headers: JSON_HEADERS });
  }
  if (request.method !== "POST" || !path.endsWith("/chat/completions")) {
    return new Response('{"error":{"message":"not found"}}', { status: 404 });
  }
  const shape = readShape(await request.text());
  if (!shape) {
    return new Response('{"error":{"message":"bad json","type":"invalid_request_error"}}', {
      status: 400,
      headers: JSON_HEADERS,
    });
  }
  if (DELAY_MS > 0) await sleep(DELAY_MS);
  answered++;
  if (!shape.stream) return new Response(completionJson(shape), { headers: JSON_HEADERS });
  return new Response(streamBody(sseEvents(shape), shape.chunkDelayMs), { headers: SSE_HEADERS });
}

const server = Deno.serve({
  hostname: "127.0.0.1",
  port: Number(values.port),
  onListen: ({ port }) => console.log(`fake upstream listening on http://127.0.0.1:${port}/v1`),
}, handle);
// A leftover (the orchestrator was killed hard) goes away by itself.
setTimeout(() => server.shutdown().then(() => Deno.exit(0)), Number(values["ttl-s"]) * 1000);
