/**
 * An external OpenID Connect issuer, trusted through its JWKS (fetched and
 * cached by jose's createRemoteJWKSet; an unknown kid refetches at most once
 * per cooldown). Its tokens must carry the configured issuer and audience
 * and be signed with one of the configured asymmetric algorithms.
 */
import { createRemoteJWKSet, jwtVerify } from "jose";
import type { OidcConfig } from "./config.ts";
import { CLOCK_TOLERANCE_SECONDS } from "./jwt.ts";

/** Who an OIDC token says the caller is. */
export interface OidcIdentity {
  issuer: string;
  subject: string;
  /** Only when the issuer marked it verified; lower-cased. */
  email: string | null;
  name: string | null;
}

export interface OidcVerifier {
  issuer: string;
  /** The identity of a valid token from the issuer; null for anything else. */
  verify(token: string): Promise<OidcIdentity | null>;
}

const MAX_SUBJECT_LENGTH = 255;
const EMAIL = /^[^\s@]{1,64}@[^\s@]{1,255}$/;

export function createOidcVerifier(config: OidcConfig): OidcVerifier {
  const jwks = createRemoteJWKSet(new URL(config.jwksUrl), {
    timeoutDuration: 5_000,
    cooldownDuration: 30_000,
    cacheMaxAge: 10 * 60_000,
  });
  return {
    issuer: config.issuer,
    async verify(token) {
      try {
        const { payload } = await jwtVerify(token, jwks, {
          issuer: config.issuer,
          audience: config.audience,
          algorithms: config.algorithms,
          clockTolerance: CLOCK_TOLERANCE_SECONDS,
          requiredClaims: ["sub", "exp"],
        });
        const { sub } = payload;
        if (typeof sub !== "string" || sub.length === 0 || sub.length > MAX_SUBJECT_LENGTH) {
          return null;
        }
        return {
          issuer: config.issuer,
          subject: sub,
          email: verifiedEmail(payload.email, payload.email_verified),
          name: typeof payload.name === "string" && payload.name.trim()
            ? payload.name.trim().slice(0, 200)
            : null,
        };
      } catch {
        return null;
      }
    },
  };
}

/** The email claim when the issuer says it is verified (some send "true" as a string). */
function verifiedEmail(email: unknown, verified: unknown): string | null {
  if (verified !== true && verified !== "true") return null;
  if (typeof email !== "string") return null;
  const normalized = email.trim().toLowerCase();
  return EMAIL.test(normalized) && normalized.length <= 320 ? normalized : null;
}
