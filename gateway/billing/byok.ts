/**
 * BYOK (bring your own key) on the request side: which targets a request
 * may go to, and with whose credential. A request is BYOK when
 *
 * 1. it carries `provider_key` in its body (either dialect). That key wins:
 *    it is for the provider serving the request's first target, so the
 *    targets are narrowed to those on the same upstream service (same kind,
 *    vendor preset and base URL). Fallback to another service would hand
 *    the customer's key to a vendor it was not meant for.
 * 2. otherwise, the account has registered its own key (customer_provider_keys)
 *    for the provider of at least one target. The targets are narrowed to
 *    those providers, each called with the account's key for it: a request
 *    is one mode, so an alias mixing such providers with others never falls
 *    back to the operator's credential, and a BYOK account is never
 *    silently billed at Standard prices.
 *
 * Either way the upstream gets the customer's key where the operator's
 * credential would go, on a copy of the provider's policy (marked `byok`);
 * the copy for a registered key is made once and kept while neither the key
 * nor the provider changes, so its adapter is built once too. An upstream's
 * Retry-After on a customer's key says nothing about the operator's, and the
 * reverse: BYOK targets cool down per account (scopedCooldowns).
 */
import { GatewayError } from "../errors.ts";
import type { CustomerKeyPolicy, ProviderPolicy } from "../policy/snapshot.ts";
import { type Cooldowns, createCooldowns } from "../routing/fallback.ts";
import type { Target } from "../routing/resolve.ts";

/** The request body field a caller passes its provider key in. */
export const PROVIDER_KEY_PARAM = "provider_key";

/** As long as a registered key may be (control/services/provider_keys.ts). */
const MAX_PROVIDER_KEY_LENGTH = 4096;
/** Printable ASCII without whitespace: the key goes into an HTTP header. */
const PROVIDER_KEY_PATTERN = /^[\x21-\x7e]+$/;

/**
 * Takes `provider_key` out of `body`, so that it reaches no upstream body,
 * usage row or log; undefined when the body has none. A value that cannot be
 * a key is a 400 naming the param.
 */
export function takeInlineKey(body: Record<string, unknown>): string | undefined {
  if (!(PROVIDER_KEY_PARAM in body)) return undefined;
  const value = body[PROVIDER_KEY_PARAM];
  delete body[PROVIDER_KEY_PARAM];
  const key = typeof value === "string" ? value.trim() : "";
  if (key === "" || key.length > MAX_PROVIDER_KEY_LENGTH || !PROVIDER_KEY_PATTERN.test(key)) {
    throw new GatewayError(
      "invalid_request_error",
      400,
      `Invalid '${PROVIDER_KEY_PARAM}': expected your provider's API key, a non-empty string of ` +
        `at most ${MAX_PROVIDER_KEY_LENGTH} printable characters without spaces.`,
      { param: PROVIDER_KEY_PARAM, retryable: false },
    );
  }
  return key;
}

/**
 * The targets of a BYOK request, each with the customer's key as its
 * credential; null for a Standard request (no inline key, and no registered
 * key for any target's provider).
 */
export function byokTargets(
  targets: readonly Target[],
  options: {
    inlineKey?: string;
    customerKeys?: ReadonlyMap<string, CustomerKeyPolicy>;
  },
): Target[] | null {
  const { inlineKey, customerKeys } = options;
  if (inlineKey !== undefined) {
    const service = serviceOf(targets[0]!.provider);
    const served: Target[] = [];
    for (const target of targets) {
      if (serviceOf(target.provider) !== service) continue;
      served.push({ model: target.model, provider: withCredential(target.provider, inlineKey) });
    }
    return served;
  }
  if (!customerKeys) return null;
  let served: Target[] | null = null;
  for (const target of targets) {
    const key = customerKeys.get(target.provider.id);
    if (!key) continue;
    (served ??= []).push({ model: target.model, provider: registeredProvider(key, target) });
  }
  return served;
}

/** The upstream service a provider calls: a key for one is a key for the others like it. */
function serviceOf(provider: ProviderPolicy): string {
  return `${provider.kind}\u0000${provider.preset ?? ""}\u0000${provider.baseUrl ?? ""}`;
}

function withCredential(provider: ProviderPolicy, credential: string): ProviderPolicy {
  return { ...provider, credential, byok: true };
}

/** Each registered key's provider copy, remade when the provider's policy changes. */
const registered = new WeakMap<
  CustomerKeyPolicy,
  { base: ProviderPolicy; provider: ProviderPolicy }
>();

function registeredProvider(key: CustomerKeyPolicy, target: Target): ProviderPolicy {
  const cached = registered.get(key);
  if (cached?.base === target.provider) return cached.provider;
  const secret = key.secret();
  if (secret === null) {
    // Billing it at Standard prices instead would charge what the account opted out of.
    throw new GatewayError(
      "provider_key_unavailable",
      503,
      `The key this account registered for provider "${target.provider.name}" cannot be ` +
        "decrypted by the gateway; the operator must configure its key-encryption key " +
        "(TOLLGATE_KEK_PREVIOUS), or the account must set the key again.",
      { retryable: false },
    );
  }
  const provider = withCredential(target.provider, secret);
  registered.set(key, { base: target.provider, provider });
  return provider;
}

/** Each app's cooldowns for BYOK targets, kept apart from the operator's. */
const byokCooldowns = new WeakMap<Cooldowns, Cooldowns>();

/**
 * Cooldowns for one account's BYOK request: its upstream's Retry-After
 * pauses that account's use of the model, not everyone's.
 */
export function scopedCooldowns(shared: Cooldowns, accountId: string): Cooldowns {
  let own = byokCooldowns.get(shared);
  if (!own) byokCooldowns.set(shared, own = createCooldowns());
  const scope = `${accountId}\u0000`;
  const inner = own;
  return {
    remaining: (modelId, now) => inner.remaining(scope + modelId, now),
    set: (modelId, until) => inner.set(scope + modelId, until),
  };
}
