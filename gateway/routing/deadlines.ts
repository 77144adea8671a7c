/**
 * Attempt deadlines on one coarse clock instead of a timer per request.
 *
 * Almost every upstream call ends long before its 30 s (or 120 s) deadline,
 * so arming and clearing a runtime timer for each one is wasted work on the
 * hot path. Here a deadline is an entry in a set; one interval, running only
 * while the set is not empty, fires the entries that are due. A deadline
 * fires at most one tick late.
 */

export interface Deadlines {
  /**
   * Calls `onExpire` once `ms` have passed, unless the returned cancel runs
   * first; with expireAll's reason when that fired it.
   */
  add(ms: number, onExpire: (reason?: unknown) => void): () => void;
  /** Fires every armed deadline now, with `reason` (a shutdown that stops waiting for upstreams). */
  expireAll(reason?: unknown): void;
  /** How many deadlines are armed. */
  readonly size: number;
}

interface Entry {
  at: number;
  onExpire: (reason?: unknown) => void;
}

export const DEADLINE_TICK_MS = 25;

export function createDeadlines(
  options: { tickMs?: number; now?: () => number } = {},
): Deadlines {
  const tickMs = options.tickMs ?? DEADLINE_TICK_MS;
  const now = options.now ?? (() => performance.now());
  const armed = new Set<Entry>();
  let interval: ReturnType<typeof setInterval> | undefined;

  const tick = () => {
    const at = now();
    for (const entry of armed) {
      if (entry.at > at) continue;
      armed.delete(entry);
      entry.onExpire();
    }
    if (armed.size === 0) stop();
  };

  const stop = () => {
    if (interval === undefined) return;
    clearInterval(interval);
    interval = undefined;
  };

  return {
    add(ms, onExpire) {
      const entry: Entry = { at: now() + ms, onExpire };
      armed.add(entry);
      if (interval === undefined) {
        // A pending deadline alone must not keep the process alive.
        interval = setInterval(tick, tickMs);
        Deno.unrefTimer(interval);
      }
      return () => {
        armed.delete(entry);
      };
    },
    expireAll(reason) {
      const due = [...armed];
      armed.clear();
      stop();
      for (const entry of due) entry.onExpire(reason);
    },
    get size() {
      return armed.size;
    },
  };
}
