/** GET /v1/models: the models this gateway serves, in OpenAI's list shape. */
import type { RequestContext, RouteDeps } from "./context.ts";

export function listModels(_request: Request, ctx: RequestContext, deps: RouteDeps): Response {
  const data = [];
  for (const model of deps.policy.models()) {
    data.push({
      id: model.name,
      object: "model",
      created: Math.floor(model.createdAt / 1000),
      owned_by: deps.policy.provider(model.providerId)?.name ?? "tollgate",
    });
  }
  data.sort((a, b) => a.id.localeCompare(b.id));
  return Response.json({ object: "list", data }, { headers: { "x-request-id": ctx.requestId } });
}
