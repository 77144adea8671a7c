/**
 * API-key authentication against the policy snapshot: no database round trip.
 * A key with a bad checksum is refused before it is even hashed. A secret
 * replaced by a rotation works until its grace ends, by this process's clock;
 * a key with an IP allowlist works only from the addresses it lists.
 */
import { hashSecret, isWellFormedSecret } from "../../schema/keys.ts";
import { GatewayError } from "../errors.ts";
import type { KeyPolicy, Policy } from "../policy/snapshot.ts";
import { assertIpAllowed, type ClientOrigin } from "./ip_allowlist.ts";

export const INFERENCE_SCOPE = "inference";

/** A key as a request presents it, and the header it came in. */
export interface PresentedKey {
  secret: string;
  header: "x-api-key" | "Authorization";
}

const SEND_IT = "Send it as 'Authorization: Bearer tg_...' or 'x-api-key: tg_...'.";

/**
 * The key of `x-api-key` (Anthropic's SDKs before 1.0) or of `Authorization:
 * Bearer` (OpenAI's SDKs, Anthropic's from 1.0). With both, `x-api-key` wins,
 * as it does at Anthropic.
 */
export function presentedKey(headers: Headers): PresentedKey | null {
  const apiKey = headers.get("x-api-key");
  if (apiKey) return { secret: apiKey, header: "x-api-key" };
  const authorization = headers.get("authorization");
  if (!authorization) return null;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
  if (!match) {
    throw new GatewayError(
      "missing_api_key",
      401,
      `You didn't provide an API key: the Authorization header is not 'Bearer <key>'. ${SEND_IT}`,
      { retryable: false },
    );
  }
  return { secret: match[1]!, header: "Authorization" };
}

/**
 * The stored hash of a well-formed secret, or null for one that is not. The
 * HMAC is worth skipping on the hot path: a bounded map remembers the hashes
 * of the secrets seen lately (a process that can read this map can read the
 * requests that carry the same secrets, so it holds nothing new), and is
 * emptied when full.
 */
export type SecretHasher = (secret: string) => string | null;

export const HASH_CACHE_SIZE = 10_000;

export function createSecretHasher(
  hashingKey: Uint8Array,
  maxEntries = HASH_CACHE_SIZE,
): SecretHasher {
  const hashes = new Map<string, string>();
  return (secret) => {
    const known = hashes.get(secret);
    if (known !== undefined) return known;
    if (!isWellFormedSecret(secret)) return null;
    const hash = hashSecret(secret, hashingKey);
    if (hashes.size >= maxEntries) hashes.clear();
    hashes.set(secret, hash);
    return hash;
  };
}

const NO_ORIGIN: ClientOrigin = { peer: null, trustedProxies: [] };

export function authenticate(
  headers: Headers,
  deps: { policy: Policy; hash: SecretHasher; now: number; origin?: ClientOrigin },
): KeyPolicy {
  const presented = presentedKey(headers);
  if (!presented) {
    throw new GatewayError("missing_api_key", 401, `You didn't provide an API key. ${SEND_IT}`, {
      retryable: false,
    });
  }
  const { secret, header } = presented;
  const hash = deps.hash(secret);
  if (hash === null) {
    throw new GatewayError(
      "invalid_api_key",
      401,
      `Incorrect API key provided in ${header}: it is not a Tollgate key (tg_...) or it has a typo.`,
      { retryable: false },
    );
  }
  const key = deps.policy.key(hash);
  if (!key) {
    throw new GatewayError("invalid_api_key", 401, `Incorrect API key provided in ${header}.`, {
      retryable: false,
    });
  }
  if (hash === key.previousKeyHash && key.previousExpiresAt! <= deps.now) {
    throw new GatewayError(
      "invalid_api_key",
      401,
      `Incorrect API key provided in ${header}: the key was rotated and this secret's grace ` +
        "period has ended. Use the key's new secret.",
      { retryable: false },
    );
  }
  if (key.revoked) {
    throw new GatewayError("revoked_api_key", 401, "This API key has been revoked.", {
      retryable: false,
    });
  }
  if (key.expiresAt !== null && key.expiresAt <= deps.now) {
    throw new GatewayError("expired_api_key", 401, "This API key has expired.", {
      retryable: false,
    });
  }
  if (key.allowedIps !== null) assertIpAllowed(key.allowedIps, headers, deps.origin ?? NO_ORIGIN);
  if (!key.scopes.includes(INFERENCE_SCOPE)) {
    throw new GatewayError(
      "insufficient_scope",
      403,
      `This API key lacks the "${INFERENCE_SCOPE}" scope needed for model requests.`,
      { retryable: false },
    );
  }
  const account = deps.policy.account(key.accountId);
  if (!account?.active) {
    throw new GatewayError("account_suspended", 403, "The account of this API key is suspended.", {
      retryable: false,
    });
  }
  return key;
}
