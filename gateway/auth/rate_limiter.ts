/**
 * Requests-per-minute and tokens-per-minute limits of API keys, counted in
 * memory by this gateway replica alone: no database work per request, and so
 * no coordination between replicas either. With N replicas behind a load
 * balancer a key may get up to N times its limits; the operator who needs a
 * cluster-wide bound divides the limit by the replica count.
 *
 * Each limited key has a sliding window of the last 60 one-second slots, so
 * "per minute" means any 60 seconds (to within a second), not a calendar
 * minute, and a refused caller learns exactly when enough slots will have
 * aged out (Retry-After). Tokens are counted from the prompt's estimate when
 * a request is admitted and corrected to the usage it actually reported
 * (prompt plus completion) when it is metered.
 *
 * A request whose estimate alone exceeds the key's tokens per minute is
 * admitted as if it cost the whole limit (only when the window is empty), so
 * that a large prompt is never refused for good by an estimate; its actual
 * usage then holds the window until it ages out.
 */
import { GatewayError } from "../errors.ts";

const SLOTS = 60;
const SLOT_MS = 1_000;
/** Windows idle for a whole minute are dropped at most this often. */
const SWEEP_MS = 60_000;

/** What a key is limited to; null: not limited. */
export interface KeyLimits {
  id: string;
  rpmLimit: number | null;
  tpmLimit: number | null;
}

/** Tokens counted for an admitted request, to be corrected when it is metered. */
export interface TokenTicket {
  keyId: string;
  /** The slot (seconds since the clock's origin) the estimate went into. */
  second: number;
  estimate: number;
}

export interface RateLimiter {
  /**
   * Counts one request and `promptTokens` (the prompt's estimate) against the
   * key's limits at monotonic `nowMs`, or throws 429 rate_limit_exceeded and
   * counts nothing. Returns the ticket to settle, or null when the key has no
   * tokens-per-minute limit (nothing to correct).
   */
  admit(key: KeyLimits, promptTokens: number, nowMs: number): TokenTicket | null;
  /** Replaces a ticket's estimate with the tokens the request actually used. */
  settle(ticket: TokenTicket | null, actualTokens: number, nowMs: number): void;
}

/** A ring of per-second counts over the last SLOTS seconds. */
class Window {
  readonly counts = new Float64Array(SLOTS);
  total = 0;
  /** The second of the newest slot. */
  head = 0;

  /** Moves the window to `second`, emptying the slots that fell out of it. */
  advance(second: number): void {
    const steps = Math.min(second - this.head, SLOTS);
    for (let i = 1; i <= steps; i++) {
      const slot = (this.head + i) % SLOTS;
      this.total -= this.counts[slot]!;
      this.counts[slot] = 0;
    }
    if (second > this.head) this.head = second;
    if (this.total < 0.5) this.total = 0;
  }

  add(second: number, amount: number): void {
    const slot = second % SLOTS;
    // A correction never takes a slot below zero.
    const applied = Math.max(amount, -this.counts[slot]!);
    this.counts[slot]! += applied;
    this.total += applied;
  }

  /**
   * Milliseconds from `nowMs` until `amount` more fits under `limit`, or
   * Infinity when it never would.
   */
  waitFor(amount: number, limit: number, nowMs: number): number {
    const excess = this.total + amount - limit;
    if (excess <= 0) return 0;
    let freed = 0;
    for (let second = this.head - SLOTS + 1; second <= this.head; second++) {
      freed += this.counts[second % SLOTS]!;
      if (freed >= excess) return (second + SLOTS) * SLOT_MS - nowMs;
    }
    return Infinity;
  }
}

interface KeyWindows {
  requests: Window | null;
  tokens: Window | null;
}

export function createRateLimiter(): RateLimiter {
  const windows = new Map<string, KeyWindows>();
  let sweptAt = 0;

  function windowsOf(keyId: string): KeyWindows {
    let found = windows.get(keyId);
    if (!found) windows.set(keyId, found = { requests: null, tokens: null });
    return found;
  }

  /** Drops the windows of keys idle for a minute: a key's state costs ~1 KB. */
  function sweep(second: number): void {
    for (const [keyId, w] of windows) {
      const idle = (w.requests?.head ?? 0) <= second - SLOTS &&
        (w.tokens?.head ?? 0) <= second - SLOTS;
      if (idle) windows.delete(keyId);
    }
  }

  return {
    admit(key, promptTokens, nowMs) {
      const { rpmLimit, tpmLimit } = key;
      if (rpmLimit === null && tpmLimit === null) return null;
      const second = Math.floor(nowMs / SLOT_MS);
      if (nowMs - sweptAt >= SWEEP_MS) {
        sweptAt = nowMs;
        sweep(second);
      }
      const w = windowsOf(key.id);
      if (rpmLimit !== null) {
        w.requests ??= new Window();
        w.requests.advance(second);
        const wait = w.requests.waitFor(1, rpmLimit, nowMs);
        if (wait > 0) throw limited("requests", rpmLimit, wait);
      }
      let estimate = 0;
      if (tpmLimit !== null) {
        // A request uses at least a token, so a full window admits nothing more.
        estimate = Math.min(Math.max(Math.ceil(promptTokens), 1), tpmLimit);
        w.tokens ??= new Window();
        w.tokens.advance(second);
        const wait = w.tokens.waitFor(estimate, tpmLimit, nowMs);
        if (wait > 0) throw limited("tokens", tpmLimit, wait);
        w.tokens.add(second, estimate);
      }
      if (rpmLimit !== null) w.requests!.add(second, 1);
      return tpmLimit === null ? null : { keyId: key.id, second, estimate };
    },

    settle(ticket, actualTokens, nowMs) {
      if (!ticket) return;
      const tokens = windowsOf(ticket.keyId).tokens ??= new Window();
      const second = Math.floor(nowMs / SLOT_MS);
      tokens.advance(second);
      const delta = Math.max(Math.ceil(actualTokens), 0) - ticket.estimate;
      if (second - ticket.second < SLOTS) {
        tokens.add(ticket.second, delta);
      } else if (delta > 0) {
        // The estimate has aged out already (a stream longer than a minute):
        // what it fell short by is counted now.
        tokens.add(second, delta);
      }
    },
  };
}

function limited(what: "requests" | "tokens", limit: number, waitMs: number): GatewayError {
  const retryAfter = Number.isFinite(waitMs) ? Math.max(1, Math.ceil(waitMs / 1000)) : SLOTS;
  return new GatewayError(
    "rate_limit_exceeded",
    429,
    `Rate limit reached: this API key allows ${limit} ${what} per minute on this gateway. ` +
      `Try again in ${retryAfter} s.`,
    { retryable: true, retryAfter },
  );
}
