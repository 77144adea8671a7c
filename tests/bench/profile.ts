/**
 * Reads the V8 .cpuprofile files the gateway wrote (deno run --cpu-prof) and
 * lists the functions with the most self time: overall, and in our code.
 */
import { ROOT } from "./processes.ts";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export async function summariseProfiles(dir: string, top = 12): Promise<string> {
  const files: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (entry.name.endsWith(".cpuprofile")) files.push(`${dir}/${entry.name}`);
  }
  if (!files.length) return `no .cpuprofile in ${dir} (the gateway writes it when it exits)`;
  const selfUs = new Map<string, number>();
  let totalUs = 0;
  for (const file of files) {
    const profile: CpuProfile = JSON.parse(await Deno.readTextFile(file));
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    const samples = profile.samples ?? [];
    const deltas = profile.timeDeltas ?? [];
    for (let i = 0; i < samples.length; i++) {
      const node = byId.get(samples[i]!);
      if (!node) continue;
      const us = deltas[i + 1] ?? deltas[i] ?? 0;
      const name = frameName(node);
      selfUs.set(name, (selfUs.get(name) ?? 0) + us);
      totalUs += us;
    }
  }
  const ranked = [...selfUs].sort((a, b) => b[1] - a[1]);
  const busy = ranked.filter(([name]) => !/^\((idle|program|garbage collector)\)/.test(name));
  const busyUs = busy.reduce((sum, [, us]) => sum + us, 0);
  const line = ([name, us]: [string, number]) =>
    `  ${(us / 1000).toFixed(0).padStart(7)} ms ${
      (us / busyUs * 100).toFixed(1).padStart(5)
    }%  ${name}`;
  const ours = busy.filter(([name]) => / (gateway|schema)\/\S+:\d+$/.test(name));
  return [
    `CPU profile of the gateway (${files.length} file(s), ${
      (totalUs / 1e6).toFixed(1)
    } s sampled, ` +
    `${(busyUs / 1e6).toFixed(1)} s busy); self time, % of busy:`,
    ...ranked.filter(([name]) => name !== "(idle)").slice(0, top).map(line),
    "in our code (gateway/, schema/):",
    ...ours.slice(0, top).map(line),
  ].join("\n");
}

function frameName(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  const root = ROOT.href;
  const file = url.startsWith(root)
    ? url.slice(root.length)
    : url.replace(/^.*\/registry\.npmjs\.org\//, "npm:").replace(/^.*\/node_modules\//, "npm:");
  const fn = functionName || "(anonymous)";
  return file ? `${fn} ${file}:${lineNumber + 1}` : fn;
}
