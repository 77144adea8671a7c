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
 */
import { feeOf } from "../../schema/ledger.ts";
import { tokenCost } from "../../schema/money.ts";
import { GatewayError } from "../errors.ts";
import type { ModelPolicy } from "../policy/snapshot.ts";
import type { Allowances, Reservation } from "./allowances.ts";

/** Output tokens reserved for a model with no cap set when the request sets no max_tokens. */
export const DEFAULT_OUTPUT_CAP = 4_096;

export interface WorstCase {
  /** Prompt tokens, or a bound on them. */
  promptTokens: number;
  /** The request's max_tokens (or max_completion_tokens / max_output_tokens), if any. */
  maxTokens: number | null;
}

/** The most `models` can cost for a request, fee included, in microcents. */
export function worstCaseCost(
  models: readonly ModelPolicy[],
  request: WorstCase,
  feeBps: number,
): bigint {
  let worst = 0n;
  for (const model of models) {
    const output = request.maxTokens ?? model.maxOutputTokens ?? DEFAULT_OUTPUT_CAP;
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
  const { models, maxTokens, feeBps } = request;
  const bound = worstCaseCost(models, { promptTokens: request.promptBound, maxTokens }, feeBps);
  if (bound === 0n) return null;
  const quick = await allowances.reserve(request.accountId, bound);
  if (quick) return quick;
  const counted = worstCaseCost(
    models,
    { promptTokens: await request.countPrompt(), maxTokens },
    feeBps,
  );
  const reserved = counted < bound ? await allowances.reserve(request.accountId, counted) : null;
  if (reserved) return reserved;
  throw insufficientQuota(counted);
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
