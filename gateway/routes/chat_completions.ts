/**
 * POST /v1/chat/completions. The schema reads only what the gateway needs;
 * every other field (tools, response_format, n, stop, seed, logprobs,
 * parallel_tool_calls, ...) goes to the upstream unchanged.
 */
import { z } from "zod";
import { countChatPromptTokens } from "../metering/tokens.ts";
import { promptBound, readJsonBody, validate } from "./body.ts";
import type { RequestContext, RouteDeps } from "./context.ts";
import { proxy } from "./proxy.ts";

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

export async function chatCompletions(
  request: Request,
  ctx: RequestContext,
  deps: RouteDeps,
): Promise<Response> {
  const body = validate(chatBody, await readJsonBody(request, deps.maxBodyBytes));
  const stream = body.stream === true;
  const upstream: Record<string, unknown> & { model: string } = { ...body };
  if (stream) {
    // Always ask for usage; the chunk is stripped again if the caller did not.
    upstream.stream_options = { ...body.stream_options, include_usage: true };
  }
  return proxy(ctx, deps, {
    op: "chat",
    body: upstream,
    stream,
    stripUsage: body.stream_options?.include_usage !== true,
    promptTokens: () => countChatPromptTokens(body.messages),
    maxTokens: body.max_completion_tokens ?? body.max_tokens ?? null,
    // Each of the n choices may use max_tokens, and each is billed.
    outputs: body.n ?? 1,
    promptBound: promptBound(request),
  });
}
