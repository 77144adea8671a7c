/**
 * In-process cost of the gateway's request pipeline, without sockets: the
 * app's handler against a canned upstream reply and an in-memory policy.
 * `deno run -A tests/bench/micro.ts [--requests N] [--stream] [--no-meter]`
 */
import process from "node:process";
import { parseArgs } from "node:util";
import postgres from "postgres";
import { sql } from "kysely";
import { createApp } from "../../gateway/app.ts";
import { createUsageQueue, type UsageSink } from "../../gateway/metering/usage_queue.ts";
import { createDb } from "../../schema/db.ts";
import type { NewUsageEvent } from "../../schema/database.ts";
import { migrateToLatest } from "../../migrations/mod.ts";
import type { Policy } from "../../gateway/policy/snapshot.ts";
import { generateSecret, hashSecret } from "../../schema/keys.ts";

const { values } = parseArgs({
  options: {
    requests: { type: "string", default: "20000" },
    stream: { type: "boolean", default: false },
    /** Meter into a real Postgres database (DATABASE_URL) instead of counting events. */
    postgres: { type: "boolean", default: false },
    /** A real upstream's base URL, fetched for real (default: a canned in-process reply). */
    upstream: { type: "string" },
    "idle-db": { type: "boolean", default: false },
  },
});
const hashingKey = new Uint8Array(32).fill(7);
const secret = generateSecret().secret;
const key = {
  id: "00000000-0000-4000-8000-000000000001",
  accountId: "00000000-0000-4000-8000-000000000002",
  name: "bench",
  scopes: ["inference"],
  revoked: false,
  expiresAt: null,
  allowedModels: null,
  spendLimit: null,
  allowedIps: null,
  rpmLimit: null,
  tpmLimit: null,
  previousKeyHash: null,
  previousExpiresAt: null,
};
const provider = {
  id: "00000000-0000-4000-8000-000000000003",
  name: "fake",
  kind: "openai_compat" as const,
  baseUrl: values.upstream ?? "http://upstream.invalid/v1",
  credential: "sk",
  preset: null,
};
const model = {
  id: "00000000-0000-4000-8000-000000000004",
  name: "gpt-bench",
  providerId: "00000000-0000-4000-8000-000000000003",
  upstreamName: "gpt-bench",
  prices: { input: 15_000_000n, output: 60_000_000n, cachedInput: 7_500_000n },
  maxOutputTokens: null,
  createdAt: 0,
};
const hash = hashSecret(secret, hashingKey);
const policy: Policy = {
  key: (h) => (h === hash ? key : undefined),
  account: () => ({ id: "a", active: true }),
  model: (n) => (n === model.name ? model : undefined),
  route: () => undefined,
  routes: () => [],
  provider: () => provider,
  models: () => [model],
  resync: () => Promise.resolve(),
  close: () => Promise.resolve(),
};
const completion = JSON.stringify({
  id: "chatcmpl-1",
  object: "chat.completion",
  created: 1,
  model: "gpt-bench",
  choices: [{
    index: 0,
    message: { role: "assistant", content: "Hello ".repeat(40) },
    finish_reason: "stop",
  }],
  usage: { prompt_tokens: 300, completion_tokens: 64, total_tokens: 364 },
});
const encoder = new TextEncoder();
const chunks = [
  ...Array.from(
    { length: 20 },
    (_, i) =>
      `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-bench","choices":[{"index":0,"delta":{"content":"tok${i} "},"finish_reason":null}],"usage":null}\n\n`,
  ),
  `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-bench","choices":[],"usage":{"prompt_tokens":300,"completion_tokens":20,"total_tokens":320}}\n\n`,
  "data: [DONE]\n\n",
].map((s) => encoder.encode(s));
let events = 0;
const fakeFetch: typeof fetch = (_input, init) => {
  const body = JSON.parse(String(init?.body));
  if (body.stream) {
    let i = 0;
    return Promise.resolve(
      new Response(
        new ReadableStream({
          pull(c) {
            const next = chunks[i++];
            if (next) c.enqueue(next);
            else c.close();
          },
        }),
      ),
    );
  }
  return Promise.resolve(
    new Response(completion, { headers: { "content-type": "application/json" } }),
  );
};
let sink: UsageSink = { push: () => void events++ } as never;
let cleanup = () => Promise.resolve();
if (values.postgres) {
  const admin = postgres("postgres://postgres@127.0.0.1:5432/postgres");
  const name = `tollgate_micro_${Date.now()}`;
  await admin.unsafe(`create database ${name}`);
  const db = await createDb({
    databaseUrl: `postgres://postgres@127.0.0.1:5432/${name}`,
    dataDir: "unused",
  });
  await migrateToLatest(db.db);
  await sql`set session_replication_role = replica`.execute(db.db); // no foreign keys for fake ids
  const queue = createUsageQueue(db.db, { flushMs: 200, batchSize: 500, log: console.error });
  sink = values["idle-db"] ? { push: () => void events++ } as never : {
    push: (e: NewUsageEvent) => (events++, queue.push(e)),
    flush: () => queue.flush(),
  } as never;
  cleanup = async () => {
    await queue.close();
    await db.close();
    await admin.unsafe(`drop database ${name}`);
    await admin.end();
  };
}
const app = createApp({
  policy,
  usage: sink,
  hashingKey,
  config: { maxBodyBytes: 1 << 20, upstreamTimeoutMs: 30_000, streamTimeoutMs: 120_000 },
  fetch: values.upstream ? fetch : fakeFetch,
  log: () => {},
});
const body = JSON.stringify({
  model: "gpt-bench",
  max_tokens: 64,
  stream: values.stream,
  messages: [{ role: "user", content: "x".repeat(1024) }],
});
async function once() {
  const response = await app(
    new Request("http://gw/v1/chat/completions", {
      method: "POST",
      headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
      body,
    }),
  );
  await response.arrayBuffer();
  if (response.status !== 200) throw new Error(`status ${response.status}`);
}
const n = Number(values.requests);
for (let i = 0; i < 2000; i++) await once();
const cpu0 = performance.now();
const usage0 = process.cpuUsage();
for (let i = 0; i < n; i++) await once();
const used = process.cpuUsage(usage0);
const wall = performance.now() - cpu0;
console.log(
  `${values.stream ? "stream" : "nonstream"}: ${(wall * 1000 / n).toFixed(1)} µs wall/request, ` +
    `${((used.user + used.system) / n).toFixed(1)} µs CPU/request, ${events} usage events`,
);
await cleanup();
