/** Builds the usage_events row for one answered request. */
import type { NewUsageEvent } from "../../schema/database.ts";
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
}

export function usageEvent(ctx: RequestContext, outcome: Outcome): NewUsageEvent {
  const usage = outcome.usage ?? { promptTokens: 0, completionTokens: 0, cachedTokens: 0 };
  const cost = outcome.route ? usageCost(usage, outcome.route.model.prices) : 0n;
  return {
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
    created_at: ctx.receivedAt,
  };
}
