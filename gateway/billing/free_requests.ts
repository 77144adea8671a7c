/**
 * A replica's view of its accounts' free BYOK requests: allowances
 * (allowances.ts) over byok_free_store.ts, in units of one request, keyed
 * by byokMonth(). Once a month's free requests are all taken, every further
 * BYOK request of that account would ask the database again (its lease is
 * empty and cannot grow): so a month found used up is not asked about again
 * for `recheckMs`; its requests pay the routing fee without a round trip.
 * Free requests other replicas give back (idle leases) are found at the
 * next check.
 */
import type { Allowances, Reservation } from "./allowances.ts";

export interface FreeRequests {
  /** One free request of the month `subject` (byokMonth()), or null when none is left. */
  take(subject: string): Reservation | null | Promise<Reservation | null>;
  /** Ends a request's hold on its free request: `used` keeps it taken, otherwise it goes back. */
  settle(reservation: Reservation, used: boolean): void;
  /** The allowances underneath (what settlement commits, what the server closes). */
  readonly allowances: Allowances;
}

/** Past this many used-up months remembered, those due for a recheck are forgotten. */
const PRUNE_AT = 10_000;

export function createFreeRequests(
  allowances: Allowances,
  options: { recheckMs: number; now?: () => number },
): FreeRequests {
  const now = options.now ?? (() => performance.now());
  /** Months found used up, until when they are not asked about. */
  const usedUp = new Map<string, number>();

  return {
    allowances,
    take(subject) {
      const until = usedUp.get(subject);
      if (until !== undefined) {
        if (now() < until) return null;
        usedUp.delete(subject);
      }
      const taken = allowances.reserve(subject, 1n);
      if (!(taken instanceof Promise)) return taken;
      return taken.then((reservation) => {
        if (!reservation) {
          if (usedUp.size >= PRUNE_AT) prune(usedUp, now());
          usedUp.set(subject, now() + options.recheckMs);
        }
        return reservation;
      });
    },
    settle(reservation, used) {
      allowances.settle(reservation, used ? 1n : 0n);
    },
  };
}

function prune(usedUp: Map<string, number>, at: number): void {
  for (const [subject, until] of usedUp) if (until <= at) usedUp.delete(subject);
}
