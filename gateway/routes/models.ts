/**
 * GET /v1/models and GET /v1/models/{id}: the models and aliases this key
 * may call, in OpenAI's shape. A model is owned by its provider; an alias,
 * which may span providers, by "tollgate". What the key's allowlist leaves
 * out is not listed, and retrieving it is a 404 as for a name that does not
 * exist.
 */
import { GatewayError } from "../errors.ts";
import type { ModelPolicy, Policy, RoutePolicy } from "../policy/snapshot.ts";
import type { RequestContext, RouteDeps } from "./context.ts";

export const MODEL_PATH_PREFIX = "/v1/models/";

interface ModelObject {
  id: string;
  object: "model";
  created: number;
  owned_by: string;
}

export function listModels(_request: Request, ctx: RequestContext, deps: RouteDeps): Response {
  const data = visibleModels(ctx, deps.policy);
  data.sort((a, b) => a.id.localeCompare(b.id));
  return Response.json({ object: "list", data }, { headers: { "x-request-id": ctx.requestId } });
}

export function retrieveModel(request: Request, ctx: RequestContext, deps: RouteDeps): Response {
  const raw = new URL(request.url).pathname.replace(/\/+$/, "").slice(MODEL_PATH_PREFIX.length);
  let id: string;
  try {
    id = decodeURIComponent(raw);
  } catch {
    id = raw;
  }
  const allowed = ctx.key!.allowedModels;
  const route = deps.policy.route(id);
  const model = route ? undefined : deps.policy.model(id);
  const servable = route || (model && deps.policy.provider(model.providerId));
  if (!servable || (allowed && !allowed.has(id))) {
    throw new GatewayError(
      "model_not_found",
      404,
      `The model '${id}' does not exist or you do not have access to it.`,
      { param: "model", retryable: false },
    );
  }
  const object = route ? aliasObject(route) : modelObject(model!, deps.policy);
  return Response.json(object, { headers: { "x-request-id": ctx.requestId } });
}

function visibleModels(ctx: RequestContext, policy: Policy): ModelObject[] {
  const allowed = ctx.key!.allowedModels;
  const data: ModelObject[] = [];
  for (const model of policy.models()) {
    // An alias of the same name wins, as it does when resolving.
    if (allowed && !allowed.has(model.name)) continue;
    if (policy.route(model.name) || !policy.provider(model.providerId)) continue;
    data.push(modelObject(model, policy));
  }
  for (const route of policy.routes()) {
    if (!allowed || allowed.has(route.name)) data.push(aliasObject(route));
  }
  return data;
}

function modelObject(model: ModelPolicy, policy: Policy): ModelObject {
  return {
    id: model.name,
    object: "model",
    created: Math.floor(model.createdAt / 1000),
    owned_by: policy.provider(model.providerId)?.name ?? "tollgate",
  };
}

function aliasObject(route: RoutePolicy): ModelObject {
  return {
    id: route.name,
    object: "model",
    created: Math.floor(route.createdAt / 1000),
    owned_by: "tollgate",
  };
}
