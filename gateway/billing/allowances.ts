/**
 * Reservations against prepaid balances, without the database on the hot
 * path. A replica leases an allowance from an account's balance (one
 * conditional update, allowance_store.ts) and reserves from it in memory; a
 * request's reservation settles to its cost, which stays held until the
 * ledger has committed it against the lease; what a lease does not use goes
 * back when the account falls idle, and a lease left by a replica that died
 * expires and is swept back.
 *
 * A lease is used here only while it is surely not yet expired in the
 * database: until the TTL (less a tenth) from the start of its last
 * successful growth or renewal. A replica cut off from the database thus
 * stops reserving from a lease before another replica can sweep it back and
 * lease that money again.
 *
 * Per account and replica there is at most one lease, with:
 *   leased = what the lease holds in the database (less charges committed),
 *   held   = open reservations + charges not yet committed.
 * A reservation is granted in memory while leased - held covers it; otherwise
 * the lease grows by a share of the free balance, at least what is missing,
 * so a small balance ends up leased one request at a time. Concurrent
 * requests for one account wait on one growth.
 *
 * The same machinery, over other stores, leases keys' spend limits (keyed
 * by key id: key_allowance_store.ts) and months' free BYOK requests (keyed
 * by byokMonth(), in units of requests: byok_free_store.ts); `accountId`
 * then names that subject.
 */
import type { AllowanceStore } from "./allowance_store.ts";

export interface Reservation {
  accountId: string;
  leaseId: string;
  amount: bigint;
}

export interface AllowanceOptions {
  store: AllowanceStore;
  replicaId: string;
  /** The most a lease grows by at once, in microcents (unless one request needs more). */
  maxGrowth: bigint;
  /** A growth takes at most 1/share of the free balance. */
  share: number;
  /** Lease lifetime without renewal; renewed every third of it while held. */
  ttlMs: number;
  /** Monotonic milliseconds; performance.now() unless a test sets it. */
  now?: () => number;
  log?: (message: string, error?: unknown) => void;
}

export interface Allowances {
  /**
   * Reserves `amount` microcents for a request: synchronously from a warm
   * lease, or after one database round trip. null when the balance cannot
   * cover it.
   */
  reserve(accountId: string, amount: bigint): Reservation | Promise<Reservation | null>;
  /** Ends a reservation: `cost` stays held until committed; the rest is free again. */
  settle(reservation: Reservation, cost: bigint): void;
  /** Charges the ledger committed against a lease (see consumeLeases). */
  committed(accountId: string, leaseId: string, amount: bigint): void;
  /** What is leased and held for an account, for tests and metrics. */
  peek(accountId: string):
    | {
      leaseId: string | null;
      leased: bigint;
      held: bigint;
      overdrawn: boolean;
      /** Whether the lease is still used in memory (not past 90% of its TTL). */
      usable: boolean;
    }
    | undefined;
  /**
   * The balance as this replica knows it: the database's at the last lease
   * growth, less this replica's charges since (other replicas' are not seen).
   */
  balance(accountId: string): bigint | null;
  /** Renews held leases and releases idle ones; runs on a timer too. */
  tick(): Promise<void>;
  /** Releases every idle lease; the rest expire. */
  close(): Promise<void>;
}

interface AccountAllowance {
  leaseId: string | null;
  /** Monotonic time after which the lease may have expired in the database. */
  usableUntil: number;
  leased: bigint;
  held: bigint;
  /** The balance at the last growth, less charges committed since; null before any. */
  balance: bigint | null;
  /** Charges settled here and not yet committed (part of `held`). */
  owed: bigint;
  /**
   * A charge went past its reservation: nothing more is reserved until the
   * database has seen that charge and says the balance still covers more.
   */
  overdrawn: boolean;
  growing: Promise<void> | null;
  releasing: Promise<void> | null;
}

export function createAllowances(options: AllowanceOptions): Allowances {
  const { store } = options;
  const log = options.log ?? ((message, error) => console.error(message, error ?? ""));
  const accounts = new Map<string, AccountAllowance>();
  const now = options.now ?? (() => performance.now());
  /** How long a lease renewed (or grown) at `from` is used here: its TTL, less a tenth. */
  const usableFrom = (from: number) => from + options.ttlMs * 0.9;

  const stateOf = (accountId: string) => {
    let state = accounts.get(accountId);
    if (!state) {
      state = {
        leaseId: null,
        usableUntil: 0,
        leased: 0n,
        held: 0n,
        balance: null,
        owed: 0n,
        overdrawn: false,
        growing: null,
        releasing: null,
      };
      accounts.set(accountId, state);
    }
    return state;
  };

  const usable = (state: AccountAllowance) =>
    state.leaseId !== null && !state.overdrawn && now() < state.usableUntil;

  /**
   * Reserves from the lease in memory. `grown`: right after a growth, which
   * renewed the lease in the same update (however long the round trip took).
   */
  const take = (accountId: string, state: AccountAllowance, amount: bigint, grown = false) => {
    if (state.leaseId === null || state.overdrawn) return null;
    if (!grown && now() >= state.usableUntil) return null;
    if (state.leased - state.held < amount) return null;
    state.held += amount;
    return { accountId, leaseId: state.leaseId!, amount };
  };

  async function reserveSlowly(
    accountId: string,
    state: AccountAllowance,
    amount: bigint,
  ): Promise<Reservation | null> {
    for (;;) {
      // Until the overspend is committed, the database cannot judge the balance.
      if (state.overdrawn && state.owed > 0n) return null;
      if (state.releasing) await state.releasing;
      if (state.growing) {
        await state.growing;
        const reserved = take(accountId, state, amount);
        if (reserved) return reserved;
        continue;
      }
      // After an overspend, or once the lease may have expired, ask the database
      // even when the lease still holds enough (growing renews it too).
      const local = usable(state) ? state.leased - state.held : 0n;
      const missing = amount - local;
      let granted = false;
      const started = now();
      state.growing = (async () => {
        const lease = await store.grow({
          accountId,
          leaseId: state.leaseId,
          replicaId: options.replicaId,
          min: missing,
          max: missing > options.maxGrowth ? missing : options.maxGrowth,
          share: options.share,
          ttlMs: options.ttlMs,
        });
        if (!lease) return;
        granted = true;
        state.overdrawn = false;
        // A swept lease was replaced by a new one: what it held is gone.
        state.leased = lease.id === state.leaseId ? state.leased + lease.granted : lease.amount;
        state.leaseId = lease.id;
        state.usableUntil = usableFrom(started);
        state.balance = lease.balance;
      })().finally(() => {
        state.growing = null;
      });
      await state.growing;
      if (!granted) return null;
      const reserved = take(accountId, state, amount, true);
      if (reserved) return reserved;
    }
  }

  async function release(state: AccountAllowance): Promise<void> {
    const leaseId = state.leaseId;
    if (leaseId === null || state.held !== 0n || state.growing) return;
    state.leaseId = null;
    state.leased = 0n;
    state.releasing = store.release(leaseId).finally(() => {
      state.releasing = null;
    });
    await state.releasing;
  }

  let ticking: Promise<void> | null = null;
  async function tick(): Promise<void> {
    for (const [accountId, state] of accounts) {
      try {
        if (state.leaseId === null) {
          if (state.held === 0n && !state.growing && !state.releasing) accounts.delete(accountId);
        } else if (state.held === 0n) {
          await release(state);
        } else {
          const started = now();
          if (await store.renew(state.leaseId, options.ttlMs)) {
            state.usableUntil = usableFrom(started);
          } else {
            // Swept while held (this replica stalled): later charges settle against the balance alone.
            state.leaseId = null;
            state.leased = 0n;
          }
        }
      } catch (error) {
        log(`Cannot renew or release the allowance of account ${accountId}`, error);
      }
    }
  }

  const timer = setInterval(() => {
    ticking ??= tick().finally(() => {
      ticking = null;
    });
  }, Math.max(50, Math.floor(options.ttlMs / 3)));
  Deno.unrefTimer(timer);

  return {
    reserve(accountId, amount) {
      const state = stateOf(accountId);
      if (!state.growing && !state.releasing) {
        const reserved = take(accountId, state, amount);
        if (reserved) return reserved;
      }
      return reserveSlowly(accountId, state, amount);
    },
    settle(reservation, cost) {
      const state = stateOf(reservation.accountId);
      state.held += cost - reservation.amount;
      state.owed += cost;
      if (cost > reservation.amount) state.overdrawn = true;
    },
    committed(accountId, leaseId, amount) {
      const state = accounts.get(accountId);
      if (!state) return;
      state.held -= amount;
      state.owed -= amount;
      if (state.balance !== null) state.balance -= amount;
      if (state.leaseId === leaseId) {
        state.leased = state.leased > amount ? state.leased - amount : 0n;
      }
    },
    balance(accountId) {
      const state = accounts.get(accountId);
      return state?.balance == null ? null : state.balance - state.owed;
    },
    peek(accountId) {
      const state = accounts.get(accountId);
      return state && {
        leaseId: state.leaseId,
        leased: state.leased,
        held: state.held,
        overdrawn: state.overdrawn,
        usable: usable(state),
      };
    },
    tick,
    async close() {
      clearInterval(timer);
      if (ticking) await ticking;
      for (const state of accounts.values()) {
        try {
          await release(state);
        } catch (error) {
          log("Cannot release an allowance at shutdown", error);
        }
      }
    },
  };
}
