/**
 * CPU per request of the HTTP clients the gateway could call upstreams with,
 * alone: fetch, node:http with a keep-alive agent, and Tollgate's pooled
 * client (gateway/providers/http/), each sending the bench's request to a
 * fake upstream from 32 concurrent callers.
 *
 *   deno run -A tests/bench/clients.ts [--requests 20000] [--client fetch|node:http|pool]
 *
 * Starts its own fake upstream (tests/bench/fake_upstream.ts) in a process of
 * its own, so only the client's CPU is counted.
 */
import http from "node:http";
import process from "node:process";
import { Buffer } from "node:buffer";
import { parseArgs } from "node:util";
import { createUpstreamClient } from "../../gateway/providers/http/client.ts";
import { startDeno } from "./processes.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { requests: { type: "string", default: "20000" }, client: { type: "string" } },
});
const REQUESTS = Number(values.requests);
const CONCURRENCY = 32;
const body = JSON.stringify({
  model: "gpt-bench",
  messages: [{ role: "user", content: "x".repeat(1024) }],
  max_tokens: 64,
});
const headers = { "content-type": "application/json", authorization: "Bearer sk-upstream" };

const fake = await startDeno("fake upstream", ["-A", "tests/bench/fake_upstream.ts"], {
  ready: /listening on (http:\/\/\S+?)\/v1/,
});
const url = `${fake.url}/v1/chat/completions`;
const target = new URL(url);
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
const pool = createUpstreamClient();

const clients: Record<string, () => Promise<string>> = {
  fetch: async () => await (await fetch(url, { method: "POST", headers, body })).text(),
  "node:http": () =>
    new Promise((resolve, reject) => {
      const request = http.request({
        agent,
        host: target.hostname,
        port: target.port,
        path: target.pathname,
        method: "POST",
        headers: { ...headers, "content-length": Buffer.byteLength(body) },
      }, (response) => {
        const parts: Buffer[] = [];
        response.on("data", (part) => parts.push(part));
        response.on("end", () => resolve(Buffer.concat(parts).toString()));
        response.on("error", reject);
      });
      request.on("error", reject);
      request.end(body);
    }),
  pool: async () => await (await pool.fetch(url, { method: "POST", headers, body })).text(),
};

try {
  console.log("client        rps  cpu_us/req");
  const only = values.client;
  for (const [name, send] of Object.entries(clients)) {
    if (only && name !== only) continue;
    for (let i = 0; i < 1000; i++) await send();
    const cpu = process.cpuUsage();
    const start = performance.now();
    let sent = 0;
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (sent < REQUESTS) {
        sent++;
        if (!(await send()).includes('"usage"')) throw new Error(`${name}: no usage in the answer`);
      }
    }));
    const seconds = (performance.now() - start) / 1000;
    const used = process.cpuUsage(cpu);
    console.log(
      `${name.padEnd(10)} ${(REQUESTS / seconds).toFixed(0).padStart(6)} ${
        ((used.user + used.system) / REQUESTS).toFixed(1).padStart(11)
      }`,
    );
  }
} finally {
  pool.close();
  agent.destroy();
  await fake.stop();
}
