/**
 * The sign-in settings of the control plane, spread into control/config.ts:
 * the access-token signing key and issuer, and an optional external OIDC
 * issuer trusted through its JWKS.
 */
import { createPrivateKey } from "node:crypto";
import { z } from "zod";

/** Signature algorithms an OIDC issuer may use: asymmetric only (never HS* or none). */
export const OIDC_ALGORITHMS = [
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA",
] as const;
export type OidcAlgorithm = typeof OIDC_ALGORITHMS[number];

const DEFAULT_OIDC_ALGORITHMS: OidcAlgorithm[] = ["RS256", "ES256", "EdDSA"];

export interface OidcConfig {
  /** The `iss` its tokens carry, exactly. */
  issuer: string;
  /** The `aud` its tokens must carry: the client id Tollgate is registered as. */
  audience: string;
  jwksUrl: string;
  algorithms: OidcAlgorithm[];
}

export interface AuthConfig {
  /**
   * TOLLGATE_JWT_PRIVATE_KEY: an Ed25519 private key (PKCS8 PEM) to sign
   * access tokens with; unset: one derived from the server secret.
   */
  jwtPrivateKey?: string;
  /** The `iss` of the access tokens this control plane issues. */
  jwtIssuer: string;
  oidc?: OidcConfig;
}

const PEM_MESSAGE = "must be an Ed25519 private key in PKCS8 PEM " +
  "(`openssl genpkey -algorithm ed25519`); newlines may be written as \\n";

export const authEnvShape = {
  TOLLGATE_JWT_PRIVATE_KEY: z.string().transform((text, ctx) => {
    const pem = text.replaceAll("\\n", "\n");
    if (!isEd25519Pem(pem)) {
      ctx.addIssue({ code: "custom", message: PEM_MESSAGE });
      return z.NEVER;
    }
    return pem;
  }).optional(),
  TOLLGATE_JWT_ISSUER: z.string().max(200).default("tollgate"),
  TOLLGATE_OIDC_ISSUER: z.string().url("must be the issuer's URL, exactly as tokens carry it")
    .optional(),
  TOLLGATE_OIDC_AUDIENCE: z.string().max(500).optional(),
  TOLLGATE_OIDC_JWKS_URL: z.string().url().refine(
    isSafeJwksUrl,
    "must be an https:// URL (http:// only on localhost)",
  ).optional(),
  TOLLGATE_OIDC_ALGORITHMS: z.string().transform((text, ctx) => {
    const names = text.split(",").map((name) => name.trim()).filter(Boolean);
    const unknown = names.filter((name) => !(OIDC_ALGORITHMS as readonly string[]).includes(name));
    if (names.length === 0 || unknown.length > 0) {
      ctx.addIssue({
        code: "custom",
        message: `must be a comma-separated list of ${OIDC_ALGORITHMS.join(", ")}` +
          (unknown.length ? ` (not ${unknown.join(", ")})` : ""),
      });
      return z.NEVER;
    }
    return [...new Set(names)] as OidcAlgorithm[];
  }).optional(),
} as const;

type AuthEnv = z.infer<z.ZodObject<typeof authEnvShape>>;

const OIDC_REQUIRED = ["TOLLGATE_OIDC_ISSUER", "TOLLGATE_OIDC_AUDIENCE", "TOLLGATE_OIDC_JWKS_URL"];

/** The OIDC variables go together: refuses a partial set, naming what is missing. */
export function checkAuthEnv(env: Partial<AuthEnv>, ctx: z.RefinementCtx): void {
  const given = OIDC_REQUIRED.filter((name) => env[name as keyof AuthEnv] !== undefined);
  const anyGiven = given.length > 0 || env.TOLLGATE_OIDC_ALGORITHMS !== undefined;
  if (!anyGiven) return;
  for (const name of OIDC_REQUIRED) {
    if (!given.includes(name)) {
      ctx.addIssue({
        code: "custom",
        path: [name],
        message: `is required with the other TOLLGATE_OIDC_* settings (${
          OIDC_REQUIRED.join(", ")
        })`,
      });
    }
  }
  if (env.TOLLGATE_OIDC_ISSUER && env.TOLLGATE_OIDC_ISSUER === env.TOLLGATE_JWT_ISSUER) {
    ctx.addIssue({
      code: "custom",
      path: ["TOLLGATE_OIDC_ISSUER"],
      message: "must differ from TOLLGATE_JWT_ISSUER (Tollgate's own tokens)",
    });
  }
}

export function authConfig(env: AuthEnv): Readonly<AuthConfig> {
  const oidc = env.TOLLGATE_OIDC_ISSUER && env.TOLLGATE_OIDC_AUDIENCE && env.TOLLGATE_OIDC_JWKS_URL
    ? Object.freeze({
      issuer: env.TOLLGATE_OIDC_ISSUER,
      audience: env.TOLLGATE_OIDC_AUDIENCE,
      jwksUrl: env.TOLLGATE_OIDC_JWKS_URL,
      algorithms: env.TOLLGATE_OIDC_ALGORITHMS ?? DEFAULT_OIDC_ALGORITHMS,
    })
    : undefined;
  return Object.freeze({
    jwtPrivateKey: env.TOLLGATE_JWT_PRIVATE_KEY,
    jwtIssuer: env.TOLLGATE_JWT_ISSUER,
    oidc,
  });
}

function isEd25519Pem(pem: string): boolean {
  if (!pem.includes("-----BEGIN PRIVATE KEY-----")) return false;
  try {
    return createPrivateKey({ key: pem, format: "pem" }).asymmetricKeyType === "ed25519";
  } catch {
    return false;
  }
}

function isSafeJwksUrl(text: string): boolean {
  // z.string().url() reports a malformed URL; this check runs on it anyway.
  if (!URL.canParse(text)) return true;
  const url = new URL(text);
  if (url.protocol === "https:") return true;
  return url.protocol === "http:" &&
    ["localhost", "127.0.0.1", "[::1]"].includes(url.hostname);
}
