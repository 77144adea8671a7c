/**
 * GET /v1/models and GET /v1/models/{id}: the models and aliases this key
 * may call. A model is owned by its provider; an alias, which may span
 * providers, by "tollgate". What the key's allowlist leaves out is not listed,
 * and retrieving it is a 404 as for a name that does not exist.
 *
 * A request with an `anthropic-version` header gets Anthropic's shape: model
 * objects with `display_name` and an RFC 3339 `created_at`, newest first, in
 * pages of `limit` (default 20, at most 1000) after `after_id` or before
 * `before_id`. Others get OpenAI's: one list sorted by id.
 */
import { GatewayError } from "../errors.ts";
import type { Policy } from "../policy/snapshot.ts";
import type { RequestContext, RouteDeps } from "./context.ts";
import { anthropicVersion } from "./messages_body.ts";

export const MODEL_PATH_PREFIX = "/v1/models/";

const DEFAULT_LIMIT = 20;
const MAX_LIMIT = 1000;

/** What both dialects say of a model or an alias. */
interface Listed {
  id: string;
  /** Milliseconds since the epoch. */
  createdAt: number;
  ownedBy: string;
  maxOutputTokens: number | null;
}

interface ModelObject {
  id: string;
  object: "model";
  created: number;
  owned_by: string;
}

/**
 * Anthropic's ModelInfo. What Tollgate does not know of a model (its
 * capabilities, context window, model line) is null, as Anthropic allows.
 */
interface AnthropicModel {
  type: "model";
  id: string;
  display_name: string;
  created_at: string;
  capabilities: null;
  max_input_tokens: null;
  max_tokens: number | null;
  line: null;
  lifecycle: "active";
  deprecated_at: null;
  retires_at: null;
}

export function listModels(request: Request, ctx: RequestContext, deps: RouteDeps): Response {
  const models = visibleModels(ctx, deps.policy);
  if (isAnthropic(request)) {
    const page = anthropicPage(models, new URL(request.url).searchParams);
    return Response.json(page, { headers: anthropicHeaders(ctx) });
  }
  const data = models.sort((a, b) => a.id.localeCompare(b.id)).map(openaiObject);
  return Response.json({ object: "list", data }, { headers: { "x-request-id": ctx.requestId } });
}

export function retrieveModel(request: Request, ctx: RequestContext, deps: RouteDeps): Response {
  const anthropic = isAnthropic(request);
  const raw = new URL(request.url).pathname.replace(/\/+$/, "").slice(MODEL_PATH_PREFIX.length);
  let id: string;
  try {
    id = decodeURIComponent(raw);
  } catch {
    id = raw;
  }
  const model = visibleModel(id, ctx, deps.policy);
  if (!model) {
    throw new GatewayError(
      "model_not_found",
      404,
      `The model '${id}' does not exist or you do not have access to it.`,
      { param: "model", retryable: false },
    );
  }
  if (anthropic) return Response.json(anthropicObject(model), { headers: anthropicHeaders(ctx) });
  return Response.json(openaiObject(model), { headers: { "x-request-id": ctx.requestId } });
}

/** Whether the caller speaks Anthropic's dialect; a version Tollgate does not serve is a 400. */
function isAnthropic(request: Request): boolean {
  if (!request.headers.has("anthropic-version")) return false;
  anthropicVersion(request.headers);
  return true;
}

function visibleModels(ctx: RequestContext, policy: Policy): Listed[] {
  const data: Listed[] = [];
  const add = (name: string) => {
    const listed = visibleModel(name, ctx, policy);
    if (listed) data.push(listed);
  };
  for (const model of policy.models()) {
    // An alias of the same name wins, as it does when resolving: it is added below.
    if (!policy.route(model.name)) add(model.name);
  }
  for (const route of policy.routes()) add(route.name);
  return data;
}

function visibleModel(id: string, ctx: RequestContext, policy: Policy): Listed | undefined {
  const allowed = ctx.key!.allowedModels;
  return allowed && !allowed.has(id) ? undefined : listedModel(id, policy);
}

/** The alias or the servable model named `name`, as the key-independent part of a listing. */
function listedModel(name: string, policy: Policy): Listed | undefined {
  const route = policy.route(name);
  if (route) {
    return { id: name, createdAt: route.createdAt, ownedBy: "tollgate", maxOutputTokens: null };
  }
  const model = policy.model(name);
  const provider = model && policy.provider(model.providerId);
  if (!provider) return undefined;
  return {
    id: name,
    createdAt: model.createdAt,
    ownedBy: provider.name,
    maxOutputTokens: model.maxOutputTokens,
  };
}

function openaiObject(model: Listed): ModelObject {
  return {
    id: model.id,
    object: "model",
    created: Math.floor(model.createdAt / 1000),
    owned_by: model.ownedBy,
  };
}

function anthropicObject(model: Listed): AnthropicModel {
  return {
    type: "model",
    id: model.id,
    display_name: model.id,
    // RFC 3339 to the second, as Anthropic writes it.
    created_at: new Date(Math.floor(model.createdAt / 1000) * 1000).toISOString()
      .replace(".000Z", "Z"),
    capabilities: null,
    max_input_tokens: null,
    max_tokens: model.maxOutputTokens,
    line: null,
    lifecycle: "active",
    deprecated_at: null,
    retires_at: null,
  };
}

/** One page of Anthropic's cursor pagination over the models, newest first. */
function anthropicPage(models: Listed[], query: URLSearchParams) {
  const limit = pageLimit(query.get("limit"));
  const afterId = query.get("after_id") || null;
  const beforeId = query.get("before_id") || null;
  if (afterId !== null && beforeId !== null) {
    throw badQuery("before_id", "cannot be combined with after_id");
  }
  models.sort((a, b) => b.createdAt - a.createdAt || a.id.localeCompare(b.id));
  const position = (id: string, param: string) => {
    const index = models.findIndex((model) => model.id === id);
    if (index < 0) throw badQuery(param, `no model '${id}' is listed for this key`);
    return index;
  };
  let page: Listed[];
  let hasMore: boolean;
  if (beforeId !== null) {
    const end = position(beforeId, "before_id");
    page = models.slice(Math.max(0, end - limit), end);
    hasMore = end > limit;
  } else {
    const start = afterId === null ? 0 : position(afterId, "after_id") + 1;
    page = models.slice(start, start + limit);
    hasMore = start + limit < models.length;
  }
  return {
    data: page.map(anthropicObject),
    has_more: hasMore,
    first_id: page[0]?.id ?? null,
    last_id: page.at(-1)?.id ?? null,
  };
}

function pageLimit(value: string | null): number {
  if (value === null || value === "") return DEFAULT_LIMIT;
  if (!/^\d+$/.test(value)) throw badQuery("limit", "Input should be a valid integer");
  const limit = Number(value);
  if (limit < 1) throw badQuery("limit", "Input should be greater than or equal to 1");
  if (limit > MAX_LIMIT) {
    throw badQuery("limit", `Input should be less than or equal to ${MAX_LIMIT}`);
  }
  return limit;
}

function badQuery(param: string, reason: string): GatewayError {
  return new GatewayError("invalid_request_error", 400, `${param}: ${reason}`, {
    param,
    retryable: false,
  });
}

function anthropicHeaders(ctx: RequestContext): HeadersInit {
  return { "request-id": ctx.requestId, "x-request-id": ctx.requestId };
}
