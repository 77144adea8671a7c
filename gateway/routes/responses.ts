/**
 * POST /v1/responses, the Responses API. Usage comes from the reply's
 * `usage`, or for a stream from its response.completed event; the stream is
 * passed through untouched (there is no usage-only event to strip).
 */
import { z } from "zod";
import { countResponsesPromptTokens } from "../metering/tokens.ts";
import { promptBound, readJsonBody, validate } from "./body.ts";
import type { RequestContext, RouteDeps } from "./context.ts";
import { proxy } from "./proxy.ts";

const item = z.looseObject({}, "each input item must be an object");

const responsesBody = z.looseObject({
  model: z.string().min(1, "a model name is required"),
  // Optional: a request may continue a conversation or use a stored prompt instead.
  input: z.union([z.string(), z.array(item)], "expected a string or an array of input items")
    .optional(),
  instructions: z.string().nullish(),
  stream: z.boolean().nullish(),
  tools: z.array(z.looseObject({ type: z.string() })).nullish(),
  max_output_tokens: z.number().int().positive().nullish(),
});

export async function responses(
  request: Request,
  ctx: RequestContext,
  deps: RouteDeps,
): Promise<Response> {
  const body = validate(responsesBody, await readJsonBody(request, deps.maxBodyBytes));
  return proxy(ctx, deps, {
    op: "responses",
    body,
    stream: body.stream === true,
    stripUsage: false,
    promptTokens: () => countResponsesPromptTokens(body.input, body.instructions),
    maxTokens: body.max_output_tokens ?? null,
    promptBound: promptBound(request),
  });
}
