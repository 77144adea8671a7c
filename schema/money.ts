/**
 * Money is an integer number of microcents: 1 USD = 100,000,000 units
 * (1e-8 USD), stored as int8 and handled as bigint. No float ever touches an
 * amount; prices are microcents per million tokens.
 */

/** Microcents in one US dollar. */
export const UNITS_PER_USD = 100_000_000n;
const DECIMALS = 8;
const TOKENS_PER_PRICE_UNIT = 1_000_000n;

const USD_PATTERN = /^(-)?(\d+)(?:\.(\d+))?$/;

/** Parses a decimal USD string ("2.50") into microcents, exactly. */
export function parseUsd(text: string): bigint {
  const match = USD_PATTERN.exec(text.trim());
  if (!match) {
    throw new RangeError(`Cannot parse "${text}" as a USD amount: expected digits like 2.50`);
  }
  const [, sign, whole = "0", fraction = ""] = match;
  if (fraction.length > DECIMALS) {
    throw new RangeError(`Cannot parse "${text}" as a USD amount: at most ${DECIMALS} decimals`);
  }
  const units = BigInt(whole) * UNITS_PER_USD + BigInt(fraction.padEnd(DECIMALS, "0"));
  return sign ? -units : units;
}

/** 10n ** n for the exponents formatUsd uses (every billed response formats two amounts). */
const POWERS_OF_TEN = Array.from({ length: DECIMALS + 1 }, (_, n) => 10n ** BigInt(n));
const pow10 = (n: number) => POWERS_OF_TEN[n] ?? 10n ** BigInt(n);

/** Formats microcents as a USD decimal string, by default to 6 decimals (rounded half up). */
export function formatUsd(units: bigint, decimals = 6): string {
  const negative = units < 0n;
  let abs = negative ? -units : units;
  const drop = DECIMALS - decimals;
  if (drop > 0) {
    const scale = pow10(drop);
    abs = (abs + scale / 2n) / scale;
  }
  const scale = pow10(decimals);
  const whole = abs / scale;
  const fraction = decimals > 0 ? "." + (abs % scale).toString().padStart(decimals, "0") : "";
  return `${negative && abs !== 0n ? "-" : ""}${whole}${fraction}`;
}

/** The cost of `tokens` at `pricePerMillion` microcents, rounded up to the next unit. */
export function tokenCost(tokens: number | bigint, pricePerMillion: bigint): bigint {
  const product = BigInt(tokens) * pricePerMillion;
  return (product + TOKENS_PER_PRICE_UNIT - 1n) / TOKENS_PER_PRICE_UNIT;
}

export interface Prices {
  input: bigint;
  output: bigint;
  cachedInput: bigint;
}

export interface TokenUsage {
  promptTokens: number;
  completionTokens: number;
  /** Prompt tokens served from the provider's cache (a subset of promptTokens). */
  cachedTokens: number;
}

/** The provider cost of one request's usage, in microcents. */
export function usageCost(usage: TokenUsage, prices: Prices): bigint {
  const cached = Math.min(usage.cachedTokens, usage.promptTokens);
  return tokenCost(usage.promptTokens - cached, prices.input) +
    tokenCost(cached, prices.cachedInput) +
    tokenCost(usage.completionTokens, prices.output);
}
