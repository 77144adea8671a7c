/**
 * The control plane's own access tokens: short-lived JWTs signed with
 * Ed25519 (alg EdDSA). The key is TOLLGATE_JWT_PRIVATE_KEY when configured,
 * otherwise derived from the server secret, so every replica signs and
 * verifies with the same key without sharing any state. Its public half is
 * published as a JWKS (GET /.well-known/jwks.json) under a kid that is the
 * key's RFC 7638 thumbprint.
 *
 * Verification trusts nothing in the token's header: the algorithm is
 * allowlisted (EdDSA only, so no "none", no HS256-with-the-public-key, no
 * RS256), the kid must be ours, and iss, aud, typ, exp, nbf, the token's age
 * and its lifetime are checked with a small clock tolerance.
 */
import { Buffer } from "node:buffer";
import {
  calculateJwkThumbprint,
  exportJWK,
  importPKCS8,
  type JWK,
  type JWTHeaderParameters,
  jwtVerify,
  SignJWT,
} from "jose";
import { isUuid } from "../errors.ts";

/** How long an access token is valid: short, since a refresh is cheap. */
export const ACCESS_TOKEN_TTL_SECONDS = 15 * 60;
/** The audience of our access tokens: this control plane's API. */
export const ACCESS_TOKEN_AUDIENCE = "tollgate-control";
/** RFC 9068's type for JWT access tokens; an ID token or other JWT is refused. */
const ACCESS_TOKEN_TYPE = "at+jwt";
/** Allowed clock skew between replicas (and with OIDC issuers), in seconds. */
export const CLOCK_TOLERANCE_SECONDS = 30;

export interface AccessTokenKeys {
  issuer: string;
  kid: string;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  /** The public key as published: { keys: [<OKP JWK with kid, alg, use>] }. */
  jwks: { keys: JWK[] };
}

/** What a verified access token says. */
export interface AccessTokenClaims {
  userId: string;
  sessionId: string;
}

/** PKCS8 DER header of an Ed25519 private key; the 32-byte seed follows it. */
const ED25519_PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");

/**
 * The signing key: from `privateKeyPem` (an Ed25519 PKCS8 PEM) when given,
 * otherwise from the 32-byte `seed` (ServerKeys.signingSeed).
 */
export async function loadAccessTokenKeys(
  options: { seed: Uint8Array; privateKeyPem?: string; issuer: string },
): Promise<AccessTokenKeys> {
  const privateKey = options.privateKeyPem
    ? await importPKCS8(options.privateKeyPem, "EdDSA", { extractable: true })
    : await crypto.subtle.importKey(
      "pkcs8",
      Buffer.concat([ED25519_PKCS8_PREFIX, options.seed]),
      { name: "Ed25519" },
      true,
      ["sign"],
    );
  const { kty, crv, x } = await exportJWK(privateKey);
  const publicJwk: JWK = { kty, crv, x };
  const kid = await calculateJwkThumbprint(publicJwk);
  const publicKey = await crypto.subtle.importKey(
    "jwk",
    { kty, crv, x } as JsonWebKey,
    { name: "Ed25519" },
    true,
    ["verify"],
  );
  return {
    issuer: options.issuer,
    kid,
    privateKey,
    publicKey,
    jwks: { keys: [{ ...publicJwk, kid, alg: "EdDSA", use: "sig" }] },
  };
}

/** Signs an access token for a user's session; valid for ACCESS_TOKEN_TTL_SECONDS. */
export async function issueAccessToken(
  keys: AccessTokenKeys,
  claims: AccessTokenClaims,
  now = Date.now(),
): Promise<{ token: string; expiresAt: Date }> {
  const issuedAt = Math.floor(now / 1000);
  const expiresAt = issuedAt + ACCESS_TOKEN_TTL_SECONDS;
  const token = await new SignJWT({ sid: claims.sessionId })
    .setProtectedHeader({ alg: "EdDSA", kid: keys.kid, typ: ACCESS_TOKEN_TYPE })
    .setIssuer(keys.issuer)
    .setAudience(ACCESS_TOKEN_AUDIENCE)
    .setSubject(claims.userId)
    .setJti(crypto.randomUUID())
    .setIssuedAt(issuedAt)
    .setNotBefore(issuedAt)
    .setExpirationTime(expiresAt)
    .sign(keys.privateKey);
  return { token, expiresAt: new Date(expiresAt * 1000) };
}

/** The claims of a valid access token of ours; null for anything else, whatever is wrong. */
export async function verifyAccessToken(
  keys: AccessTokenKeys,
  token: string,
  now = Date.now(),
): Promise<AccessTokenClaims | null> {
  try {
    const { payload } = await jwtVerify(
      token,
      (header: JWTHeaderParameters) => {
        if (header.kid !== keys.kid) throw new Error("unknown kid");
        return keys.publicKey;
      },
      {
        algorithms: ["EdDSA"],
        issuer: keys.issuer,
        audience: ACCESS_TOKEN_AUDIENCE,
        typ: ACCESS_TOKEN_TYPE,
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
        maxTokenAge: ACCESS_TOKEN_TTL_SECONDS + CLOCK_TOLERANCE_SECONDS,
        requiredClaims: ["sub", "sid", "iat", "nbf", "exp"],
        currentDate: new Date(now),
      },
    );
    const { sub, sid, iat, exp } = payload;
    if (typeof sub !== "string" || !isUuid(sub) || typeof sid !== "string" || !isUuid(sid)) {
      return null;
    }
    // Only we sign with this key, but a token that claims a longer life was not made by us.
    if (exp! - iat! > ACCESS_TOKEN_TTL_SECONDS) return null;
    return { userId: sub, sessionId: sid };
  } catch {
    return null;
  }
}
