/** What every route handler gets: the request's identity and the app's dependencies. */
import type { AgentIdentity } from "../agents/identity.ts";
import type { KeyPolicy, Policy } from "../policy/snapshot.ts";
import type { UsageSink } from "../metering/usage_queue.ts";
import type { Allowances } from "../billing/allowances.ts";
import type { FallbackDeps } from "../routing/fallback.ts";

export interface RouteDeps extends FallbackDeps {
  policy: Policy;
  usage: UsageSink;
  maxBodyBytes: number;
  upstreamTimeoutMs: number;
  streamTimeoutMs: number;
  log: (message: string, error?: unknown) => void;
  /** Prepaid balances; absent, nothing is reserved or charged (tests of other things). */
  billing?: Billing;
}

export interface Billing {
  allowances: Allowances;
  /** The operator's fee on Standard-mode requests, in basis points. */
  feeBps: number;
}

export interface RequestContext {
  requestId: string;
  endpoint: string;
  /** Wall-clock time the request arrived. */
  receivedAt: Date;
  /** Monotonic milliseconds at arrival, and the clock to compare with. */
  startedAt: number;
  now: () => number;
  /** The authenticated key, once authentication has passed. */
  key?: KeyPolicy;
  /** The agent named by X-Agent-Identity, if any. */
  agent?: AgentIdentity | null;
}
