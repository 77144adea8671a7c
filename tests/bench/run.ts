/**
 * `deno task bench`: what the gateway adds on top of a local fake upstream,
 * with metering on. Starts the fake upstream, a bare Deno pass-through proxy
 * (the floor) and the gateway (on a fresh Postgres database, or --pglite),
 * each as its own process, drives wrk against all three for each mode and
 * concurrency, and compares the gateway with the targets. Loopback only.
 *
 *   deno task bench [--duration 10] [--warmup 2] [--conc 1,32] [--modes nonstream,stream]
 *     [--chunks 20] [--pglite] [--json] [--cpu-prof DIR] ...   (--help lists all)
 */
import { parseArgs } from "node:util";
import { prepareDatabase } from "./database.ts";
import { summariseProfiles } from "./profile.ts";
import { type Child, cpuMs, loadClockTicks, memoryMb, startDeno, stopAll } from "./processes.ts";
import {
  type EventRow,
  formatReport,
  type LoadRow,
  type Mode,
  type Results,
  type TargetName,
  TARGETS,
} from "./report.ts";
import { describeMachine, sanityCheck, startGateway } from "./targets.ts";
import { probeTtfb } from "./ttfb.ts";
import { requestBody, runWrk, wrkMissing } from "./wrk.ts";

const USAGE = `deno task bench [options]
  --duration 10        seconds per measured run       --warmup 2   unmeasured seconds before each
  --conc 1,32          connections                    --modes nonstream,stream
  --chunks 20          content chunks per stream      --prompt-bytes 1024  --max-tokens 64
  --ttfb 200           c=1 streamed requests per target for the TTFB probe (0 = skip)
  --event-chunks 10,100  --event-conc 8  --event-seconds 4   CPU-per-event runs (--event-chunks 0 = skip)
  --pglite             gateway on the embedded database instead of Postgres
  --database-url URL   Postgres server for the fresh bench database
                       (default $DATABASE_URL or postgres://postgres@127.0.0.1:5432/postgres)
  --cpu-prof DIR       profile the gateway (V8 --cpu-prof) and list its top self-time functions
  --floor-tap 1        the floor's SSE stage: 0 pipes the body untouched, 1 reads usage in a TransformStream
  --gateway-flags F    extra \`deno run\` flags for the gateway, e.g. "--v8-flags=--max-old-space-size=64"
  --json               print the results as JSON instead of tables`;

const { values: opts } = parseArgs({
  args: Deno.args,
  options: {
    duration: { type: "string", default: "10" },
    warmup: { type: "string", default: "2" },
    conc: { type: "string", default: "1,32" },
    modes: { type: "string", default: "nonstream,stream" },
    chunks: { type: "string", default: "20" },
    "prompt-bytes": { type: "string", default: "1024" },
    "max-tokens": { type: "string", default: "64" },
    ttfb: { type: "string", default: "200" },
    "event-chunks": { type: "string", default: "10,100" },
    "event-conc": { type: "string", default: "8" },
    "event-seconds": { type: "string", default: "4" },
    pglite: { type: "boolean", default: false },
    "database-url": { type: "string" },
    "cpu-prof": { type: "string" },
    "gateway-flags": { type: "string", default: "" },
    "floor-tap": { type: "string", default: "1" },
    json: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (opts.help) {
  console.log(USAGE);
  Deno.exit(0);
}

const num = (name: keyof typeof opts, min = 0) => {
  const value = Number(opts[name]);
  if (!Number.isFinite(value) || value < min) fail(`--${name} "${opts[name]}": must be >= ${min}`);
  return value;
};
const list = (name: keyof typeof opts) => String(opts[name]).split(",").filter(Boolean);
const duration = num("duration", 1);
const warmup = num("warmup");
const concs = list("conc").map(Number);
const modes = list("modes") as Mode[];
const chunks = num("chunks");
const promptBytes = num("prompt-bytes");
const maxTokens = num("max-tokens", 1);
const ttfbRequests = num("ttfb");
const eventChunks = list("event-chunks").map(Number).filter((n) => n > 0);
const eventConc = num("event-conc", 1);
const eventSeconds = num("event-seconds", 1);
if (concs.some((c) => !Number.isInteger(c) || c < 1)) fail(`--conc "${opts.conc}": integers >= 1`);
if (modes.some((m) => m !== "nonstream" && m !== "stream")) {
  fail(`--modes "${opts.modes}": nonstream and/or stream`);
}
if (eventChunks.length !== 0 && eventChunks.length !== 2) {
  fail(`--event-chunks "${opts["event-chunks"]}": two chunk counts, or 0 to skip`);
}
const MODEL = "gpt-4o-mini";
const FLOOR_KEY = "sk-bench";

function fail(message: string): never {
  console.error(`bench: ${message}`);
  Deno.exit(2);
}
const progress = (message: string) => console.error(`# ${message}`);

let interrupted = false;
let cleaning: Promise<void> | undefined;
const cleanups: (() => Promise<void>)[] = [];
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    await stopAll();
    for (const step of cleanups.reverse()) await step().catch((e) => console.error(e));
  })();
  return cleaning;
}
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, () => {
    interrupted = true;
    progress(`${signal}: stopping`);
    cleanup().finally(() => Deno.exit(130));
  });
}

async function main(): Promise<Results> {
  if (Deno.build.os !== "linux") fail("needs Linux (CPU and memory are read from /proc)");
  const missing = await wrkMissing();
  if (missing) fail(missing);
  await loadClockTicks();
  const workDir = await Deno.makeTempDir({ prefix: "tollgate-bench-run-" });
  cleanups.push(() => Deno.remove(workDir, { recursive: true }));

  const fake = await startDeno("fake upstream", [
    "-A",
    "tests/bench/fake_upstream.ts",
    "--chunks",
    String(chunks),
  ], { ready: /listening on (http:\/\/\S+?)\/v1/ });
  progress(`fake upstream ${fake.url} (pid ${fake.pid})`);
  const adminUrl = opts["database-url"] ?? (Deno.env.get("DATABASE_URL") ||
    "postgres://postgres@127.0.0.1:5432/postgres");
  const database = await prepareDatabase({
    pglite: opts.pglite,
    adminUrl,
    upstreamUrl: `${fake.url}/v1`,
    model: MODEL,
  });
  cleanups.push(() => database.drop());
  const floor = await startDeno("floor proxy", [
    "-A",
    "tests/bench/floor_proxy.ts",
    "--upstream",
    `${fake.url}/v1`,
    "--key",
    FLOOR_KEY,
    "--tap",
    opts["floor-tap"],
  ], { ready: /listening on (http:\/\/\S+?)\/v1/ });
  progress(`floor proxy ${floor.url} (pid ${floor.pid})`);
  const profDir = opts["cpu-prof"];
  if (profDir) await Deno.mkdir(profDir, { recursive: true });
  const gateway = await startGateway(database.env, [
    ...(profDir ? ["--cpu-prof", `--cpu-prof-dir=${await Deno.realPath(profDir)}`] : []),
    ...opts["gateway-flags"].split(" ").filter(Boolean),
  ]);
  progress(`gateway ${gateway.url} (pid ${gateway.pid}, ${opts.pglite ? "PGlite" : "Postgres"})`);

  const targets: Record<TargetName, { child: Child; key: string }> = {
    direct: { child: fake, key: "sk-direct" },
    floor: { child: floor, key: FLOOR_KEY },
    gateway: { child: gateway, key: database.apiKey },
  };
  const endpoint = (t: TargetName) => `${targets[t].child.url}/v1/chat/completions`;
  const body = (stream: boolean, metadata?: Record<string, string>) =>
    requestBody({ model: MODEL, stream, promptBytes, maxTokens, metadata });
  let gatewayRequests = 0;
  for (const t of TARGETS) {
    const check = { url: endpoint(t), key: targets[t].key, plain: body(false), sse: body(true) };
    await sanityCheck(t, check);
    if (t === "gateway") gatewayRequests += 2;
  }
  await sleep(1000);
  const memory = {
    idleStartMb: memoryMb(gateway.pid).rss,
    idleEndMb: NaN,
    peakMb: NaN,
    floorIdleMb: memoryMb(floor.pid).rss,
  };

  const load = async (t: TargetName, b: string, conc: number, seconds: number, warm: number) => {
    const run = { url: endpoint(t), key: targets[t].key, body: b, connections: conc, dir: workDir };
    if (warm > 0) {
      const w = await runWrk({ ...run, seconds: warm });
      if (t === "gateway") gatewayRequests += w.requests;
    }
    const pid = targets[t].child.pid;
    const [cpu0, fake0] = [cpuMs(pid), cpuMs(fake.pid)];
    const result = await runWrk({ ...run, seconds });
    const [cpu1, fake1] = [cpuMs(pid), cpuMs(fake.pid)];
    if (t === "gateway") gatewayRequests += result.requests;
    if (result.errors) progress(`${t}: ${result.errors} errors or non-2xx answers`);
    return {
      result,
      cpuMsPerReq: (cpu1 - cpu0) / result.requests,
      cores: (cpu1 - cpu0) / 1000 / result.seconds,
      fakeCpuMsPerReq: (fake1 - fake0) / result.requests,
    };
  };

  const rows: LoadRow[] = [];
  for (const mode of modes) {
    for (const conc of concs) {
      for (const t of TARGETS) {
        progress(`${mode} c=${conc} ${t}`);
        const m = await load(t, body(mode === "stream"), conc, duration, warmup);
        rows.push({
          target: t,
          mode,
          conc,
          rps: m.result.rps,
          p50Ms: m.result.p50Ms,
          p99Ms: m.result.p99Ms,
          errors: m.result.errors,
          cpuMsPerReq: m.cpuMsPerReq,
          cores: m.cores,
          fakeCpuMsPerReq: m.fakeCpuMsPerReq,
          rssMb: memoryMb(targets[t].child.pid).rss,
        });
      }
    }
  }

  const ttfb: Results["ttfb"] = {};
  if (modes.includes("stream") && ttfbRequests > 0) {
    for (const t of TARGETS) {
      progress(`TTFB probe ${t}`);
      ttfb[t] = await probeTtfb({
        url: endpoint(t),
        key: targets[t].key,
        body: body(true),
        requests: ttfbRequests,
      });
      if (t === "gateway") gatewayRequests += ttfb[t].n + 10;
    }
  }

  const events: EventRow[] = [];
  const usPerEvent: Results["usPerEvent"] = {};
  if (modes.includes("stream") && eventChunks.length === 2) {
    for (const t of ["floor", "gateway"] as const) {
      for (const n of eventChunks) {
        progress(`CPU per event: ${t} with ${n} chunks`);
        const b = body(true, { bench_chunks: String(n), bench_chunk_delay_ms: "1" });
        const m = await load(t, b, eventConc, eventSeconds, 1);
        events.push({
          target: t,
          chunks: n,
          rps: m.result.rps,
          errors: m.result.errors,
          cpuMsPerReq: m.cpuMsPerReq,
        });
      }
      const [lo, hi] = events.filter((e) => e.target === t);
      usPerEvent[t] = ((hi!.cpuMsPerReq - lo!.cpuMsPerReq) / (hi!.chunks - lo!.chunks)) * 1000;
    }
  }

  await sleep(1500); // lets the usage queue flush and the heap settle
  const end = memoryMb(gateway.pid);
  memory.idleEndMb = end.rss;
  memory.peakMb = end.peak;
  // The queue may still be writing what the last run left: wait (up to 30 s) until it is done.
  let usageEvents = await database.usageEvents();
  for (
    let waited = 0;
    usageEvents !== null && usageEvents < gatewayRequests && waited < 30;
    waited++
  ) {
    await sleep(1000);
    usageEvents = await database.usageEvents();
  }
  if (opts["cpu-prof"]) await gateway.stop();

  return {
    settings: {
      db: opts.pglite ? "pglite" : "postgres",
      duration,
      warmup,
      conc: concs.join(","),
      modes: modes.join(","),
      chunks,
      promptBytes,
      maxTokens,
      eventConc,
      eventChunks: eventChunks.join(","),
      ...(opts["gateway-flags"] ? { gatewayFlags: opts["gateway-flags"] } : {}),
    },
    environment: await describeMachine(),
    rows,
    ttfb,
    events,
    usPerEvent,
    memory,
    metering: { usageEvents, gatewayRequests },
  };
}

function sleep(ms: number) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

let exitCode = 0;
try {
  const started = performance.now();
  const results = await main();
  await cleanup();
  if (opts["cpu-prof"]) progress(await summariseProfiles(opts["cpu-prof"]));
  progress(`done in ${((performance.now() - started) / 1000).toFixed(0)} s`);
  console.log(opts.json ? JSON.stringify(results, null, 2) : formatReport(results));
} catch (error) {
  if (!interrupted) console.error(`bench: ${error instanceof Error ? error.message : error}`);
  exitCode = 1;
} finally {
  await cleanup();
}
Deno.exit(exitCode);
