/**
 * POST /v1/chat/completions: validate, route to the model's provider, answer
 * (streaming or not) and meter. Fields the gateway does not need to read go
 * to the upstream unchanged.
 */
import { z } from "zod";
import { GatewayError } from "../errors.ts";
import { estimateStreamedTokens, parseUsage } from "../metering/usage.ts";
import { countChatPromptTokens, loadTokenizer } from "../metering/tokens.ts";
import { usageEvent } from "../metering/usage_event.ts";
import type { ModelPolicy, ProviderPolicy } from "../policy/snapshot.ts";
import { meterSse, type StreamEnd } from "../streaming/sse.ts";
import { readJsonBody, validate } from "./body.ts";
import type { RequestContext, RouteDeps } from "./context.ts";

const message = z.looseObject({
  role: z.enum(["system", "developer", "user", "assistant", "tool", "function"]),
});

const chatBody = z.looseObject({
  model: z.string().min(1, "a model name is required"),
  messages: z.array(message).min(1, "at least one message is required"),
  stream: z.boolean().nullish(),
  stream_options: z.looseObject({ include_usage: z.boolean().optional() }).nullish(),
  max_tokens: z.number().int().positive().nullish(),
  max_completion_tokens: z.number().int().positive().nullish(),
  n: z.number().int().min(1).max(128).nullish(),
});

type ChatBody = z.infer<typeof chatBody>;

export async function chatCompletions(
  request: Request,
  ctx: RequestContext,
  deps: RouteDeps,
): Promise<Response> {
  const body = validate(chatBody, await readJsonBody(request, deps.maxBodyBytes));
  const route = resolveModel(body.model, deps);
  const stream = body.stream === true;
  const upstreamBody: Record<string, unknown> = { ...body, model: route.model.upstreamName };
  if (stream) {
    // Always ask for usage; the chunk is stripped again if the caller did not.
    upstreamBody.stream_options = { ...body.stream_options, include_usage: true };
  }
  // Not request.signal: Deno aborts it once a response is returned, even a
  // streaming one. A client that leaves mid-stream cancels the metered body,
  // which aborts the upstream; one that leaves before the answer is still
  // metered, since the upstream charged for it.
  const timeout = AbortSignal.timeout(stream ? deps.streamTimeoutMs : deps.upstreamTimeoutMs);
  const upstreamAbort = new AbortController();
  const signal = AbortSignal.any([timeout, upstreamAbort.signal]);

  let reply;
  try {
    reply = await deps.providerFor(route.provider).chat({ body: upstreamBody, stream, signal });
  } catch (error) {
    if (error instanceof GatewayError) {
      deps.usage.push(usageEvent(ctx, {
        model: body.model,
        route,
        status: error.status,
        errorCode: error.code,
        stream,
      }));
    }
    throw error;
  }
  const headers = routeHeaders(ctx, route);

  if (!reply.stream) {
    deps.usage.push(usageEvent(ctx, {
      model: body.model,
      route,
      status: 200,
      stream: false,
      usage: parseUsage(reply.json.usage),
      ttfbMs: ctx.now() - ctx.startedAt,
    }));
    headers.set("content-type", "application/json");
    return new Response(reply.text, { status: 200, headers });
  }

  const clientWantsUsage = body.stream_options?.include_usage === true;
  const metered = meterSse(reply.body, {
    stripUsage: !clientWantsUsage,
    now: ctx.now,
    errorEvent: (error) =>
      JSON.stringify({
        error: {
          message: `The upstream stream from "${route.provider.name}" failed: ${
            error instanceof Error ? error.message : String(error)
          }`,
          type: "api_error",
          param: null,
          code: "upstream_error",
        },
      }),
    onEnd: (end) => {
      upstreamAbort.abort();
      void meterStreamEnd(ctx, deps, { body, route, end });
    },
  });
  headers.set("content-type", "text/event-stream; charset=utf-8");
  headers.set("cache-control", "no-cache");
  return new Response(metered, { status: 200, headers });
}

function resolveModel(
  name: string,
  deps: RouteDeps,
): { model: ModelPolicy; provider: ProviderPolicy } {
  const model = deps.policy.model(name);
  const provider = model && deps.policy.provider(model.providerId);
  if (!model || !provider) {
    throw new GatewayError(
      "model_not_found",
      404,
      `The model '${name}' does not exist or you do not have access to it.`,
      {
        param: "model",
        retryable: false,
      },
    );
  }
  return { model, provider };
}

function routeHeaders(
  ctx: RequestContext,
  route: { model: ModelPolicy; provider: ProviderPolicy },
): Headers {
  return new Headers({
    "x-request-id": ctx.requestId,
    "x-tollgate-provider": route.provider.name,
    "x-tollgate-upstream-model": route.model.upstreamName,
  });
}

/** Meters a finished stream; a stream without reported usage is estimated, never zero. */
async function meterStreamEnd(
  ctx: RequestContext,
  deps: RouteDeps,
  args: { body: ChatBody; route: { model: ModelPolicy; provider: ProviderPolicy }; end: StreamEnd },
): Promise<void> {
  const { body, route, end } = args;
  let usage = end.usage;
  let estimated = false;
  if (!usage) {
    try {
      await loadTokenizer();
      usage = {
        promptTokens: countChatPromptTokens(body.messages),
        completionTokens: estimateStreamedTokens(end.events),
        cachedTokens: 0,
      };
      estimated = true;
    } catch (error) {
      deps.log(`Cannot estimate usage of request ${ctx.requestId}`, error);
    }
  }
  const failed = end.reason === "upstream_error" || end.reason === "upstream_cut";
  deps.usage.push(usageEvent(ctx, {
    model: body.model,
    route,
    status: 200,
    errorCode: failed
      ? end.reason
      : end.reason === "client_cancelled"
      ? "client_cancelled"
      : undefined,
    stream: true,
    usage,
    estimated,
    ttfbMs: end.firstByteAt === null ? null : end.firstByteAt - ctx.startedAt,
  }));
}
