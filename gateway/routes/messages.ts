/**
 * POST /v1/messages and POST /v1/messages/count_tokens: Anthropic's Messages
 * API. An Anthropic upstream gets the request as it is (with the caller's
 * anthropic-version and anthropic-beta); any other upstream gets it
 * translated to chat completions, and its answer, JSON or stream, is
 * translated back (gateway/translate/). Usage is metered on the upstream's
 * own answer, exactly as for chat completions.
 */
import { GatewayError } from "../errors.ts";
import { PASSED_HEADERS } from "../providers/anthropic/mod.ts";
import { loadTokenizer } from "../metering/tokens.ts";
import { resolveTargets } from "../routing/resolve.ts";
import { isCustomTool, toChatRequest } from "../translate/messages_request.ts";
import { toAnthropicMessage } from "../translate/messages_response.ts";
import { toAnthropicStream } from "../translate/messages_stream.ts";
import { promptBound, readJsonBody } from "./body.ts";
import type { RequestContext, RouteDeps } from "./context.ts";
import { anthropicVersion, countMessagesTokens, validateMessages } from "./messages_body.ts";
import { proxy } from "./proxy.ts";

export async function messages(
  request: Request,
  ctx: RequestContext,
  deps: RouteDeps,
): Promise<Response> {
  const version = anthropicVersion(request.headers);
  const body = validateMessages(await readJsonBody(request, deps.maxBodyBytes), version);
  const stream = body.stream === true;
  await loadTokenizer();
  let promptTokens: number | undefined;
  const countPrompt = () => promptTokens ??= countMessagesTokens(body);

  const headers: Record<string, string> = {};
  for (const name of PASSED_HEADERS) {
    const value = request.headers.get(name);
    if (value) headers[name] = value;
  }
  return await proxy(ctx, deps, {
    op: "messages",
    body,
    stream,
    dialect: "anthropic",
    headers,
    promptTokens: countPrompt,
    maxTokens: body.max_tokens,
    promptBound: promptBound(request),
    translate: {
      op: "chat",
      body: (target) => {
        refuseServerTools(body.tools);
        return { ...toChatRequest(body, { stream }), model: target.model.upstreamName };
      },
      json: (chat) => toAnthropicMessage(chat, { model: body.model }),
      stream: (sse) => toAnthropicStream(sse, { model: body.model, promptTokens: countPrompt() }),
    },
  });
}

export async function countTokens(
  request: Request,
  ctx: RequestContext,
  deps: RouteDeps,
): Promise<Response> {
  const version = anthropicVersion(request.headers);
  const body = validateMessages(await readJsonBody(request, deps.maxBodyBytes), version, {
    countTokens: true,
  });
  // The model must exist and be allowed for this key, as for a real request.
  resolveTargets(body.model, ctx.key!, deps.policy);
  await loadTokenizer();
  return Response.json({ input_tokens: countMessagesTokens(body) }, {
    headers: { "request-id": ctx.requestId, "x-request-id": ctx.requestId },
  });
}

/** Server tools (web search, code execution, ...) run at Anthropic; no other upstream has them. */
function refuseServerTools(tools: readonly unknown[] | undefined): void {
  const index = tools?.findIndex((tool) => !isCustomTool(tool)) ?? -1;
  if (index < 0) return;
  const type = (tools![index] as { type?: unknown }).type;
  throw new GatewayError(
    "invalid_request_error",
    400,
    `tools.${index}: the server tool "${String(type)}" runs only on Anthropic upstreams, ` +
      "and this model is not served by one.",
    { param: `tools.${index}`, retryable: false },
  );
}
