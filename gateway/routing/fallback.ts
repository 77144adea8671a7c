/**
 * Sends a call to the first target that answers, moving on when a target
 * fails in a way another attempt can fix: a connection error, a timeout, a
 * 429 or a 5xx, before the caller has received a byte. Between attempts it
 * waits an exponential backoff with full jitter. A target whose upstream said
 * Retry-After is skipped while it cools down if another target follows; as
 * the last target, a retry waits the pause out when it is short and gives up
 * when it is long. A first attempt is always made. Once a stream has delivered its first byte
 * there is no switching: a later failure belongs to that stream.
 */
import { GatewayError } from "../errors.ts";
import type { Operation, Provider, UpstreamReply } from "../providers/provider.ts";
import type { ProviderPolicy } from "../policy/snapshot.ts";
import type { Deadlines } from "./deadlines.ts";
import type { Target } from "./resolve.ts";

export interface BackoffConfig {
  /** The first retry waits up to this long; each later one up to twice as long. */
  baseMs: number;
  /** The most a backoff waits. */
  maxMs: number;
  /** The longest Retry-After waited for; a target cooling down for longer is skipped. */
  maxRetryAfterMs: number;
}

export interface FallbackDeps {
  providerFor: (config: ProviderPolicy) => Provider;
  backoff: BackoffConfig;
  cooldowns: Cooldowns;
  /** Arms each attempt's timeout. */
  deadlines: Deadlines;
  /** Monotonic milliseconds. */
  now: () => number;
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
}

export interface FallbackCall {
  op: Operation;
  /** The operation a target is called with, when not `op` (a translated call). */
  opFor?: (target: Target) => Operation;
  body: Record<string, unknown>;
  stream: boolean;
  /** Caller headers an upstream of the caller's dialect should see. */
  headers?: Readonly<Record<string, string>>;
  /** Per-attempt timeout. */
  timeoutMs: number;
  /** Sets `model` (and anything else target-specific) on a copy of the body. */
  bodyFor: (target: Target) => Record<string, unknown>;
}

export type ServedReply =
  | { stream: false; text: string; json: Record<string, unknown> }
  | {
    stream: true;
    /** The rest of the upstream body, after `first`. */
    reader: ReadableStreamDefaultReader<Uint8Array>;
    /** The first bytes, already read so that a failure before them could fall back. */
    first: Uint8Array;
    /** Monotonic time the first bytes arrived. */
    firstAt: number;
  };

export interface Served {
  reply: ServedReply;
  target: Target;
  /** Attempts made, this one included. */
  attempts: number;
  /** Ends the attempt's timeout once its stream has ended. */
  release: () => void;
  /** Aborts the upstream request (a client that left, a stream that broke). */
  abort: () => void;
}

/** Tries `targets` in order; throws the last retryable error, or the first that is not. */
export async function sendWithFallback(
  targets: readonly Target[],
  call: FallbackCall,
  deps: FallbackDeps,
): Promise<Served> {
  const sleep = deps.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
  const random = deps.random ?? Math.random;
  let lastError: GatewayError | null = null;
  let attempts = 0;

  for (let i = 0; i < targets.length; i++) {
    const target = targets[i]!;
    const provider = deps.providerFor(target.provider);
    const coolingMs = deps.cooldowns.remaining(target.model.id, deps.now());
    const isLast = i === targets.length - 1;
    if (coolingMs > 0 && !isLast) {
      // Its upstream asked for a pause: another target serves sooner.
      lastError ??= coolingDown(target, coolingMs);
      continue;
    }
    let waitMs = attempts === 0 ? 0 : backoffMs(attempts, deps.backoff, random);
    if (coolingMs > 0 && attempts > 0) {
      // Retrying the model that just asked for a pause: wait it out when short.
      if (coolingMs > deps.backoff.maxRetryAfterMs) {
        lastError = coolingDown(target, coolingMs);
        continue;
      }
      waitMs = Math.max(waitMs, coolingMs);
    }
    if (waitMs > 0) await sleep(waitMs);

    attempts++;
    // A deadline per attempt, cancelled when the call ends: AbortSignal.timeout()
    // would keep every request's objects alive until it fired.
    const controller = new AbortController();
    const release = deps.deadlines.add(
      call.timeoutMs,
      (reason) =>
        controller.abort(reason ?? new DOMException("The upstream timed out.", "TimeoutError")),
    );
    const abort = () => {
      release();
      if (!controller.signal.aborted) controller.abort();
    };
    try {
      const reply = await provider.send({
        op: call.opFor?.(target) ?? call.op,
        body: call.bodyFor(target),
        stream: call.stream,
        signal: controller.signal,
        headers: call.headers,
      });
      const served = await firstBytes(reply, target, deps.now);
      if (!served.stream) release();
      return { reply: served, target, attempts, release, abort };
    } catch (error) {
      abort();
      if (!(error instanceof GatewayError) || !error.retryable) throw error;
      if (error.retryAfter !== undefined) {
        deps.cooldowns.set(target.model.id, deps.now() + error.retryAfter * 1000);
      }
      lastError = error;
    }
  }
  throw lastError ?? new GatewayError("internal_error", 500, "No target was tried.");
}

/** Full jitter: uniformly up to base x 2^(n-1), capped. */
export function backoffMs(retry: number, config: BackoffConfig, random: () => number): number {
  const ceiling = Math.min(config.maxMs, config.baseMs * 2 ** (retry - 1));
  return Math.round(random() * ceiling);
}

/** Reads a stream's first bytes, so that a reset or an empty body can still fall back. */
async function firstBytes(
  reply: UpstreamReply,
  target: Target,
  now: () => number,
): Promise<ServedReply> {
  if (!reply.stream) return reply;
  const reader = reply.body.getReader();
  let first: ReadableStreamReadResult<Uint8Array>;
  try {
    first = await reader.read();
    while (!first.done && first.value.byteLength === 0) first = await reader.read();
  } catch (error) {
    reader.cancel().catch(() => {});
    throw upstreamCutEarly(target, error);
  }
  if (first.done) throw upstreamCutEarly(target);
  return { stream: true, reader, first: first.value, firstAt: now() };
}

function upstreamCutEarly(target: Target, cause?: unknown): GatewayError {
  if (cause instanceof GatewayError) return cause;
  if (cause instanceof DOMException && cause.name === "TimeoutError") {
    return new GatewayError(
      "upstream_timeout",
      504,
      `Provider "${target.provider.name}" did not start its stream in time.`,
      { cause },
    );
  }
  return new GatewayError(
    "upstream_error",
    502,
    `Provider "${target.provider.name}" ended its stream before sending anything.`,
    { cause },
  );
}

function coolingDown(target: Target, remainingMs: number): GatewayError {
  const seconds = Math.ceil(remainingMs / 1000);
  return new GatewayError(
    "upstream_rate_limited",
    429,
    `Provider "${target.provider.name}" asked for a pause of ${seconds} s before more requests for '${target.model.name}'.`,
    { retryAfter: seconds },
  );
}

/** When each target model may be tried again, from its upstream's Retry-After. */
export interface Cooldowns {
  remaining(modelId: string, now: number): number;
  set(modelId: string, until: number): void;
}

export function createCooldowns(): Cooldowns {
  const until = new Map<string, number>();
  return {
    remaining(modelId, now) {
      const end = until.get(modelId);
      if (end === undefined) return 0;
      if (end <= now) {
        until.delete(modelId);
        return 0;
      }
      return end - now;
    },
    set(modelId, end) {
      if (end > (until.get(modelId) ?? 0)) until.set(modelId, end);
    },
  };
}
