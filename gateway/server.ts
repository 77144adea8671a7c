/**
 * startGateway wires the data plane on an open database: the policy
 * snapshot, the usage queue and the HTTP server. main.ts and the tests use it.
 */
import type { Db } from "../schema/db.ts";
import type { ServerKeys } from "../schema/secrets.ts";
import { createApp } from "./app.ts";
import type { GatewayConfig } from "./config.ts";
import { createUsageQueue, type UsageQueue } from "./metering/usage_queue.ts";
import { createPolicy, type Policy } from "./policy/snapshot.ts";

export interface GatewayServer {
  url: string;
  port: number;
  policy: Policy;
  usage: UsageQueue;
  shutdown(): Promise<void>;
}

export interface GatewayDeps {
  db: Db;
  keys: ServerKeys;
  config:
    & Partial<Pick<GatewayConfig, "backoff">>
    & Pick<
      GatewayConfig,
      | "port"
      | "hostname"
      | "maxBodyBytes"
      | "upstreamTimeoutMs"
      | "streamTimeoutMs"
      | "policyResyncMs"
      | "usageFlushMs"
      | "usageBatchSize"
    >;
  fetch?: typeof fetch;
  log?: (message: string, error?: unknown) => void;
}

export async function startGateway(deps: GatewayDeps): Promise<GatewayServer> {
  const { config } = deps;
  const policy = await createPolicy({
    db: deps.db,
    keys: deps.keys,
    resyncMs: config.policyResyncMs,
    log: deps.log,
  });
  const usage = createUsageQueue(deps.db.db, {
    flushMs: config.usageFlushMs,
    batchSize: config.usageBatchSize,
    log: deps.log,
  });
  const handler = createApp({
    policy,
    usage,
    hashingKey: deps.keys.hashing,
    config,
    fetch: deps.fetch,
    log: deps.log,
  });
  const server = Deno.serve(
    { port: config.port, hostname: config.hostname, onListen: () => {} },
    handler,
  );
  const { port } = server.addr as Deno.NetAddr;
  const host = config.hostname.includes(":") ? `[${config.hostname}]` : config.hostname;
  return {
    url: `http://${host}:${port}`,
    port,
    policy,
    usage,
    async shutdown() {
      await server.shutdown();
      await usage.close();
      await policy.close();
    },
  };
}
