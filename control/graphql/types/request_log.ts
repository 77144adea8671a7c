/** Request logs: one per gateway request, as metered, newest first. */
import {
  BILLING_MODES,
  listRequestLogs,
  type RequestLog,
  requestLogCursor,
} from "../../services/request_logs.ts";
import { auditMeta, builder } from "../builder.ts";
import { keysetConnection } from "../connections.ts";

export const BillingModeEnum = builder.enumType("BillingMode", {
  description: "standard: prepaid credits, provider cost plus the operator's fee; byok: the " +
    "customer's own provider key, with a routing fee past the free tier.",
  values: BILLING_MODES,
});

export const RequestLogRef = builder.objectRef<RequestLog>("RequestLog").implement({
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
    billingMode: t.expose("billing_mode", { type: BillingModeEnum }),
    cost: t.expose("cost", { type: "Money", description: "The provider cost charged." }),
    fee: t.expose("fee", { type: "Money", description: "The operator's fee on top of cost." }),
    estimated: t.exposeBoolean("estimated", {
      description: "True when usage was estimated (a cut stream), not reported upstream.",
    }),
    latencyMs: t.exposeInt("latency_ms"),
    ttfbMs: t.exposeInt("ttfb_ms", { nullable: true }),
    createdAt: t.expose("created_at", { type: "DateTime" }),
  }),
});

const RequestLogFilterInput = builder.inputType("RequestLogFilter", {
  fields: (t) => ({
    accountId: t.id({
      description: "Required unless an operator, who reads every account's without it.",
    }),
    apiKeyId: t.id(),
    agentName: t.string(),
    model: t.string({ description: "The model or alias the caller asked for." }),
    status: t.string({ description: 'An HTTP status ("429") or a class ("2xx", "4xx", "5xx").' }),
    billingMode: t.field({ type: BillingModeEnum }),
    from: t.field({ type: "DateTime", description: "Inclusive." }),
    to: t.field({ type: "DateTime", description: "Exclusive." }),
  }),
});

builder.queryField("requestLogs", (t) =>
  t.connection(
    {
      type: RequestLogRef,
      description: "Request logs, newest first (first/last 1..500, default 50), for an " +
        "account's viewers and up. Each read is audited.",
      args: { filter: t.arg({ type: RequestLogFilterInput }) },
      resolve: (_root, args, ctx) =>
        keysetConnection(
          args,
          { defaultSize: 50, maxSize: 500 },
          requestLogCursor,
          (page) =>
            listRequestLogs(ctx.db, args.filter ?? {}, page, {
              actor: ctx.actor,
              audit: auditMeta(ctx),
            }),
        ),
    },
    { name: "RequestLogConnection" },
    { name: "RequestLogEdge" },
  ));
