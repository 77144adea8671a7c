/**
 * What every proxied endpoint shares once its body is validated: resolve the
 * model to targets, send with fallback, answer (streaming or not), and meter
 * exactly one usage event per request, estimated (never zero) when a stream
 * ends without the upstream's usage.
 */
import { asGatewayError, GatewayError } from "../errors.ts";
import { estimateStreamedTokens, parseUsage, replyText } from "../metering/usage.ts";
import { countTokens, loadTokenizer } from "../metering/tokens.ts";
import { type Outcome, usageEvent } from "../metering/usage_event.ts";
import { countsInMonth, requestCharge } from "../billing/settlement.ts";
import { INTERRUPTED_OUTCOME } from "../metering/usage_queue.ts";
import { admit, admitBilled } from "../billing/admission.ts";
import {
  byokTargets,
  PROVIDER_KEY_PARAM,
  scopedCooldowns,
  takeInlineKey,
} from "../billing/byok.ts";
import { byokMonth } from "../billing/byok_free_store.ts";
import { formatUsd } from "../../schema/money.ts";
import type { Operation } from "../providers/provider.ts";
import { sendWithFallback } from "../routing/fallback.ts";
import { resolveTargets, type Target } from "../routing/resolve.ts";
import { meterSse, sseEvent, type StreamEnd } from "../streaming/sse.ts";
import type { RequestContext, RouteDeps } from "./context.ts";
import type { TokenUsage } from "../../schema/money.ts";

export interface ProxySpec {
  op: Operation;
  /** The validated body; `model` is replaced per target. */
  body: Record<string, unknown> & { model: string };
  stream: boolean;
  /**
   * Remove the usage-only chunk from the stream: the caller did not ask for
   * usage, which the gateway asked the upstream for anyway.
   */
  stripUsage?: boolean;
  /** Tokens of the prompt, for estimating usage the upstream did not report. */
  promptTokens: () => number;
  /** The upstream body for a target; by default the body with `model` replaced. */
  bodyFor?: (target: Target) => Record<string, unknown>;
  /** The caller's dialect, for in-band stream errors: OpenAI's unless set. */
  dialect?: Dialect;
  /** Caller headers an upstream of the caller's dialect should see. */
  headers?: Readonly<Record<string, string>>;
  /** How a target that cannot serve `op` natively is served in another operation. */
  translate?: Translation;
  /** The most output the request allows (max_tokens and its kin), for admission. */
  maxTokens?: number | null;
  /** How many outputs of up to maxTokens it may make (`n` and its kin), for admission; 1 if unset. */
  outputs?: number;
  /** A bound on the prompt's tokens that costs nothing (the body's bytes), for admission. */
  promptBound?: number;
}

export type Dialect = "openai" | "anthropic";

/**
 * A call made in another operation (messages sent as chat) and its answer
 * shown in the caller's dialect. Usage is metered on the upstream's own
 * answer, before it is translated.
 */
export interface Translation {
  op: Operation;
  body(target: Target): Record<string, unknown>;
  json(upstream: Record<string, unknown>, target: Target): Record<string, unknown>;
  stream(upstream: ReadableStream<Uint8Array>, target: Target): ReadableStream<Uint8Array>;
}

export async function proxy(
  ctx: RequestContext,
  deps: RouteDeps,
  spec: ProxySpec,
): Promise<Response> {
  // BYOK: a provider key passed inline leaves the body before anything else sees it.
  const inlineKey = PROVIDER_KEY_PARAM in spec.body ? takeInlineKey(spec.body) : undefined;
  const resolved = resolveTargets(spec.body.model, ctx.key!, deps.policy);
  const { translate } = spec;
  const native = (t: Target) => deps.providerFor(t.provider).supports(spec.op);
  let targets = resolved.targets.filter((t) =>
    native(t) || (translate !== undefined && deps.providerFor(t.provider).supports(translate.op))
  );
  if (targets.length === 0) {
    throw new GatewayError(
      "unsupported_operation",
      400,
      `The model '${spec.body.model}' cannot serve ${ctx.endpoint}.`,
      { param: "model", retryable: false },
    );
  }
  // A BYOK request goes only where the customer's key serves, with that key (billing/byok.ts).
  const customerKeys = deps.policy.customerKeys?.(ctx.key!.accountId);
  const byok = inlineKey !== undefined || customerKeys
    ? byokTargets(targets, { inlineKey, customerKeys })
    : null;
  if (byok) targets = byok;
  const timeoutMs = resolved.route?.timeoutMs ??
    (spec.stream ? deps.streamTimeoutMs : deps.upstreamTimeoutMs);
  const { billing } = deps;
  // The key's requests and tokens per minute (per replica, auth/rate_limiter.ts):
  // the prompt is estimated at a token per 4 bytes of body, and meter() corrects
  // the estimate to the usage reported; a request refused below used none.
  const tokenTicket =
    deps.limits?.admit(ctx.key!, Math.ceil((spec.promptBound ?? 0) / 4), ctx.now()) ??
      null;
  const admitting = billing && {
    accountId: ctx.key!.accountId,
    models: targets.map((t) => t.model),
    maxTokens: spec.maxTokens ?? null,
    outputs: spec.outputs ?? 1,
    promptBound: spec.promptBound ?? Number.MAX_SAFE_INTEGER,
    countPrompt: async () => {
      await loadTokenizer();
      return spec.promptTokens();
    },
    feeBps: billing.feeBps,
  };
  const refused = (error: unknown): never => {
    deps.limits?.settle(tokenTicket, 0, ctx.now());
    throw error;
  };
  // BYOK requests and keys with a spend limit reserve through admitBilled
  // (billing/admission.ts); the others from the balance alone, as before.
  const admission = admitting && (byok || ctx.key!.spendLimit !== null)
    ? await admitBilled(billing!, {
      ...admitting,
      keyId: ctx.key!.id,
      spendLimit: ctx.key!.spendLimit,
      byokMonth: byok && byokMonth(ctx.key!.accountId, ctx.receivedAt),
    }).catch(refused)
    : null;
  const reservation = admitting && !admission
    ? await admit(billing!.allowances, admitting).catch(refused)
    : null;
  /** Meters the request once and settles its reservation to what it is charged. */
  const meter = (outcome: Omit<Outcome, "model" | "stream" | "billing">): bigint => {
    const event = usageEvent(ctx, {
      model: spec.body.model,
      stream: spec.stream,
      ...outcome,
      billing: billing && (admission?.billing ??
        { mode: "standard", feeBps: billing.feeBps, leaseId: reservation?.leaseId ?? null }),
    });
    admission?.mark(event);
    deps.usage.push(event);
    deps.limits?.settle(tokenTicket, event.total_tokens, ctx.now());
    const billed = requestCharge(event);
    const charge = billed ? billed.cost + billed.fee : 0n;
    if (reservation) billing!.allowances.settle(reservation, charge);
    else admission?.settle(charge, countsInMonth(event.status));
    return charge;
  };

  // Billed as interrupted if this process dies before meter() records the
  // answer (metering/spool.ts); the estimate is the body's bytes / 4.
  if (deps.usage.intent) {
    const intent = usageEvent(ctx, {
      model: spec.body.model,
      stream: spec.stream,
      route: targets[0],
      ...INTERRUPTED_OUTCOME,
      usage: {
        promptTokens: Math.ceil((spec.promptBound ?? 0) / 4),
        completionTokens: 0,
        cachedTokens: 0,
      },
      billing: billing && (admission?.billing ??
        { mode: "standard", feeBps: billing.feeBps, leaseId: reservation?.leaseId ?? null }),
    });
    admission?.mark(intent);
    await deps.usage.intent(intent);
  }

  let served;
  try {
    const bodyFor = spec.bodyFor ??
      ((t: Target) => ({ ...spec.body, model: t.model.upstreamName }));
    served = await sendWithFallback(targets, {
      op: spec.op,
      opFor: translate && ((t) => native(t) ? spec.op : translate.op),
      body: spec.body,
      stream: spec.stream,
      headers: spec.headers,
      timeoutMs,
      bodyFor: translate ? (t) => native(t) ? bodyFor(t) : translate.body(t) : bodyFor,
    }, byok ? { ...deps, cooldowns: scopedCooldowns(deps.cooldowns, ctx.key!.accountId) } : deps);
  } catch (error) {
    const failure = asGatewayError(error);
    meter({ status: failure.status, errorCode: failure.code });
    throw error;
  }
  const { target, reply } = served;
  const translation = translate && !native(target) ? translate : null;
  // The dialect the upstream answered in, which its usage and errors are read in.
  const upstreamDialect: Dialect = (translation?.op ?? spec.op) === "messages"
    ? "anthropic"
    : "openai";
  // A plain record: the runtime copies it into its own header list once.
  const headers: Record<string, string> = {
    "x-request-id": ctx.requestId,
    "x-tollgate-provider": target.provider.name,
    "x-tollgate-upstream-model": target.model.upstreamName,
    "x-tollgate-attempts": String(served.attempts),
  };
  if (resolved.route) headers["x-tollgate-route"] = resolved.route.name;
  if (spec.dialect === "anthropic") headers["request-id"] = ctx.requestId;
  // A stream's headers leave before its cost is known: it carries the mode, and
  // its cost and balance come last in the stream, as SSE comments (costLines).
  if (billing) headers["x-tollgate-mode"] = admission?.billing.mode ?? "standard";
  /** The cost and (Standard mode) the balance after a charge, by header name. */
  const billed = (charge: bigint): [string, string][] => {
    const lines: [string, string][] = [["x-tollgate-cost", formatUsd(charge)]];
    const balance = admission?.billing.mode === "byok"
      ? null
      : billing!.allowances.balance(ctx.key!.accountId);
    if (balance !== null) lines.push(["x-tollgate-balance", formatUsd(balance)]);
    return lines;
  };

  if (!reply.stream) {
    let usage = parseUsage(reply.json.usage);
    let estimated = false;
    if (!usage) {
      usage = await estimate(ctx, deps, spec, () => countTokens(replyText(reply.json)));
      estimated = usage !== null;
    }
    const charge = meter({
      route: target,
      status: 200,
      usage,
      estimated,
      ttfbMs: ctx.now() - ctx.startedAt,
    });
    if (billing) { for (const [name, value] of billed(charge)) headers[name] = value; }
    headers["content-type"] = "application/json";
    const text = translation ? JSON.stringify(translation.json(reply.json, target)) : reply.text;
    return new Response(text, { status: 200, headers });
  }

  const metered = meterSse(reply, {
    dialect: upstreamDialect,
    stripUsage: !translation && (spec.stripUsage ?? false),
    errorEvent: (error) => {
      const message = `The upstream stream from "${target.provider.name}" failed: ${
        error instanceof Error ? error.message : String(error)
      }`;
      return upstreamDialect === "anthropic"
        ? sseEvent(
          "error",
          JSON.stringify({ type: "error", error: { type: "api_error", message } }),
        )
        : `data: ${
          JSON.stringify({
            error: { message, type: "api_error", param: null, code: "upstream_error" },
          })
        }\n\n`;
    },
    onEnd: async (end) => {
      if (end.reason === "done") served.release();
      else served.abort();
      const charge = await meterStreamEnd(ctx, deps, { spec, target, end, meter }).catch(
        (error) => {
          deps.log(`Cannot meter the stream of request ${ctx.requestId}`, error);
          return null;
        },
      );
      if (charge === null || !billing || end.reason === "client_cancelled") return null;
      return costLines([["x-tollgate-mode", headers["x-tollgate-mode"]!], ...billed(charge)]);
    },
  });
  headers["content-type"] = "text/event-stream; charset=utf-8";
  headers["cache-control"] = "no-cache";
  const body = translation ? translation.stream(metered, target) : metered;
  return new Response(body, { status: 200, headers });
}

/**
 * A stream's billing, sent after its last event as SSE comments, which
 * clients skip: `: x-tollgate-cost: 0.000123`, one per line, as the headers
 * of an answer that is not streamed would say.
 */
function costLines(lines: readonly [string, string][]): string {
  return lines.map(([name, value]) => `: ${name}: ${value}\n`).join("") + "\n";
}

/**
 * Meters a finished stream; a stream without reported usage is estimated,
 * never zero. Returns what it was charged.
 */
async function meterStreamEnd(
  ctx: RequestContext,
  deps: RouteDeps,
  args: {
    spec: ProxySpec;
    target: Target;
    end: StreamEnd;
    meter: (outcome: Omit<Outcome, "model" | "stream" | "billing">) => bigint;
  },
): Promise<bigint> {
  const { spec, target, end, meter } = args;
  let usage = end.usage;
  let estimated = false;
  if (!usage) {
    usage = await estimate(ctx, deps, spec, () => estimateStreamedTokens(end.events));
    estimated = usage !== null;
  }
  return meter({
    route: target,
    status: 200,
    errorCode: end.reason === "done" ? undefined : end.reason,
    usage,
    estimated,
    ttfbMs: end.firstByteAt - ctx.startedAt,
  });
}

async function estimate(
  ctx: RequestContext,
  deps: RouteDeps,
  spec: ProxySpec,
  completionTokens: () => number,
): Promise<TokenUsage | null> {
  try {
    await loadTokenizer();
    return {
      promptTokens: spec.promptTokens(),
      completionTokens: completionTokens(),
      cachedTokens: 0,
    };
  } catch (error) {
    deps.log(`Cannot estimate usage of request ${ctx.requestId}`, error);
    return null;
  }
}
