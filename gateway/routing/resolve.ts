/**
 * Resolves the `model` a caller sent to the ordered targets that may serve
 * it: an alias (a route) names several models, a plain model name is its own
 * single target. The key's allowlist is checked here, after existence, so an
 * unknown name is a 404 and a known one outside the allowlist a 403.
 */
import { GatewayError } from "../errors.ts";
import type {
  KeyPolicy,
  ModelPolicy,
  Policy,
  ProviderPolicy,
  RoutePolicy,
} from "../policy/snapshot.ts";

export interface Target {
  model: ModelPolicy;
  provider: ProviderPolicy;
}

export interface Resolved {
  /** The name the caller sent. */
  name: string;
  /** The alias it named, or null for a plain model. */
  route: RoutePolicy | null;
  /** In the order they are tried. */
  targets: Target[];
}

export function resolveTargets(name: string, key: KeyPolicy, policy: Policy): Resolved {
  const route = policy.route(name) ?? null;
  const model = route ? undefined : policy.model(name);
  if (!route && !model) throw modelNotFound(name);
  if (key.allowedModels && !key.allowedModels.has(name)) {
    throw new GatewayError(
      "model_not_allowed",
      403,
      `This API key may not use the model '${name}'.`,
      { param: "model", retryable: false },
    );
  }
  if (!route) {
    const provider = policy.provider(model!.providerId);
    if (!provider) throw modelNotFound(name);
    return { name, route: null, targets: [{ model: model!, provider }] };
  }

  const targets: Target[] = [];
  for (const targetName of route.targets) {
    const target = policy.model(targetName);
    const provider = target && policy.provider(target.providerId);
    if (target && provider) targets.push({ model: target, provider });
  }
  if (targets.length === 0) {
    throw new GatewayError(
      "route_unavailable",
      503,
      `The alias '${name}' has no active target model; the operator must configure one.`,
      { param: "model", retryable: false },
    );
  }
  if (route.strategy === "cheapest") {
    // A stable sort: equal prices keep the configured order.
    targets.sort((a, b) => compare(unitPrice(a.model), unitPrice(b.model)));
  }
  return { name, route, targets };
}

/** The price of a typical call, for ordering: input and output per million tokens. */
function unitPrice(model: ModelPolicy): bigint {
  return model.prices.input + model.prices.output;
}

function compare(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function modelNotFound(name: string): GatewayError {
  return new GatewayError(
    "model_not_found",
    404,
    `The model '${name}' does not exist or you do not have access to it.`,
    { param: "model", retryable: false },
  );
}
