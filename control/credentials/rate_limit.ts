/**
 * Failed sign-ins, limited per email and client address, in memory: after
 * MAX_FAILURES failures within WINDOW_MS the pair is refused (without any
 * password check) until that window ends; a successful sign-in clears it.
 * Each control-plane replica counts on its own, so N replicas allow up to N
 * times as many guesses: this slows online guessing down, it does not make
 * it impossible (strong passwords and scrypt do the rest). The table holds
 * at most MAX_ENTRIES pairs: when full, expired ones are dropped, then the oldest.
 */

export const MAX_FAILURES = 5;
export const WINDOW_MS = 15 * 60_000;
const MAX_ENTRIES = 50_000;

export interface SignInLimiter {
  /** Seconds until `email` may try again from `ip`; 0 when it may now. */
  retryAfter(email: string, ip: string | null): number;
  failed(email: string, ip: string | null): void;
  succeeded(email: string, ip: string | null): void;
}

interface Window {
  failures: number;
  endsAt: number;
}

export function createSignInLimiter(
  options: { now?: () => number; maxFailures?: number; windowMs?: number } = {},
): SignInLimiter {
  const { now = Date.now, maxFailures = MAX_FAILURES, windowMs = WINDOW_MS } = options;
  const windows = new Map<string, Window>();
  const keyOf = (email: string, ip: string | null) => `${email.trim().toLowerCase()}\n${ip ?? ""}`;

  function makeRoom(at: number): void {
    for (const [key, window] of windows) {
      if (window.endsAt <= at) windows.delete(key);
    }
    // Still nearly full: drop the oldest tenth (a Map iterates in insertion
    // order), so a flood does not rescan the table on every failure.
    for (const key of windows.keys()) {
      if (windows.size < MAX_ENTRIES * 0.9) break;
      windows.delete(key);
    }
  }

  return {
    retryAfter(email, ip) {
      const window = windows.get(keyOf(email, ip));
      const at = now();
      if (!window || window.endsAt <= at || window.failures < maxFailures) return 0;
      return Math.ceil((window.endsAt - at) / 1000);
    },
    failed(email, ip) {
      const key = keyOf(email, ip);
      const at = now();
      const window = windows.get(key);
      if (window && window.endsAt > at) {
        window.failures++;
        return;
      }
      if (windows.size >= MAX_ENTRIES) makeRoom(at);
      windows.delete(key);
      windows.set(key, { failures: 1, endsAt: at + windowMs });
    },
    succeeded(email, ip) {
      windows.delete(keyOf(email, ip));
    },
  };
}
