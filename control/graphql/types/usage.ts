/** Usage events: one per gateway request, as metered. */
import type { UsageEvent } from "../../../schema/database.ts";
import { toGraphQLError } from "../../errors.ts";
import { latestUsage } from "../../services/usage.ts";
import { builder } from "../builder.ts";

export const UsageEventRef = builder.objectRef<UsageEvent>("UsageEvent").implement({
  description: "One gateway request as metered.",
  fields: (t) => ({
    requestId: t.exposeString("request_id"),
    accountId: t.exposeID("account_id"),
    apiKeyId: t.exposeID("api_key_id"),
    agentName: t.exposeString("agent_name", { nullable: true }),
    agentPurpose: t.exposeString("agent_purpose", { nullable: true }),
    agentOwner: t.exposeString("agent_owner", { nullable: true }),
    endpoint: t.exposeString("endpoint"),
    model: t.exposeString("model", { description: "The model the caller asked for." }),
    providerName: t.exposeString("provider_name", { nullable: true }),
    upstreamModel: t.exposeString("upstream_model", { nullable: true }),
    status: t.exposeInt("status", { description: "The HTTP status of the answer." }),
    errorCode: t.exposeString("error_code", { nullable: true }),
    stream: t.exposeBoolean("stream"),
    promptTokens: t.exposeInt("prompt_tokens"),
    completionTokens: t.exposeInt("completion_tokens"),
    cachedTokens: t.exposeInt("cached_tokens"),
    totalTokens: t.exposeInt("total_tokens"),
    cost: t.expose("cost", { type: "Money" }),
    estimated: t.exposeBoolean("estimated", {
      description: "True when usage was estimated (a cut stream), not reported upstream.",
    }),
    latencyMs: t.exposeInt("latency_ms"),
    ttfbMs: t.exposeInt("ttfb_ms", { nullable: true }),
    createdAt: t.expose("created_at", { type: "DateTime" }),
  }),
});

builder.queryField("usage", (t) =>
  t.field({
    type: [UsageEventRef],
    description: "The latest usage events, newest first: limit 1..500 (default 50).",
    args: { limit: t.arg.int(), accountId: t.arg.id() },
    resolve: async (_root, args, ctx) => {
      try {
        return await latestUsage(ctx.db, args);
      } catch (error) {
        throw toGraphQLError(error);
      }
    },
  }));
