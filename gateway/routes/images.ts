/**
 * POST /v1/images/generations. Most callers do not stream; a stream (GPT
 * Image models) goes through as the upstream sends it, metered from the
 * `usage` of its completed event.
 */
import { z } from "zod";
import { countTokens } from "../metering/tokens.ts";
import { promptBound, readJsonBody, validate } from "./body.ts";
import type { RequestContext, RouteDeps } from "./context.ts";
import { proxy } from "./proxy.ts";

const imagesBody = z.looseObject({
  model: z.string().min(1, "a model name is required"),
  prompt: z.string("a prompt is required").min(1, "must not be empty"),
  n: z.number().int().min(1).max(10).nullish(),
  size: z.string().nullish(),
  response_format: z.enum(["url", "b64_json"]).nullish(),
  stream: z.boolean().nullish(),
  partial_images: z.number().int().min(0).max(3).nullish(),
});

export async function images(
  request: Request,
  ctx: RequestContext,
  deps: RouteDeps,
): Promise<Response> {
  const body = validate(imagesBody, await readJsonBody(request, deps.maxBodyBytes));
  return proxy(ctx, deps, {
    op: "images",
    body,
    stream: body.stream === true,
    promptTokens: () => countTokens(body.prompt),
    // Each of the n images may use the model's output cap, and each is billed.
    outputs: body.n ?? 1,
    promptBound: promptBound(request),
  });
}
