/** The bench's results, its tables, and the overhead summary against the targets. */
import type { TtfbResult } from "./ttfb.ts";

export const TARGETS = ["direct", "floor", "gateway"] as const;
export type TargetName = (typeof TARGETS)[number];
export type Mode = "nonstream" | "stream";

export interface LoadRow {
  target: TargetName;
  mode: Mode;
  conc: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  /** CPU of the process under test (the fake itself for `direct`) per request. */
  cpuMsPerReq: number;
  cores: number;
  fakeCpuMsPerReq: number;
  rssMb: number;
}

export interface EventRow {
  target: TargetName;
  chunks: number;
  rps: number;
  errors: number;
  cpuMsPerReq: number;
}

export interface Results {
  settings: Record<string, string | number | boolean>;
  environment: string;
  rows: LoadRow[];
  ttfb: Partial<Record<TargetName, TtfbResult>>;
  events: EventRow[];
  /** CPU µs per streamed SSE event: the slope between the two chunk counts. */
  usPerEvent: Partial<Record<TargetName, number>>;
  memory: { idleStartMb: number; idleEndMb: number; peakMb: number; floorIdleMb: number };
  metering: { usageEvents: number | null; gatewayRequests: number };
}

export interface Check {
  name: string;
  value: string;
  target: string;
  /** null: shown for information, no target. */
  pass: boolean | null;
}

const f = (n: number, digits = 2) => (Number.isFinite(n) ? n.toFixed(digits) : "-");
const pad = (cells: (string | number)[], widths: number[]) =>
  cells.map((c, i) => i === 0 ? String(c).padEnd(widths[i]!) : String(c).padStart(widths[i]!))
    .join(" ");

export function row(results: Results, target: TargetName, mode: Mode, conc: number) {
  return results.rows.find((r) => r.target === target && r.mode === mode && r.conc === conc);
}

export function checks(results: Results): Check[] {
  const out: Check[] = [];
  const concs = [...new Set(results.rows.map((r) => r.conc))];
  const high = Math.max(...concs);
  for (const mode of ["nonstream", "stream"] as const) {
    const gw = row(results, "gateway", mode, high);
    const floor = row(results, "floor", mode, high);
    if (gw && floor) {
      const pct = (gw.rps / floor.rps) * 100;
      out.push({
        name: `throughput ${mode} c=${high}, % of floor`,
        value: `${f(pct, 0)}% (${f(gw.rps, 0)}/${f(floor.rps, 0)} rps)`,
        target: high === 32 ? ">= 75%" : "(target is at c=32)",
        pass: high === 32 ? pct >= 75 : null,
      });
    }
    if (gw && floor) {
      out.push({
        name: `CPU per request ${mode} c=${high}, gateway vs floor`,
        value: `${f(gw.cpuMsPerReq, 3)} vs ${f(floor.cpuMsPerReq, 3)} ms`,
        target: "",
        pass: null,
      });
    }
  }
  for (const mode of ["nonstream", "stream"] as const) {
    const gw = row(results, "gateway", mode, 1);
    const direct = row(results, "direct", mode, 1);
    if (!gw || !direct) continue;
    const gated = mode === "nonstream";
    const floor = row(results, "floor", mode, 1);
    const p50 = gw.p50Ms - direct.p50Ms;
    const p99 = gw.p99Ms - direct.p99Ms;
    const floorSays = (ms: number) => (floor ? ` (floor ${f(ms)} ms)` : "");
    out.push({
      name: `added p50 ${mode} c=1 vs direct`,
      value: `${f(p50)} ms${floorSays((floor?.p50Ms ?? NaN) - direct.p50Ms)}`,
      target: gated ? "<= 0.3 ms" : "(to [DONE])",
      pass: gated ? p50 <= 0.3 : null,
    });
    out.push({
      name: `added p99 ${mode} c=1 vs direct`,
      value: `${f(p99)} ms${floorSays((floor?.p99Ms ?? NaN) - direct.p99Ms)}`,
      target: gated ? "<= 1.5 ms" : "(to [DONE])",
      pass: gated ? p99 <= 1.5 : null,
    });
  }
  const gwTtfb = results.ttfb.gateway;
  const directTtfb = results.ttfb.direct;
  if (gwTtfb && directTtfb) {
    const added = gwTtfb.firstP50Ms - directTtfb.firstP50Ms;
    const floor = results.ttfb.floor;
    out.push({
      name: "added TTFB c=1 (first content event, p50)",
      value: `${f(added)} ms${
        floor ? ` (floor ${f(floor.firstP50Ms - directTtfb.firstP50Ms)} ms)` : ""
      }`,
      target: "<= 1 ms",
      pass: added <= 1,
    });
  }
  const perEvent = results.usPerEvent.gateway;
  if (perEvent !== undefined) {
    const floor = results.usPerEvent.floor;
    out.push({
      name: "CPU per streamed event",
      value: `${f(perEvent, 1)} us${floor === undefined ? "" : ` (floor ${f(floor, 1)} us)`}`,
      target: "<= 15 us",
      pass: perEvent <= 15,
    });
  }
  const m = results.memory;
  out.push({
    name: "idle memory after start (RSS)",
    value: `${f(m.idleStartMb, 1)} MB (floor ${f(m.floorIdleMb, 1)} MB)`,
    target: "<= 60 MB",
    pass: m.idleStartMb <= 60,
  });
  out.push({
    name: "idle memory after the run (RSS)",
    value: `${f(m.idleEndMb, 1)} MB (peak ${f(m.peakMb, 1)} MB)`,
    target: "<= 60 MB",
    pass: m.idleEndMb <= 60,
  });
  return out;
}

export function formatReport(results: Results): string {
  const lines: string[] = [];
  lines.push(`# ${results.environment}`);
  lines.push(
    `# ${Object.entries(results.settings).map(([k, v]) => `${k}=${v}`).join(" ")}`,
  );
  const w = [8, 9, 4, 8, 8, 8, 6, 10, 6, 11, 7];
  lines.push(pad(
    ["target", "mode", "conc", "rps", "p50_ms", "p99_ms", "errors", "cpu_ms/req", "cores"]
      .concat(["fake_ms/req", "rss_MB"]),
    w,
  ));
  for (const r of results.rows) {
    lines.push(pad([
      r.target,
      r.mode,
      r.conc,
      f(r.rps, 0),
      f(r.p50Ms),
      f(r.p99Ms),
      r.errors,
      f(r.cpuMsPerReq, 3),
      f(r.cores),
      f(r.fakeCpuMsPerReq, 3),
      f(r.rssMb, 1),
    ], w));
  }
  if (Object.keys(results.ttfb).length) {
    lines.push(
      "",
      "# streaming, 1 connection, sequential: time to headers / first content / end (ms)",
    );
    const tw = [8, 11, 10, 10, 10, 9];
    lines.push(pad(["target", "headers_p50", "first_p50", "first_p99", "total_p50", "ok"], tw));
    for (const [name, t] of Object.entries(results.ttfb)) {
      lines.push(pad([
        name,
        f(t.headersP50Ms),
        f(t.firstP50Ms),
        f(t.firstP99Ms),
        f(t.totalP50Ms),
        `${t.ok}/${t.n}`,
      ], tw));
    }
  }
  if (results.events.length) {
    lines.push(
      "",
      `# CPU per streamed event: stream at c=${results.settings.eventConc}, chunks 1 ms apart ` +
        `(one event per read); slope of cpu_ms/req between the two chunk counts`,
    );
    const ew = [8, 7, 7, 6, 10, 9];
    lines.push(pad(["target", "chunks", "rps", "errors", "cpu_ms/req", "us/event"], ew));
    for (const e of results.events) {
      lines.push(pad([
        e.target,
        e.chunks,
        f(e.rps, 0),
        e.errors,
        f(e.cpuMsPerReq, 3),
        f(results.usPerEvent[e.target] ?? NaN, 1),
      ], ew));
    }
  }
  const m = results.metering;
  lines.push(
    "",
    `# metering: ${m.usageEvents ?? "(not readable with --pglite)"} usage events written ` +
      `for ${m.gatewayRequests} completed gateway requests (requests that wrk cuts off at ` +
      `the end of each run are metered too)`,
  );
  lines.push("", "# overhead summary");
  const all = checks(results);
  const cw = [46, 34, 12, 4];
  for (const c of all) {
    const verdict = c.pass === null ? "" : c.pass ? "PASS" : "FAIL";
    lines.push(pad([c.name, c.value, c.target, verdict], cw).trimEnd());
  }
  const failed = all.filter((c) => c.pass === false).length;
  lines.push(`# ${failed ? `${failed} target(s) missed` : "all targets met"}`);
  return lines.join("\n");
}
