/**
 * startGateway wires the data plane on an open database: the usage spool
 * (replaying what a dead gateway left in it first), the policy snapshot, the
 * usage queue and the HTTP server. main.ts and the tests use it.
 *
 * shutdown() stops accepting, lets open responses finish for
 * `drainTimeoutMs`, then aborts the upstream calls still open (their streams
 * end with an in-band error and are metered as cut), flushes the queue and
 * closes. A response that still does not end (a client that stopped reading)
 * is left behind after a grace period: its intent stays in the spool, and the
 * next start bills it as interrupted.
 */
import type { Db } from "../schema/db.ts";
import type { ServerKeys } from "../schema/secrets.ts";
import { createApp } from "./app.ts";
import { createDeadlines } from "./routing/deadlines.ts";
import { createAllowanceStore } from "./billing/allowance_store.ts";
import { type Allowances, createAllowances } from "./billing/allowances.ts";
import { createLimitPools, type LimitPools } from "./billing/pools.ts";
import type { GatewayConfig } from "./config.ts";
import { openSpool } from "./metering/spool.ts";
import { replaySpool, setAside } from "./metering/spool_replay.ts";
import { createUsageQueue, type UsageQueue } from "./metering/usage_queue.ts";
import { createPolicy, type Policy } from "./policy/snapshot.ts";
import { createUpstreamClient } from "./providers/http/client.ts";
import type { UpstreamFetch } from "./providers/provider.ts";

/** A lease grows by at most 10 USD at once (unless one request needs more). */
const ALLOWANCE_MAX_GROWTH = 1_000_000_000n;
/** ... and by at most a quarter of what the account has free. */
const ALLOWANCE_SHARE = 4;
/** A lease not renewed for a minute (its replica died) is swept back. */
const ALLOWANCE_TTL_MS = 60_000;

export interface GatewayServer {
  url: string;
  port: number;
  policy: Policy;
  usage: UsageQueue;
  allowances: Allowances;
  /** Keys' spend limits and the months' free BYOK requests, leased like balances. */
  pools: LimitPools;
  shutdown(): Promise<void>;
}

export interface GatewayDeps {
  db: Db;
  keys: ServerKeys;
  config:
    & Partial<
      Pick<
        GatewayConfig,
        | "backoff"
        | "usageMaxPending"
        | "spoolDir"
        | "spoolFsync"
        | "drainTimeoutMs"
        | "billing"
        | "trustedProxies"
        | "upstreamClient"
      >
    >
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
  fetch?: UpstreamFetch;
  log?: (message: string, error?: unknown) => void;
}

/** How long shutdown waits for responses to end after their upstream calls were aborted. */
const CUT_GRACE_MS = 2_000;
const DEFAULT_DRAIN_TIMEOUT_MS = 10_000;

export async function startGateway(deps: GatewayDeps): Promise<GatewayServer> {
  const { config } = deps;
  const log = deps.log ?? ((message, error) => console.error(message, error ?? ""));
  let spool;
  if (config.spoolDir) {
    const replayed = await replaySpool(deps.db.db, {
      dir: config.spoolDir,
      batchSize: config.usageBatchSize,
      log,
    });
    if (replayed.replicas > 0) {
      log(
        `Replayed the usage spool of ${replayed.replicas} stopped gateway(s): ` +
          `${replayed.completed} completed and ${replayed.interrupted} interrupted requests` +
          (replayed.refused > 0 ? `, ${replayed.refused} refused` : "") +
          (replayed.skipped > 0 ? `, ${replayed.skipped} damaged records skipped` : ""),
      );
    }
    spool = await openSpool({ dir: config.spoolDir, fsync: config.spoolFsync ?? 100, log });
  }
  const policy = await createPolicy({
    db: deps.db,
    keys: deps.keys,
    resyncMs: config.policyResyncMs,
    log: deps.log,
  });
  const store = createAllowanceStore(deps.db.db);
  const replicaId = `${Deno.hostname()}:${Deno.pid}:${crypto.randomUUID().slice(0, 8)}`;
  const allowances = createAllowances({
    store,
    replicaId,
    maxGrowth: ALLOWANCE_MAX_GROWTH,
    share: ALLOWANCE_SHARE,
    ttlMs: ALLOWANCE_TTL_MS,
    log,
  });
  const pools = createLimitPools(deps.db.db, {
    replicaId,
    maxGrowth: ALLOWANCE_MAX_GROWTH,
    share: ALLOWANCE_SHARE,
    ttlMs: ALLOWANCE_TTL_MS,
    freeRequests: config.billing?.byokFreeRequests ?? 1_000_000,
    log,
  });
  // Any replica may reclaim the leases of one that died; one at a time does (sweepLock).
  const sweeper = setInterval(() => {
    store.sweep().catch((error) => log("Cannot sweep expired allowances", error));
    pools.sweep().catch((error) => log("Cannot sweep expired key or BYOK allowances", error));
  }, ALLOWANCE_TTL_MS / 2);
  Deno.unrefTimer(sweeper);
  const usage = createUsageQueue(deps.db.db, {
    onSettled: (charges) => {
      for (const c of charges) {
        if (!pools.committed(c)) allowances.committed(c.accountId, c.leaseId, c.amount);
      }
    },
    flushMs: config.usageFlushMs,
    batchSize: config.usageBatchSize,
    maxPending: config.usageMaxPending,
    spool,
    onRefused: config.spoolDir ? (refused) => setAside(config.spoolDir!, refused, log) : undefined,
    log: deps.log,
  });
  // Every upstream attempt's deadline: at a shutdown's drain deadline they all
  // expire at once, and every upstream call still open ends.
  const deadlines = createDeadlines();
  // Upstream calls go through the pooled HTTP/1.1 client unless a test passes its own fetch,
  // or the operator's proxy settings (HTTP_PROXY and the like) call for fetch, which honours them.
  const upstream = deps.fetch || config.upstreamClient === "fetch" ? null : createUpstreamClient();
  const app = createApp({
    policy,
    usage,
    // Standard mode: prepaid balances, the provider cost plus the operator's fee (5.5% by default).
    // BYOK: no provider cost; past the month's free requests, a routing fee (5% by default).
    billing: {
      allowances,
      feeBps: config.billing?.standardFeeBps ?? 550,
      keyLimits: pools.keyLimits,
      byok: { feeBps: config.billing?.byokFeeBps ?? 500, free: pools.free },
    },
    deadlines,
    hashingKey: deps.keys.hashing,
    config,
    fetch: deps.fetch ?? upstream?.fetch,
    log: deps.log,
  });
  // A non-streamed answer leaves once its usage event is in the spool file.
  const handler = spool
    ? async (request: Request, info: Deno.ServeHandlerInfo) => {
      const response = await app(request, info);
      await usage.written();
      return response;
    }
    : app;
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
    allowances,
    pools,
    async shutdown() {
      const drainMs = config.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS;
      const closed = server.shutdown().then(() => true);
      const cut = setTimeout(() => {
        deadlines.expireAll(new Error("the gateway is shutting down"));
      }, drainMs);
      let giveUp: ReturnType<typeof setTimeout> | undefined;
      const ended = await Promise.race([
        closed,
        new Promise<false>((resolve) =>
          giveUp = setTimeout(() => resolve(false), drainMs + CUT_GRACE_MS)
        ),
      ]);
      clearTimeout(cut);
      clearTimeout(giveUp);
      if (!ended) {
        log("Responses still open at shutdown were left behind; their intents stay in the spool");
      }
      await usage.close();
      // After the queue: charges are committed before what is left of a lease goes back.
      clearInterval(sweeper);
      await allowances.close();
      await pools.close();
      await policy.close();
      upstream?.close();
    },
  };
}
