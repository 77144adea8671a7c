/**
 * The bench's child processes (fake upstream, floor proxy, gateway): started
 * from the repository root, each waited for until it prints its URL, and all
 * stopped by stopAll() whatever happens. CPU and memory come from /proc.
 */
import { TextLineStream } from "../helpers/text_lines.ts";

export const ROOT = new URL("../..", import.meta.url);

export interface Child {
  name: string;
  pid: number;
  url: string;
  stop(): Promise<void>;
  /** The last lines it wrote to stderr (at most 50). */
  stderrTail?(): string[];
}

const running = new Set<Child>();

/** Runs `deno run <args>` and resolves once a line matches `ready` (group 1 = URL). */
export async function startDeno(
  name: string,
  args: string[],
  options: { env?: Record<string, string>; ready: RegExp; timeoutMs?: number },
): Promise<Child> {
  const process = new Deno.Command(Deno.execPath(), {
    args: ["run", ...args],
    cwd: ROOT,
    env: options.env,
    clearEnv: options.env !== undefined,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr: string[] = [];
  const status = process.status;
  const child: Child = {
    name,
    pid: process.pid,
    url: "",
    async stop() {
      running.delete(child);
      await stopProcess(process, status);
    },
    stderrTail: () => [...stderr],
  };
  running.add(child);
  keepTail(process.stderr, stderr);
  const lines = process.stdout.pipeThrough(new TextDecoderStream())
    .pipeThrough(new TextLineStream()).getReader();
  const timer = setTimeout(() => process.kill("SIGKILL"), options.timeoutMs ?? 60_000);
  try {
    while (!child.url) {
      const { value, done } = await lines.read();
      if (done) {
        await status;
        throw new Error(`${name} exited before it was listening:\n${stderr.join("\n")}`);
      }
      child.url = options.ready.exec(value)?.[1] ?? "";
    }
  } finally {
    clearTimeout(timer);
  }
  // Keep draining stdout so the child never blocks on a full pipe.
  (async () => {
    while (!(await lines.read()).done);
  })().catch(() => {});
  return child;
}

/** Runs a command to completion with a hard time limit; returns its stdout and stderr. */
export async function runCommand(
  command: string,
  args: string[],
  timeoutMs: number,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const process = new Deno.Command(command, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const status = process.status;
  const timer = setTimeout(() => process.kill("SIGKILL"), timeoutMs);
  const tracked: Child = {
    name: command,
    pid: process.pid,
    url: "",
    stop: () => stopProcess(process, status),
  };
  running.add(tracked);
  try {
    const output = await process.output();
    return {
      code: output.code,
      stdout: new TextDecoder().decode(output.stdout),
      stderr: new TextDecoder().decode(output.stderr),
    };
  } finally {
    clearTimeout(timer);
    running.delete(tracked);
  }
}

/** Stops every child still running (SIGTERM, then SIGKILL after 5 s). */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((child) => child.stop()));
}

async function stopProcess(
  process: Deno.ChildProcess,
  status: Promise<Deno.CommandStatus>,
): Promise<void> {
  const signal = (name: Deno.Signal) => {
    try {
      process.kill(name);
    } catch { /* already gone */ }
  };
  signal("SIGTERM");
  const timer = setTimeout(() => signal("SIGKILL"), 5_000);
  try {
    await status;
  } finally {
    clearTimeout(timer);
  }
}

function keepTail(stream: ReadableStream<Uint8Array<ArrayBuffer>>, into: string[]) {
  (async () => {
    const lines = stream.pipeThrough(new TextDecoderStream()).pipeThrough(new TextLineStream());
    for await (const line of lines) {
      into.push(line);
      if (into.length > 50) into.shift();
    }
  })().catch(() => {});
}

let clockTicks = 100;

/** Reads the kernel's clock tick rate (almost always 100 on Linux). */
export async function loadClockTicks(): Promise<void> {
  try {
    const { stdout } = await runCommand("getconf", ["CLK_TCK"], 5_000);
    clockTicks = Number(stdout.trim()) || 100;
  } catch { /* keep 100 */ }
}

/** CPU time (user + system, all threads) of `pid` in milliseconds. */
export function cpuMs(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  // Fields after the ")" that closes the command name; utime and stime are 14th and 15th.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 1000 / clockTicks;
}

/** Resident memory of `pid` in MB: now (VmRSS) and peak since start (VmHWM). */
export function memoryMb(pid: number): { rss: number; peak: number } {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, "m").exec(status)?.[1] ?? 0);
  return { rss: kb("VmRSS") / 1024, peak: kb("VmHWM") / 1024 };
}
