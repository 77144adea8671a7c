/** Runs a plane as its own process, as `deno task gateway` does, for cross-process tests. */
import { TextLineStream } from "./text_lines.ts";

const ROOT = new URL("../..", import.meta.url);

export interface PlaneProcess {
  url: string;
  process: Deno.ChildProcess;
  /** Sends SIGTERM and waits for the process to exit. */
  stop(): Promise<Deno.CommandStatus>;
}

/** Starts `entry` (e.g. "gateway/main.ts") and waits for the line naming its URL. */
export async function startPlaneProcess(
  entry: string,
  env: Record<string, string>,
): Promise<PlaneProcess> {
  const process = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", entry],
    cwd: ROOT,
    env,
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = process.stdout.pipeThrough(new TextDecoderStream()).pipeThrough(
    new TextLineStream(),
  );
  const reader = lines.getReader();
  const timeout = setTimeout(() => process.kill("SIGKILL"), 30_000);
  let url: string | undefined;
  while (!url) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`${entry} exited before it was listening`);
    url = /(http:\/\/\S+?)(?:\/v1|\/graphql)?\s*$/.exec(value)?.[1];
  }
  clearTimeout(timeout);
  // Keep draining stdout so the child never blocks on a full pipe.
  (async () => {
    while (!(await reader.read()).done);
  })().catch(() => {});
  return {
    url,
    process,
    async stop() {
      try {
        process.kill("SIGTERM");
      } catch { /* already gone */ }
      return await process.status;
    },
  };
}
