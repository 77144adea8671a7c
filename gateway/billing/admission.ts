/**
 * Admission: before a Standard-mode request goes upstream it reserves its
 * worst case, the prompt's tokens at the input price plus the most output it
 * may produce (max_tokens, else the model's output cap) at the output price,
 * plus the operator's fee, on the dearest of the targets it may be served
 * by. A balance that cannot cover that gets a 402 a person can act on.
 *
 * Counting a prompt's tokens costs tens of microseconds, so admission first
 * tries a bound that costs nothing: a token is at least one byte, so the
 * request body's length bounds the prompt. Only when that bound does not fit
 * is the prompt counted with the tokenizer and the smaller figure tried.
 *
 * admitBilled does the same for a BYOK request and for a key with a spend
 * limit. A BYOK request first takes one of its account's free requests for
 * the month; past them it reserves only its worst-case routing fee (the
 * model's prices applied to the worst case, times the BYOK fee rate), never
 * a provider cost. A key with a spend limit must reserve the same amount
 * from its own allowance as from the account's: both, or the request is
 * refused.
 */
import type { BillingMode } from "../../schema/database.ts";
import { feeOf } from "../../schema/ledger.ts";
import { formatUsd, tokenCost } from "../../schema/money.ts";
import { GatewayError } from "../errors.ts";
import type { ModelPolicy } from "../policy/snapshot.ts";
import type { Allowances, Reservation } from "./allowances.ts";
import type { FreeRequests } from "./free_requests.ts";
import type { BilledUsage } from "./settlement.ts";

/** Output tokens reserved for a model with no cap set when the request sets no max_tokens. */
export const DEFAULT_OUTPUT_CAP = 4_096;

export interface WorstCase {
  /** Prompt tokens, or a bound on them. */
  promptTokens: number;
  /** The request's max_tokens (or max_completion_tokens / max_output_tokens), if any. */
  maxTokens: number | null;
  /**
   * How many outputs of up to maxTokens the upstream may make and bill (chat's
   * `n`, completions' `n` or `best_of` for each prompt, images' `n`); 1 if unset.
   */
  outputs?: number;
}

/** The most `models` can cost for a request, fee included, in microcents. */
export function worstCaseCost(
  models: readonly ModelPolicy[],
  request: WorstCase,
  feeBps: number,
): bigint {
  let worst = 0n;
  for (const model of models) {
    const output = (request.maxTokens ?? model.maxOutputTokens ?? DEFAULT_OUTPUT_CAP) *
      (request.outputs ?? 1);
    const cost = tokenCost(request.promptTokens, model.prices.input) +
      tokenCost(output, model.prices.output);
    if (cost > worst) worst = cost;
  }
  return worst + feeOf(worst, feeBps);
}

export interface AdmitRequest {
  accountId: string;
  models: readonly ModelPolicy[];
  maxTokens: number | null;
  /** Outputs of up to maxTokens each the request may make (WorstCase.outputs). */
  outputs?: number;
  /** A bound on the prompt's tokens that costs nothing to compute. */
  promptBound: number;
  /** The prompt's tokens, counted with the tokenizer. */
  countPrompt: () => number | Promise<number>;
  feeBps: number;
}

/**
 * Reserves the request's worst case, or throws 402 insufficient_quota. null
 * when there is nothing to reserve (the models are free).
 */
export async function admit(
  allowances: Allowances,
  request: AdmitRequest,
): Promise<Reservation | null> {
  const { models, maxTokens, outputs, feeBps } = request;
  const bound = worstCaseCost(
    models,
    { promptTokens: request.promptBound, maxTokens, outputs },
    feeBps,
  );
  if (bound === 0n) return null;
  const quick = await allowances.reserve(request.accountId, bound);
  if (quick) return quick;
  const counted = worstCaseCost(
    models,
    { promptTokens: await request.countPrompt(), maxTokens, outputs },
    feeBps,
  );
  const reserved = counted < bound ? await allowances.reserve(request.accountId, counted) : null;
  if (reserved) return reserved;
  throw insufficientQuota(counted);
}

/** What admitBilled reserves from: the Billing of routes/context.ts. */
export interface BilledPools {
  /** Accounts' balances. */
  allowances: Allowances;
  /** The operator's fee on Standard-mode requests, in basis points. */
  feeBps: number;
  /** Keys' lifetime spend limits, by key id; absent: limits are not enforced. */
  keyLimits?: Allowances;
  /** The BYOK routing fee rate, and the months' free requests (absent: none are free). */
  byok?: { feeBps: number; free?: FreeRequests };
}

export interface BilledRequest extends AdmitRequest {
  keyId: string;
  /** The key's lifetime spend limit in microcents; null: none. */
  spendLimit: bigint | null;
  /** For a BYOK request, the month its free requests are taken from (byokMonth()); else null. */
  byokMonth: string | null;
}

/** A BYOK request, or one on a key with a spend limit, once admitted. */
export interface Admission {
  /** How its usage row is billed: the fee rate is 0 for a free BYOK request. */
  billing: { mode: BillingMode; feeBps: number; leaseId: string | null };
  /** Names its other leases on its usage row, for settlement (settlement.ts). */
  mark(event: BilledUsage): void;
  /**
   * Ends its reservations: `charge` stays held against the balance and the
   * key until committed; its free request stays taken when the request counts
   * in its month (settlement.ts countsInMonth(status)), or goes back.
   */
  settle(charge: bigint, counted: boolean): void;
}

/** A free BYOK request carries no fee. */
const NO_FEE = 0;

/**
 * Admits a BYOK request or a request on a key with a spend limit; throws
 * 402 insufficient_quota when the balance cannot cover it, or 402
 * key_spend_limit_reached when the key's limit cannot.
 */
export async function admitBilled(pools: BilledPools, request: BilledRequest): Promise<Admission> {
  const byok = request.byokMonth !== null;
  const free = byok ? await pools.byok?.free?.take(request.byokMonth!) ?? null : null;
  if (free) return admission(pools, { mode: "byok", feeBps: NO_FEE }, { free });
  const feeBps = byok ? pools.byok?.feeBps ?? 0 : request.feeBps;
  const keys = request.spendLimit === null ? undefined : pools.keyLimits;
  // BYOK pays no provider cost: the worst case is the fee on what it would have been.
  const worst = (promptTokens: number) => {
    const prompt = { promptTokens, maxTokens: request.maxTokens, outputs: request.outputs };
    return byok
      ? feeOf(worstCaseCost(request.models, prompt, 0), feeBps)
      : worstCaseCost(request.models, prompt, feeBps);
  };
  const mode = byok ? "byok" : "standard";
  const bound = worst(request.promptBound);
  if (bound === 0n) return admission(pools, { mode, feeBps }, {});
  const quick = await reserveBoth(pools.allowances, keys, request, bound);
  if (typeof quick !== "string") return admission(pools, { mode, feeBps }, quick);
  const counted = worst(await request.countPrompt());
  const held = counted < bound
    ? await reserveBoth(pools.allowances, keys, request, counted)
    : quick;
  if (typeof held !== "string") return admission(pools, { mode, feeBps }, held);
  if (held === "key") throw keySpendLimitReached(request.spendLimit!, counted);
  throw byok ? routingFeeNotCovered(counted) : insufficientQuota(counted);
}

/** `amount` from the key's limit (if it has one) and the balance, or which one refused. */
async function reserveBoth(
  accounts: Allowances,
  keys: Allowances | undefined,
  request: BilledRequest,
  amount: bigint,
): Promise<{ account: Reservation; key: Reservation | null } | "account" | "key"> {
  let key: Reservation | null = null;
  if (keys) {
    key = await keys.reserve(request.keyId, amount);
    if (!key) return "key";
  }
  const account = await accounts.reserve(request.accountId, amount);
  if (!account) {
    if (key) keys!.settle(key, 0n);
    return "account";
  }
  return { account, key };
}

function admission(
  pools: BilledPools,
  billed: { mode: BillingMode; feeBps: number },
  held: { account?: Reservation; key?: Reservation | null; free?: Reservation },
): Admission {
  const { account, key, free } = held;
  return {
    billing: { ...billed, leaseId: account?.leaseId ?? null },
    mark(event) {
      if (key) event.key_lease_id = key.leaseId;
      if (free) event.free_lease_id = free.leaseId;
    },
    settle(charge, counted) {
      if (account) pools.allowances.settle(account, charge);
      if (key) pools.keyLimits!.settle(key, charge);
      if (free) pools.byok!.free!.settle(free, counted);
    },
  };
}

function keySpendLimitReached(limit: bigint, needed: bigint): GatewayError {
  return new GatewayError(
    "key_spend_limit_reached",
    402,
    `This API key's spend limit of ${formatUsd(limit, 2)} USD is reached: what the key has ` +
      `left cannot cover this request (it may cost up to ${formatNeeded(needed)} USD). ` +
      "Raise the key's spend limit, use another key, or lower max_tokens.",
    { retryable: false },
  );
}

function routingFeeNotCovered(needed: bigint): GatewayError {
  return new GatewayError(
    "insufficient_quota",
    402,
    "This account's free BYOK requests for the month are used, and its balance cannot cover " +
      `this request's routing fee (up to ${formatNeeded(needed)} USD). ` +
      "Top up the account's balance, or lower max_tokens, and try again.",
    { retryable: false },
  );
}

function insufficientQuota(needed: bigint): GatewayError {
  return new GatewayError(
    "insufficient_quota",
    402,
    `Your balance cannot cover this request (it may cost up to ${formatNeeded(needed)} USD). ` +
      "Top up the account's balance, or lower max_tokens, and try again.",
    { retryable: false },
  );
}

function formatNeeded(units: bigint): string {
  // Rounded up to the cent: what a person would top up.
  const cents = (units + 999_999n) / 1_000_000n;
  return `${cents / 100n}.${String(cents % 100n).padStart(2, "0")}`;
}
