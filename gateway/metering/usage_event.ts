/** Builds the usage_events row for one answered request, with what it is billed. */
import type { BillingMode, NewUsageEvent } from "../../schema/database.ts";
import { feeOf } from "../../schema/ledger.ts";
import { type TokenUsage, usageCost } from "../../schema/money.ts";
import type { ModelPolicy, ProviderPolicy } from "../policy/snapshot.ts";
import type { RequestContext } from "../routes/context.ts";

export interface Outcome {
  model: string;
  route?: { model: ModelPolicy; provider: ProviderPolicy };
  status: number;
  errorCode?: string;
  stream: boolean;
  usage?: TokenUsage | null;
  estimated?: boolean;
  ttfbMs?: number | null;
  /** How the request is billed; absent: not billed (no money on this gateway). */
  billing?: { mode: BillingMode; feeBps: number; leaseId: string | null };
}

/** A usage row plus what settling its charge needs (not a column). */
export type UsageRecord = NewUsageEvent & {
  /**
   * Present on billed requests only: the allowance the request's reservation
   * came from (null when there was nothing to reserve).
   */
  lease_id?: string | null;
};

/** A timestamp as toISOString() writes it; such text (what usage events carry) as it is. */
export function isoTime(at: Date | string): string {
  if (typeof at === "string" && at.length === 24 && at.endsWith("Z")) return at;
  return new Date(at).toISOString();
}

export function usageEvent(ctx: RequestContext, outcome: Outcome): UsageRecord {
  const usage = outcome.usage ?? { promptTokens: 0, completionTokens: 0, cachedTokens: 0 };
  const cost = outcome.route ? usageCost(usage, outcome.route.model.prices) : 0n;
  const { billing } = outcome;
  return {
    billing_mode: billing?.mode ?? "standard",
    fee: billing ? feeOf(cost, billing.feeBps) : 0n,
    ...(billing ? { lease_id: billing.leaseId } : {}),
    request_id: ctx.requestId,
    account_id: ctx.key!.accountId,
    api_key_id: ctx.key!.id,
    agent_name: ctx.agent?.name ?? null,
    agent_purpose: ctx.agent?.purpose ?? null,
    agent_owner: ctx.agent?.owner ?? null,
    endpoint: ctx.endpoint,
    model: outcome.model,
    provider_id: outcome.route?.provider.id ?? null,
    provider_name: outcome.route?.provider.name ?? null,
    upstream_model: outcome.route?.model.upstreamName ?? null,
    status: outcome.status,
    error_code: outcome.errorCode ?? null,
    stream: outcome.stream,
    prompt_tokens: usage.promptTokens,
    completion_tokens: usage.completionTokens,
    cached_tokens: usage.cachedTokens,
    total_tokens: usage.promptTokens + usage.completionTokens,
    cost,
    estimated: outcome.estimated ?? false,
    latency_ms: Math.round(ctx.now() - ctx.startedAt),
    ttfb_ms: outcome.ttfbMs === undefined || outcome.ttfbMs === null
      ? null
      : Math.round(outcome.ttfbMs),
    // Text, made once: the intent and the completion both carry it, and JSON wants it so.
    created_at: ctx.receivedIso ??= ctx.receivedAt.toISOString(),
  };
}
