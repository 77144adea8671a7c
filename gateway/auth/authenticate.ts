/**
 * API-key authentication against the policy snapshot: no database round trip.
 * A key with a bad checksum is refused before it is even hashed.
 */
import { hashSecret, isWellFormedSecret } from "../../schema/keys.ts";
import { GatewayError } from "../errors.ts";
import type { KeyPolicy, Policy } from "../policy/snapshot.ts";

export const INFERENCE_SCOPE = "inference";

/** The bearer token of `Authorization`, or of `x-api-key` (Anthropic SDKs). */
export function bearerToken(headers: Headers): string | null {
  const authorization = headers.get("authorization");
  if (authorization) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    return match ? match[1]! : null;
  }
  return headers.get("x-api-key");
}

export function authenticate(
  headers: Headers,
  deps: { policy: Policy; hashingKey: Uint8Array; now: number },
): KeyPolicy {
  const secret = bearerToken(headers);
  if (!secret) {
    throw new GatewayError(
      "missing_api_key",
      401,
      "You didn't provide an API key. Send it as 'Authorization: Bearer tg_...'.",
      { retryable: false },
    );
  }
  if (!isWellFormedSecret(secret)) {
    throw new GatewayError(
      "invalid_api_key",
      401,
      "Incorrect API key provided: it is not a Tollgate key (tg_...) or it has a typo.",
      { retryable: false },
    );
  }
  const key = deps.policy.key(hashSecret(secret, deps.hashingKey));
  if (!key) {
    throw new GatewayError("invalid_api_key", 401, "Incorrect API key provided.", {
      retryable: false,
    });
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
