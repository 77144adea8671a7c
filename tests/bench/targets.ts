/**
 * The targets' side of the bench: starting the gateway process the way
 * `deno task gateway` does, checking that a target answers as an OpenAI
 * upstream would, and naming the machine the numbers come from.
 */
import { type Child, startDeno } from "./processes.ts";
import type { TargetName } from "./report.ts";

/** Starts `deno run -A [flags] gateway/main.ts` on the bench database, on `port` (0: a free one). */
export async function startGateway(
  dbEnv: Record<string, string>,
  flags: string[],
  port = 0,
): Promise<Child> {
  const env = Object.fromEntries(
    Object.entries(Deno.env.toObject()).filter(([k]) =>
      k !== "DATABASE_URL" && !k.startsWith("TOLLGATE_")
    ),
  );
  return await startDeno("gateway", [
    "-A",
    ...flags,
    "gateway/main.ts",
  ], {
    env: {
      ...env,
      ...dbEnv,
      TOLLGATE_GATEWAY_PORT: String(port),
      TOLLGATE_HOST: "127.0.0.1",
      TOLLGATE_MOCK_PROVIDER: "0",
    },
    ready: /listening on (http:\/\/\S+?)\/v1/,
  });
}

/** One non-stream and one streamed request: 200 with usage, the stream ending in [DONE]. */
export async function sanityCheck(
  target: TargetName,
  request: { url: string; key: string; plain: string; sse: string },
) {
  const { url, key, plain, sse } = request;
  const headers = { "content-type": "application/json", authorization: `Bearer ${key}` };
  const a = await fetch(url, { method: "POST", headers, body: plain });
  const aText = await a.text();
  const b = await fetch(url, { method: "POST", headers, body: sse });
  const bText = await b.text();
  const problems = [
    a.status === 200 && aText.includes('"usage"') ? "" : `non-stream: ${a.status} ${aText}`,
    b.status === 200 && bText.includes("[DONE]") && bText.includes('"usage"')
      ? ""
      : `stream: ${b.status} ${bText.slice(0, 500)}`,
  ].filter(Boolean);
  if (problems.length) throw new Error(`Check failed for ${target}:\n  ${problems.join("\n  ")}`);
}

export async function describeMachine(): Promise<string> {
  const cpus = (await Deno.readTextFile("/proc/cpuinfo")).match(/^processor\s*:/gm)?.length;
  const model = (await Deno.readTextFile("/proc/cpuinfo")).match(/^model name\s*:\s*(.+)$/m)?.[1];
  return `tollgate bench: ${cpus} cpus (${model ?? "?"}), ${Deno.build.os} ${Deno.osRelease()}, ` +
    `deno ${Deno.version.deno}, wrk 1 thread, all on 127.0.0.1`;
}
