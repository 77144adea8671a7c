/**
 * createApp(deps) returns the data plane's fetch handler. It owns what every
 * route shares: the request id, authentication, and rendering errors in the
 * caller's dialect.
 */
import { AGENT_HEADER, parseAgentIdentity } from "./agents/identity.ts";
import { authenticate, createSecretHasher } from "./auth/authenticate.ts";
import { createRateLimiter } from "./auth/rate_limiter.ts";
import type { IpRange } from "../schema/ip_ranges.ts";
import { asGatewayError, GatewayError, renderAnthropicError, renderError } from "./errors.ts";
import type { UsageSink } from "./metering/usage_queue.ts";
import type { Policy } from "./policy/snapshot.ts";
import { createProviderRegistry } from "./providers/mod.ts";
import type { UpstreamFetch } from "./providers/provider.ts";
import { chatCompletions } from "./routes/chat_completions.ts";
import { completions } from "./routes/completions.ts";
import type { Billing, RequestContext, RouteDeps } from "./routes/context.ts";
import { embeddings } from "./routes/embeddings.ts";
import { images } from "./routes/images.ts";
import { countTokens, messages } from "./routes/messages.ts";
import { listModels, retrieveModel } from "./routes/models.ts";
import { responses } from "./routes/responses.ts";
import { createDeadlines, type Deadlines } from "./routing/deadlines.ts";
import { type BackoffConfig, createCooldowns } from "./routing/fallback.ts";

export interface AppDeps {
  policy: Policy;
  usage: UsageSink;
  /** Prepaid balances; without it nothing is reserved or charged. */
  billing?: Billing;
  /** Every upstream attempt's deadline; the server expires them all at its drain deadline. */
  deadlines?: Deadlines;
  hashingKey: Uint8Array;
  config: {
    maxBodyBytes: number;
    upstreamTimeoutMs: number;
    streamTimeoutMs: number;
    /** Waits between fallback attempts; defaults to DEFAULT_BACKOFF. */
    backoff?: BackoffConfig;
    /** Peers whose X-Forwarded-For is believed for IP allowlists; default none. */
    trustedProxies?: readonly IpRange[];
  };
  fetch?: UpstreamFetch;
  /** Wall clock (ms since epoch) and monotonic clock (ms); fakes in tests. */
  clock?: { now(): number; monotonic(): number };
  log?: (message: string, error?: unknown) => void;
  /** Fakes for the fallback waits in tests. */
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
}

export const DEFAULT_BACKOFF: BackoffConfig = {
  baseMs: 100,
  maxMs: 2_000,
  maxRetryAfterMs: 10_000,
};

type Handler = (
  request: Request,
  ctx: RequestContext,
  deps: RouteDeps,
) => Response | Promise<Response>;

interface Route {
  method: string;
  handler: Handler;
}

/** By exact path; a key ending in `/*` serves every path below it (a model id may hold `/`). */
const ROUTES: Record<string, Route> = {
  "/v1/chat/completions": { method: "POST", handler: chatCompletions },
  "/v1/completions": { method: "POST", handler: completions },
  "/v1/embeddings": { method: "POST", handler: embeddings },
  "/v1/images/generations": { method: "POST", handler: images },
  "/v1/responses": { method: "POST", handler: responses },
  "/v1/messages": { method: "POST", handler: messages },
  "/v1/messages/count_tokens": { method: "POST", handler: countTokens },
  "/v1/models": { method: "GET", handler: listModels },
  "/v1/models/*": { method: "GET", handler: retrieveModel },
};

function routeFor(path: string): Route | undefined {
  const exact = ROUTES[path];
  if (exact) return exact;
  for (let slash = path.indexOf("/", 1); slash > 0; slash = path.indexOf("/", slash + 1)) {
    const route = ROUTES[`${path.slice(0, slash)}/*`];
    if (route) return route;
  }
  return undefined;
}

/**
 * The path of a request URL without trailing slashes. Request URLs are
 * already normalised (scheme://host[:port]/path[?query]), so this slices
 * instead of building a URL object for every request.
 */
export function pathOf(url: string): string {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  if (start < 0) return "";
  let end = url.length;
  const query = url.indexOf("?", start);
  if (query >= 0) end = query;
  const hash = url.indexOf("#", start);
  if (hash >= 0 && hash < end) end = hash;
  while (end > start && url.charCodeAt(end - 1) === 47 /* "/" */) end--;
  return url.slice(start, end);
}

/**
 * Whether errors go out in Anthropic's shape: on the Messages endpoints, and
 * for any caller that sends `anthropic-version` (the Anthropic SDKs always do).
 */
function speaksAnthropic(path: string, headers: Headers): boolean {
  return path.startsWith("/v1/messages") || headers.has("anthropic-version");
}

/** What the server knows of a request's connection (Deno.ServeHandlerInfo's part we read). */
export interface ConnectionInfo {
  remoteAddr?: { transport: string; hostname?: string };
}

export function createApp(
  deps: AppDeps,
): (request: Request, info?: ConnectionInfo) => Promise<Response> {
  const clock = deps.clock ?? { now: Date.now, monotonic: () => performance.now() };
  const routeDeps: RouteDeps = {
    policy: deps.policy,
    usage: deps.usage,
    providerFor: createProviderRegistry({ fetch: deps.fetch ?? fetch }),
    maxBodyBytes: deps.config.maxBodyBytes,
    upstreamTimeoutMs: deps.config.upstreamTimeoutMs,
    streamTimeoutMs: deps.config.streamTimeoutMs,
    backoff: deps.config.backoff ?? DEFAULT_BACKOFF,
    billing: deps.billing,
    // Requests and tokens per minute, per key, in this replica's memory.
    limits: createRateLimiter(),
    cooldowns: createCooldowns(),
    deadlines: deps.deadlines ?? createDeadlines(),
    now: clock.monotonic,
    sleep: deps.sleep,
    random: deps.random,
    log: deps.log ?? ((message, error) => console.error(message, error ?? "")),
  };

  const hashSecretCached = createSecretHasher(deps.hashingKey);
  const trustedProxies = deps.config.trustedProxies ?? [];

  return async function handle(request: Request, info?: ConnectionInfo): Promise<Response> {
    const receivedAt = clock.now();
    const requestId = requestIdAt(receivedAt);
    const path = pathOf(request.url);
    if (path === "/healthz") return new Response("ok", { headers: { "x-request-id": requestId } });
    const ctx: RequestContext = {
      requestId,
      endpoint: path,
      receivedAt: new Date(receivedAt),
      startedAt: clock.monotonic(),
      now: clock.monotonic,
    };
    try {
      const route = routeFor(path);
      if (!route) {
        throw new GatewayError("not_found", 404, `Unknown endpoint ${request.method} ${path}.`, {
          retryable: false,
        });
      }
      if (request.method !== route.method) {
        throw new GatewayError(
          "method_not_allowed",
          405,
          `${path} accepts ${route.method}, not ${request.method}.`,
          {
            retryable: false,
          },
        );
      }
      ctx.key = authenticate(request.headers, {
        policy: deps.policy,
        hash: hashSecretCached,
        now: clock.now(),
        origin: { peer: info?.remoteAddr?.hostname ?? null, trustedProxies },
      });
      ctx.agent = parseAgentIdentity(request.headers.get(AGENT_HEADER));
      return await route.handler(request, ctx, routeDeps);
    } catch (error) {
      const gatewayError = asGatewayError(error);
      if (gatewayError.status >= 500 && gatewayError.code === "internal_error") {
        routeDeps.log(`Request ${requestId} failed`, error);
      }
      return speaksAnthropic(path, request.headers)
        ? renderAnthropicError(gatewayError, requestId)
        : renderError(gatewayError, requestId);
    }
  };
}

/**
 * A request id: `req_` and the 32 hex digits of a UUIDv7 made at `ms`, its
 * first 12 the time in milliseconds. Ids sort by time, so the usage row's
 * primary key and the ledger's reference index grow at their ends instead of
 * at random pages (a 500-row usage insert cost Postgres 11 ms instead of 16).
 */
export function requestIdAt(ms: number): string {
  // 8-4-4-4-12: the 4xxx group's version digit becomes 7; the variant stays.
  const u = crypto.randomUUID();
  const time = Math.max(0, Math.floor(ms)).toString(16).padStart(12, "0").slice(-12);
  return `req_${time}7${u.slice(15, 18)}${u.slice(19, 23)}${u.slice(24)}`;
}
