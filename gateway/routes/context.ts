/** What every route handler gets: the request's identity and the app's dependencies. */
import type { AgentIdentity } from "../agents/identity.ts";
import type { KeyPolicy, Policy } from "../policy/snapshot.ts";
import type { UsageSink } from "../metering/usage_queue.ts";
import type { Allowances } from "../billing/allowances.ts";
import type { FreeRequests } from "../billing/free_requests.ts";
import type { FallbackDeps } from "../routing/fallback.ts";
import type { RateLimiter } from "../auth/rate_limiter.ts";

export interface RouteDeps extends FallbackDeps {
  policy: Policy;
  usage: UsageSink;
  maxBodyBytes: number;
  upstreamTimeoutMs: number;
  streamTimeoutMs: number;
  log: (message: string, error?: unknown) => void;
  /** Prepaid balances; absent, nothing is reserved or charged (tests of other things). */
  billing?: Billing;
  /** Keys' requests and tokens per minute; absent, not enforced. */
  limits?: RateLimiter;
}

export interface Billing {
  allowances: Allowances;
  /** The operator's fee on Standard-mode requests, in basis points. */
  feeBps: number;
  /** Keys' lifetime spend limits, leased like balances; absent: not enforced. */
  keyLimits?: Allowances;
  /** The BYOK routing fee rate, and the months' free requests (absent: none are free). */
  byok?: { feeBps: number; free?: FreeRequests };
}

export interface RequestContext {
  requestId: string;
  endpoint: string;
  /** Wall-clock time the request arrived. */
  receivedAt: Date;
  /** receivedAt as ISO text, made once for the request's usage events (usage_event.ts). */
  receivedIso?: string;
  /** Monotonic milliseconds at arrival, and the clock to compare with. */
  startedAt: number;
  now: () => number;
  /** The authenticated key, once authentication has passed. */
  key?: KeyPolicy;
  /** The agent named by X-Agent-Identity, if any. */
  agent?: AgentIdentity | null;
}
