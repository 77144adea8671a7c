/**
 * What requests reserve from besides balances, through the same allowances:
 * keys' lifetime spend limits (key_allowance_store.ts) and the months' free
 * BYOK requests (byok_free_store.ts). One replica's set, created by the
 * server next to the balances' allowances, swept and closed with them.
 */
import type { Kysely } from "kysely";
import type { Database } from "../../schema/database.ts";
import { type Allowances, createAllowances } from "./allowances.ts";
import { createByokFreeStore } from "./byok_free_store.ts";
import { createFreeRequests, type FreeRequests } from "./free_requests.ts";
import { createKeyAllowanceStore } from "./key_allowance_store.ts";
import type { LeaseCharges } from "./settlement.ts";

/** A lease of free requests grows by at most this many at once. */
const FREE_MAX_GROWTH = 1_000n;
/** A month found used up is asked about again after this long (free requests given back). */
const FREE_RECHECK_MS = 5_000;

export interface LimitPools {
  /** Keys' spend limits, by key id. */
  keyLimits: Allowances;
  /** The months' free BYOK requests, by byokMonth(). */
  free: FreeRequests;
  /** Commits a settled lease charge of these pools; false for a balance's (not theirs). */
  committed(charge: LeaseCharges): boolean;
  /** Reclaims the expired leases of both pools (of replicas that died). */
  sweep(): Promise<void>;
  /** Gives back every idle lease of both pools. */
  close(): Promise<void>;
}

export interface LimitPoolOptions {
  replicaId: string;
  /** As the balances': the most a key's lease grows by at once, in microcents. */
  maxGrowth: bigint;
  share: number;
  ttlMs: number;
  /** BYOK requests per account and month that carry no routing fee. */
  freeRequests: number;
  log: (message: string, error?: unknown) => void;
}

export function createLimitPools(db: Kysely<Database>, options: LimitPoolOptions): LimitPools {
  const { replicaId, share, ttlMs, log } = options;
  const keyStore = createKeyAllowanceStore(db);
  const freeStore = createByokFreeStore(db, { freeRequests: options.freeRequests });
  const keyLimits = createAllowances({
    store: keyStore,
    replicaId,
    maxGrowth: options.maxGrowth,
    share,
    ttlMs,
    log,
  });
  const freeAllowances = createAllowances({
    store: freeStore,
    replicaId,
    maxGrowth: FREE_MAX_GROWTH,
    share,
    ttlMs,
    log,
  });
  return {
    keyLimits,
    free: createFreeRequests(freeAllowances, { recheckMs: FREE_RECHECK_MS }),
    committed(charge) {
      if (charge.pool === "key_limit") {
        keyLimits.committed(charge.accountId, charge.leaseId, charge.amount);
      } else if (charge.pool === "byok_free") {
        freeAllowances.committed(charge.accountId, charge.leaseId, charge.amount);
      } else return false;
      return true;
    },
    async sweep() {
      await keyStore.sweep();
      await freeStore.sweep();
    },
    async close() {
      await keyLimits.close();
      await freeAllowances.close();
    },
  };
}
