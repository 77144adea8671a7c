/**
 * POST /v1/completions, the legacy text completions. Like chat, a stream
 * always asks the upstream for usage, and the usage chunk is stripped again
 * when the caller did not ask for it; other fields go through unchanged.
 */
import { z } from "zod";
import { countInputTokens } from "../metering/tokens.ts";
import { promptBound, readJsonBody, validate } from "./body.ts";
import type { RequestContext, RouteDeps } from "./context.ts";
import { proxy } from "./proxy.ts";
import { textInput } from "./text_input.ts";

const completionsBody = z.looseObject({
  model: z.string().min(1, "a model name is required"),
  prompt: textInput(),
  stream: z.boolean().nullish(),
  stream_options: z.looseObject({ include_usage: z.boolean().optional() }).nullish(),
  max_tokens: z.number().int().nonnegative().nullish(),
  n: z.number().int().min(1).max(128).nullish(),
  best_of: z.number().int().min(1).max(128).nullish(),
}).refine((body) => (body.best_of ?? 1) >= (body.n ?? 1), {
  path: ["best_of"],
  message: "must be at least n",
});

/** How many prompts a completions request holds: an array of texts (or of token arrays) is a batch. */
function promptCount(prompt: unknown): number {
  if (!Array.isArray(prompt) || prompt.length === 0) return 1;
  return typeof prompt[0] === "string" || Array.isArray(prompt[0]) ? prompt.length : 1;
}

export async function completions(
  request: Request,
  ctx: RequestContext,
  deps: RouteDeps,
): Promise<Response> {
  const body = validate(completionsBody, await readJsonBody(request, deps.maxBodyBytes));
  const stream = body.stream === true;
  const upstream: Record<string, unknown> & { model: string } = { ...body };
  if (stream) {
    // Always ask for usage; the chunk is stripped again if the caller did not.
    upstream.stream_options = { ...body.stream_options, include_usage: true };
  }
  return proxy(ctx, deps, {
    op: "completions",
    body: upstream,
    stream,
    stripUsage: body.stream_options?.include_usage !== true,
    promptTokens: () => countInputTokens(body.prompt),
    // Legacy completions default to 16 tokens of output.
    maxTokens: body.max_tokens ?? 16,
    // best_of completions are made (and billed) for each prompt of a batch; n are returned.
    outputs: Math.max(body.n ?? 1, body.best_of ?? 1) * promptCount(body.prompt),
    promptBound: promptBound(request),
  });
}
