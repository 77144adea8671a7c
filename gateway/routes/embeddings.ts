/** POST /v1/embeddings. Embeddings never stream; other fields go through unchanged. */
import { z } from "zod";
import { countInputTokens } from "../metering/tokens.ts";
import { promptBound, readJsonBody, validate } from "./body.ts";
import type { RequestContext, RouteDeps } from "./context.ts";
import { proxy } from "./proxy.ts";
import { textInput } from "./text_input.ts";

const embeddingsBody = z.looseObject({
  model: z.string().min(1, "a model name is required"),
  input: textInput({ nonEmpty: true }),
  encoding_format: z.enum(["float", "base64"]).nullish(),
  dimensions: z.number().int().positive().nullish(),
  stream: z.literal(false, "embeddings do not stream").nullish(),
});

export async function embeddings(
  request: Request,
  ctx: RequestContext,
  deps: RouteDeps,
): Promise<Response> {
  const body = validate(embeddingsBody, await readJsonBody(request, deps.maxBodyBytes));
  return proxy(ctx, deps, {
    op: "embeddings",
    body,
    stream: false,
    promptTokens: () => countInputTokens(body.input),
    maxTokens: 0, // embeddings produce no output tokens
    promptBound: promptBound(request),
  });
}
