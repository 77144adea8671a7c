/**
 * The gateway's configuration: parsed once from the environment by zod, every
 * problem reported at once, then frozen. Nothing else in gateway/ reads env.
 */
import { z } from "zod";
import {
  parseEnv,
  portSetting,
  type SharedConfig,
  sharedConfig,
  sharedEnvShape,
} from "../schema/config.ts";
import { type BillingConfig, billingConfig, billingEnvShape } from "../schema/config.ts";
import { type IpRange, parseIpRange } from "../schema/ip_ranges.ts";

const seconds = (fallback: number) => z.coerce.number().positive().default(fallback);
const flag = (fallback: boolean) =>
  z.enum(["1", "0", "true", "false", "yes", "no"]).default(fallback ? "true" : "false")
    .transform((v) => v === "1" || v === "true" || v === "yes");

const gatewayEnv = z.object({
  ...sharedEnvShape,
  ...billingEnvShape,
  TOLLGATE_GATEWAY_PORT: portSetting(8080),
  TOLLGATE_HOST: z.string().min(1).default("127.0.0.1"),
  TOLLGATE_MAX_BODY_BYTES: z.coerce.number().int().positive().default(10 * 1024 * 1024),
  TOLLGATE_UPSTREAM_TIMEOUT_S: seconds(30),
  TOLLGATE_STREAM_TIMEOUT_S: seconds(120),
  TOLLGATE_RETRY_BASE_MS: z.coerce.number().int().min(0).default(100),
  TOLLGATE_RETRY_MAX_MS: z.coerce.number().int().min(0).default(2_000),
  TOLLGATE_RETRY_AFTER_MAX_S: z.coerce.number().min(0).default(10),
  TOLLGATE_POLICY_RESYNC_S: seconds(60),
  TOLLGATE_USAGE_FLUSH_MS: z.coerce.number().int().positive().default(200),
  TOLLGATE_USAGE_BATCH: z.coerce.number().int().positive().max(10_000).default(500),
  TOLLGATE_USAGE_MAX_PENDING: z.coerce.number().int().positive().default(100_000),
  TOLLGATE_SPOOL_DIR: z.string().min(1).optional(),
  TOLLGATE_SPOOL_FSYNC: z.string()
    .regex(/^(always|[1-9]\d*)$/, 'must be "always" or a whole number of milliseconds (1 or more)')
    .transform((v) => v === "always" ? v : Number(v)).default(100),
  TOLLGATE_DRAIN_TIMEOUT_MS: z.coerce.number().int().min(0).default(10_000),
  TOLLGATE_MOCK_PROVIDER: flag(true),
  TOLLGATE_UPSTREAM_CLIENT: z.enum(["pool", "fetch"]).optional(),
  TOLLGATE_TRUSTED_PROXIES: z.string().default("").transform((text, ctx) => {
    const ranges: IpRange[] = [];
    for (const item of text.split(",").map((s) => s.trim()).filter(Boolean)) {
      const range = parseIpRange(item);
      if (typeof range === "string") ctx.addIssue({ code: "custom", message: range });
      else ranges.push(range);
    }
    return ranges;
  }),
});

export interface GatewayConfig extends SharedConfig {
  port: number;
  hostname: string;
  maxBodyBytes: number;
  upstreamTimeoutMs: number;
  streamTimeoutMs: number;
  /** Waits between fallback attempts. */
  backoff: { baseMs: number; maxMs: number; maxRetryAfterMs: number };
  policyResyncMs: number;
  usageFlushMs: number;
  usageBatchSize: number;
  /** Usage events kept in memory at most; more wait in the spool. */
  usageMaxPending: number;
  /** The usage spool's folder (`<dataDir>/spool`); null with an in-memory data folder. */
  spoolDir: string | null;
  /**
   * fdatasync the spool after each group write ("always"), or at most every N ms
   * (default 100: "always" cost a quarter of the throughput in the bench).
   */
  spoolFsync: "always" | number;
  /** How long SIGTERM waits for open streams before cutting them. */
  drainTimeoutMs: number;
  /** Register the offline `mock` provider and model (embedded default only). */
  seedMockProvider: boolean;
  /** The operator fee, the BYOK routing fee and free requests. */
  billing: Readonly<BillingConfig>;
  /**
   * The proxies (CIDR ranges) whose X-Forwarded-For is believed when a key's
   * IP allowlist is checked; empty: only the socket peer's address counts.
   */
  trustedProxies: readonly IpRange[];
  /**
   * How upstream calls go out: "pool", Tollgate's HTTP/1.1 keep-alive client
   * (providers/http/), or "fetch", which honours HTTP_PROXY, HTTPS_PROXY and
   * NO_PROXY. The default is "fetch" when one of those is set, else "pool".
   */
  upstreamClient: "pool" | "fetch";
}

const PROXY_VARIABLES = ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"];

export function loadConfig(env: Record<string, string | undefined>): Readonly<GatewayConfig> {
  const e = parseEnv(gatewayEnv, env);
  const shared = sharedConfig(e);
  return Object.freeze({
    ...shared,
    port: e.TOLLGATE_GATEWAY_PORT,
    hostname: e.TOLLGATE_HOST,
    maxBodyBytes: e.TOLLGATE_MAX_BODY_BYTES,
    upstreamTimeoutMs: e.TOLLGATE_UPSTREAM_TIMEOUT_S * 1000,
    streamTimeoutMs: e.TOLLGATE_STREAM_TIMEOUT_S * 1000,
    backoff: Object.freeze({
      baseMs: e.TOLLGATE_RETRY_BASE_MS,
      maxMs: e.TOLLGATE_RETRY_MAX_MS,
      maxRetryAfterMs: e.TOLLGATE_RETRY_AFTER_MAX_S * 1000,
    }),
    policyResyncMs: e.TOLLGATE_POLICY_RESYNC_S * 1000,
    usageFlushMs: e.TOLLGATE_USAGE_FLUSH_MS,
    usageBatchSize: e.TOLLGATE_USAGE_BATCH,
    usageMaxPending: e.TOLLGATE_USAGE_MAX_PENDING,
    spoolDir: e.TOLLGATE_SPOOL_DIR ??
      (shared.dataDir === "memory://" ? null : `${shared.dataDir}/spool`),
    spoolFsync: e.TOLLGATE_SPOOL_FSYNC,
    drainTimeoutMs: e.TOLLGATE_DRAIN_TIMEOUT_MS,
    seedMockProvider: e.TOLLGATE_MOCK_PROVIDER && !shared.databaseUrl,
    billing: billingConfig(e),
    trustedProxies: Object.freeze(e.TOLLGATE_TRUSTED_PROXIES),
    upstreamClient: e.TOLLGATE_UPSTREAM_CLIENT ??
      (PROXY_VARIABLES.some((name) => env[name] || env[name.toLowerCase()]) ? "fetch" : "pool"),
  });
}
