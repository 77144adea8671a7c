/**
 * Load through wrk (closed loop, one thread): a Lua script sets the POST body
 * and prints the result as one parseable `RESULT k=v ...` line.
 */
import { runCommand } from "./processes.ts";

export interface RequestShape {
  model: string;
  stream: boolean;
  promptBytes: number;
  maxTokens: number;
  /** Sent as `metadata` (the fake reads bench_chunks / bench_chunk_delay_ms from it). */
  metadata?: Record<string, string>;
}

/** The same chat request as the shared bench: a system prompt and a filler user message. */
export function requestBody(shape: RequestShape): string {
  const filler = "lorem ipsum dolor sit amet ".repeat(Math.ceil(shape.promptBytes / 27))
    .slice(0, shape.promptBytes);
  return JSON.stringify({
    model: shape.model,
    ...(shape.stream ? { stream: true, stream_options: { include_usage: true } } : {}),
    max_tokens: shape.maxTokens,
    ...(shape.metadata ? { metadata: shape.metadata } : {}),
    messages: [
      { role: "system", content: "You are a helpful assistant." },
      { role: "user", content: filler },
    ],
  });
}

export interface WrkRun {
  /** The endpoint, e.g. http://127.0.0.1:1234/v1/chat/completions. */
  url: string;
  key: string;
  body: string;
  connections: number;
  seconds: number;
  /** Folder for the Lua scripts. */
  dir: string;
}

export interface WrkResult {
  requests: number;
  seconds: number;
  rps: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Socket errors plus non-2xx answers. */
  errors: number;
}

/** Null when wrk is on PATH; otherwise how to install it. */
export async function wrkMissing(): Promise<string | null> {
  try {
    await runCommand("wrk", ["-v"], 5_000);
    return null;
  } catch {
    return "wrk is not installed: apt-get update && apt-get install -y wrk (Debian/Ubuntu), " +
      "brew install wrk (macOS), or build it from https://github.com/wg/wrk";
  }
}

const DONE = `
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d errors=%d\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect + e.read + e.write + e.status + e.timeout))
end
`;

let scripts = 0;

export async function runWrk(run: WrkRun): Promise<WrkResult> {
  const lua = `${run.dir}/wrk-${++scripts}.lua`;
  if (run.body.includes("]==]")) throw new Error("Cannot embed the request body in Lua");
  await Deno.writeTextFile(lua, `wrk.method = "POST"\nwrk.body = [==[${run.body}]==]\n${DONE}`);
  const args = [
    "-t1",
    `-c${run.connections}`,
    `-d${run.seconds}s`,
    "--timeout",
    "10s",
    "-s",
    lua,
    "-H",
    "Content-Type: application/json",
    "-H",
    `Authorization: Bearer ${run.key}`,
    run.url,
  ];
  const out = await runCommand("wrk", args, (run.seconds + 30) * 1000);
  const line = out.stdout.split("\n").find((l) => l.startsWith("RESULT "));
  if (!line) {
    throw new Error(`Cannot read wrk's result for ${run.url}: ${out.stderr || out.stdout}`);
  }
  const kv = Object.fromEntries(
    line.slice(7).split(" ").map((pair) => pair.split("=") as [string, string]),
  );
  const n = (key: string) => Number(kv[key] ?? NaN);
  const seconds = n("duration_us") / 1e6;
  return {
    requests: n("requests"),
    seconds,
    rps: n("requests") / seconds,
    p50Ms: n("p50_us") / 1000,
    p90Ms: n("p90_us") / 1000,
    p99Ms: n("p99_us") / 1000,
    maxMs: n("max_us") / 1000,
    errors: n("errors"),
  };
}
