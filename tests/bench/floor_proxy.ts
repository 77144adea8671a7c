/**
 * The floor for the bench: a bare Deno pass-through "gateway" (the same as the
 * shared bench's floor-proxy.ts). A fixed-key check, a JSON parse of the
 * request, fetch to the upstream; non-stream answers are parsed for `usage`,
 * streams go through a TransformStream that keeps the tail and reads the
 * usage chunk at the end. No policy, no database. Not a product.
 *
 *   deno run -A tests/bench/floor_proxy.ts --upstream http://127.0.0.1:PORT/v1 [--port 0]
 *     [--key sk-bench] [--tap 1]   (tap 0: pipe the SSE body untouched)
 *
 * Prints `floor proxy listening on http://127.0.0.1:PORT/v1` once ready.
 */
import { parseArgs } from "node:util";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    port: { type: "string", default: "0" },
    upstream: { type: "string" },
    key: { type: "string", default: "sk-bench" },
    tap: { type: "string", default: "1" },
    "ttl-s": { type: "string", default: "3600" },
  },
});
const upstream = (values.upstream ?? "").replace(/\/+$/, "");
if (!/^http:\/\/127\.\d+\.\d+\.\d+(:\d+)?(\/.*)?$/.test(upstream)) {
  console.error(`Cannot use --upstream "${upstream}": a loopback http:// URL is required`);
  Deno.exit(2);
}
const AUTH = `Bearer ${values.key}`;
const TAP = values.tap !== "0";
const SSE_HEADERS = { "content-type": "text/event-stream", "cache-control": "no-cache" };
let usageSeen = 0;

function record(usage: unknown) {
  if (usage && typeof usage === "object") usageSeen++;
}

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}

function usageTap(): TransformStream<Uint8Array, Uint8Array> {
  const decoder = new TextDecoder();
  let tail = "";
  return new TransformStream({
    transform(chunk, controller) {
      tail = (tail + decoder.decode(chunk, { stream: true })).slice(-2048);
      controller.enqueue(chunk);
    },
    flush() {
      const i = tail.lastIndexOf('"usage":');
      const match = i >= 0 ? tail.slice(i + 8).match(/^\{[^}]*\}/) : null;
      if (!match) return;
      try {
        record(JSON.parse(match[0]));
      } catch { /* not the usage chunk */ }
    },
  });
}

async function handle(request: Request): Promise<Response> {
  const path = new URL(request.url).pathname;
  if (path === "/health") return new Response("ok");
  if (path === "/stats") return json(200, { usageSeen });
  if (request.method !== "POST" || path !== "/v1/chat/completions") {
    return json(404, { error: { message: "not found" } });
  }
  if (request.headers.get("authorization") !== AUTH) {
    return json(401, { error: { message: "invalid api key" } });
  }
  const text = await request.text();
  let stream = false;
  try {
    stream = JSON.parse(text).stream === true;
  } catch {
    return json(400, { error: { message: "bad json" } });
  }
  const reply = await fetch(`${upstream}/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: "Bearer sk-upstream" },
    body: text,
  });
  if (!stream || !reply.body) {
    const answer = await reply.text();
    try {
      record(JSON.parse(answer).usage);
    } catch { /* a non-JSON error body */ }
    return new Response(answer, {
      status: reply.status,
      headers: { "content-type": reply.headers.get("content-type") ?? "application/json" },
    });
  }
  const body = TAP ? reply.body.pipeThrough(usageTap()) : reply.body;
  return new Response(body, { status: reply.status, headers: SSE_HEADERS });
}

const server = Deno.serve({
  hostname: "127.0.0.1",
  port: Number(values.port),
  onListen: ({ port }) => console.log(`floor proxy listening on http://127.0.0.1:${port}/v1`),
}, handle);
setTimeout(() => server.shutdown().then(() => Deno.exit(0)), Number(values["ttl-s"]) * 1000);
