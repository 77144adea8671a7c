/**
 * Who is calling /graphql. A request carries `Authorization: Bearer <token>`
 * with one of:
 * - the configured bootstrap token (TOLLGATE_ADMIN_TOKEN) or a stored admin
 *   token (`tga_…`, only its keyed hash is kept): an operator;
 * - a management-scoped API key (`tg_…`): an `api_key` actor with the admin
 *   role in its own account. A key without the management scope is refused
 *   with 403: model-API keys never open the control plane;
 * - an access token this control plane issued (an EdDSA JWT from signIn or
 *   refreshSession), valid only while its session is: a console user;
 * - a token from the trusted OIDC issuer, when one is configured: the user
 *   matched by (issuer, subject), provisioned on first sight.
 * Users' roles are read from their memberships on every request, so a role
 * change or a sign-out takes effect at once, not when a token expires.
 */
import { parse } from "graphql";
import { decodeJwt } from "jose";
import { type Kysely, sql } from "kysely";
import type { Database } from "../schema/database.ts";
import { inAnyRange, type IpRange, parseIp, parseIpRange } from "../schema/ip_ranges.ts";
import {
  ADMIN_TOKEN_PREFIX,
  API_KEY_PREFIX,
  generateSecret,
  hashesEqual,
  hashSecret,
  isWellFormedSecret,
} from "../schema/keys.ts";
import type { ServerKeys } from "../schema/secrets.ts";
import type { Actor } from "./access.ts";
import type { AuthConfig } from "./credentials/config.ts";
import { type AccessTokenKeys, loadAccessTokenKeys, verifyAccessToken } from "./credentials/jwt.ts";
import { createOidcVerifier, type OidcVerifier } from "./credentials/oidc.ts";
import { createSignInLimiter, type SignInLimiter } from "./credentials/rate_limit.ts";
import { recordAudit } from "./services/audit.ts";
import { provisionOidcUser, rolesOf, sessionRoles } from "./services/users.ts";

export type { Actor } from "./access.ts";

/**
 * Makes sure an operator can sign in. With a configured token nothing is
 * stored. Otherwise, when no admin token exists yet, one is generated, only
 * its hash is stored, and it is returned so the caller can print it once.
 */
export async function ensureAdminToken(
  db: Kysely<Database>,
  keys: ServerKeys,
  configuredToken?: string,
): Promise<{ generated?: string }> {
  if (configuredToken) return {};
  return await db.transaction().execute(async (trx) => {
    // Two processes starting at once must not both generate a token.
    await sql`select pg_advisory_xact_lock(hashtext('tollgate.admin_tokens'))`.execute(trx);
    const existing = await trx.selectFrom("admin_tokens").select("id").limit(1).executeTakeFirst();
    if (existing) return {};
    const issued = generateSecret(ADMIN_TOKEN_PREFIX);
    const row = await trx.insertInto("admin_tokens")
      .values({ token_hash: hashSecret(issued.secret, keys.hashing), prefix: issued.prefix })
      .returning("id")
      .executeTakeFirstOrThrow();
    await recordAudit(trx, {
      actor: "system",
      action: "admin_token.generate",
      targetType: "admin_token",
      targetId: row.id,
      diff: { prefix: issued.prefix },
      ip: null,
      requestId: null,
    });
    return { generated: issued.secret };
  });
}

/** The stored admin tokens' hashes, cached in memory. */
export interface AdminTokenCache {
  /** The token's display prefix when `tokenHash` is a stored token's hash, else null. */
  lookup(tokenHash: string): Promise<string | null>;
}

export interface AdminTokenCacheOptions {
  /** Milliseconds clock, for tests. */
  now?: () => number;
  /** On a miss, re-read at most this often (default 1000 ms). */
  missReloadMs?: number;
  /** Re-read on a hit older than this (default 60 s), so a deleted token stops working. */
  maxAgeMs?: number;
}

/** Loads the stored hashes on first use; re-reads on a miss at most once per `missReloadMs`. */
export function createAdminTokenCache(
  db: Kysely<Database>,
  options: AdminTokenCacheOptions = {},
): AdminTokenCache {
  const { now = Date.now, missReloadMs = 1000, maxAgeMs = 60_000 } = options;
  let hashes: Map<string, string> | null = null;
  let loadedAt = 0;
  let loading: Promise<Map<string, string>> | null = null;

  async function load(): Promise<Map<string, string>> {
    const rows = await db.selectFrom("admin_tokens").select(["token_hash", "prefix"]).execute();
    hashes = new Map(rows.map((r) => [r.token_hash, r.prefix]));
    loadedAt = now();
    return hashes;
  }

  function reload(): Promise<Map<string, string>> {
    // Concurrent misses share one query.
    loading ??= load().finally(() => {
      loading = null;
    });
    return loading;
  }

  return {
    async lookup(tokenHash) {
      let current = hashes && now() - loadedAt < maxAgeMs ? hashes : await reload();
      if (!current.has(tokenHash) && now() - loadedAt >= missReloadMs) current = await reload();
      return current.get(tokenHash) ?? null;
    },
  };
}

/** The control plane's credential machinery, made once per server. */
export interface ControlAuth {
  /** Signs and verifies our access tokens; its `jwks` is published. */
  accessTokens: Promise<AccessTokenKeys>;
  adminTokens: AdminTokenCache;
  oidc: OidcVerifier | null;
  signInLimiter: SignInLimiter;
}

export function createControlAuth(
  deps: { db: Kysely<Database>; keys: ServerKeys; config: { auth?: Readonly<AuthConfig> } },
): ControlAuth {
  const auth = deps.config.auth;
  const accessTokens = loadAccessTokenKeys({
    seed: deps.keys.signingSeed,
    privateKeyPem: auth?.jwtPrivateKey,
    issuer: auth?.jwtIssuer ?? "tollgate",
  });
  // Settled by every caller; keeps an (impossible after config checks) failure from going unhandled.
  accessTokens.catch(() => {});
  return {
    accessTokens,
    adminTokens: createAdminTokenCache(deps.db),
    oidc: auth?.oidc ? createOidcVerifier(auth.oidc) : null,
    signInLimiter: createSignInLimiter(),
  };
}

/** The access tokens' public key as a JWKS, for anyone verifying them. */
export async function jwksResponse(auth: ControlAuth, requestId: string): Promise<Response> {
  const { jwks } = await auth.accessTokens;
  return Response.json(jwks, {
    headers: { "cache-control": "public, max-age=300", "x-request-id": requestId },
  });
}

export interface AuthDeps {
  db: Kysely<Database>;
  keys: ServerKeys;
  /** TOLLGATE_ADMIN_TOKEN, when configured. */
  adminToken?: string;
  auth: ControlAuth;
  /** The client's address, for API keys' IP allowlists and the audit of a provisioning. */
  ip: string | null;
  requestId: string;
}

/** An actor, or why there is none: 401 (no or bad credentials) or 403 (an inference key). */
export type Authentication =
  | { actor: Actor }
  | { actor: null; status: 401 | 403; message: string };

const SEND = "send Authorization: Bearer <token> with a console access token (signIn), " +
  "a management-scoped API key, or an admin token";

/** Who the request's bearer token belongs to. */
export async function authenticate(request: Request, deps: AuthDeps): Promise<Authentication> {
  const header = request.headers.get("authorization");
  if (!header) return refuse(401, `Authentication required: ${SEND}`);
  const token = bearerToken(header);
  if (!token) return refuse(401, `The Authorization header is not "Bearer <token>": ${SEND}`);
  const hash = hashSecret(token, deps.keys.hashing);
  if (deps.adminToken && hashesEqual(hash, hashSecret(deps.adminToken, deps.keys.hashing))) {
    return { actor: { kind: "operator", id: "admin:configured" } };
  }
  // Malformed admin tokens and keys cannot be stored ones: refused without a lookup.
  if (isWellFormedSecret(token, ADMIN_TOKEN_PREFIX)) {
    const prefix = await deps.auth.adminTokens.lookup(hash);
    return prefix
      ? { actor: { kind: "operator", id: `admin:${prefix}` } }
      : refuse(401, "Unknown admin token");
  }
  if (isWellFormedSecret(token, API_KEY_PREFIX)) return await apiKeyActor(hash, deps);
  if (JWT_SHAPE.test(token)) return await jwtActor(token, deps);
  return refuse(401, `Unknown credential: ${SEND}`);
}

const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const EXPIRED_OR_INVALID = "The access token is invalid or expired: refresh the session " +
  "(refreshSession) or sign in again";

async function jwtActor(token: string, deps: AuthDeps): Promise<Authentication> {
  let issuer: unknown;
  try {
    issuer = decodeJwt(token).iss;
  } catch {
    return refuse(401, EXPIRED_OR_INVALID);
  }
  // The unverified issuer only picks the verifier; each verifies everything itself.
  const accessTokens = await deps.auth.accessTokens;
  if (issuer === accessTokens.issuer) {
    const claims = await verifyAccessToken(accessTokens, token);
    const roles = claims && await sessionRoles(deps.db, claims);
    if (!claims || !roles) return refuse(401, EXPIRED_OR_INVALID);
    return {
      actor: {
        kind: "user",
        id: `user:${claims.userId}`,
        userId: claims.userId,
        roles,
        sessionId: claims.sessionId,
      },
    };
  }
  const oidc = deps.auth.oidc;
  if (oidc && issuer === oidc.issuer) {
    const identity = await oidc.verify(token);
    if (!identity) return refuse(401, `The token from ${oidc.issuer} is invalid or expired`);
    const userId = await provisionOidcUser(deps.db, identity, {
      audit: { ip: deps.ip, requestId: deps.requestId },
    });
    const roles = await rolesOf(deps.db, userId);
    return { actor: { kind: "user", id: `user:${userId}`, userId, roles } };
  }
  return refuse(401, "The token's issuer is not trusted here");
}

/** Bump a management key's last_used_at at most this often. */
const LAST_USED_EVERY_MS = 60_000;

async function apiKeyActor(hash: string, deps: AuthDeps): Promise<Authentication> {
  const key = await deps.db.selectFrom("api_keys")
    .select([
      "id",
      "account_id",
      "prefix",
      "scopes",
      "status",
      "expires_at",
      "key_hash",
      "previous_expires_at",
      "allowed_ips",
      "last_used_at",
    ])
    .where((eb) => eb.or([eb("key_hash", "=", hash), eb("previous_key_hash", "=", hash)]))
    .executeTakeFirst();
  const now = Date.now();
  if (!key) return refuse(401, "Unknown API key");
  if (key.status === "revoked") return refuse(401, `The API key ${key.prefix} was revoked`);
  if (key.expires_at && key.expires_at.getTime() <= now) {
    return refuse(401, `The API key ${key.prefix} has expired`);
  }
  if (key.key_hash !== hash && (key.previous_expires_at?.getTime() ?? 0) <= now) {
    return refuse(401, `This secret of the API key ${key.prefix} was rotated and no longer works`);
  }
  if (!key.scopes.includes("management")) {
    return refuse(
      403,
      `The API key ${key.prefix} has no management scope: it calls the model API (/v1), not ` +
        "the control plane. Use a management-scoped key, or sign in.",
    );
  }
  if (key.allowed_ips && !ipAllowed(key.allowed_ips, deps.ip)) {
    return refuse(403, `The API key ${key.prefix} may not be used from this address`);
  }
  if (!key.last_used_at || now - key.last_used_at.getTime() > LAST_USED_EVERY_MS) {
    await deps.db.updateTable("api_keys").set({ last_used_at: sql<Date>`now()` })
      .where("id", "=", key.id).execute();
  }
  return {
    actor: {
      kind: "api_key",
      id: `key:${key.prefix}`,
      keyId: key.id,
      accountId: key.account_id,
      role: "admin",
    },
  };
}

/** True when `ip` is one of the addresses or CIDR ranges listed (stored canonical). */
function ipAllowed(allowed: readonly string[], ip: string | null): boolean {
  const address = ip ? parseIp(ip) : null;
  if (!address) return false;
  const ranges = allowed.map(parseIpRange).filter((r): r is IpRange => typeof r !== "string");
  return inAnyRange(address, ranges);
}

function refuse(status: 401 | 403, message: string): Authentication {
  return { actor: null, status, message };
}

function bearerToken(header: string): string | null {
  // OIDC access tokens can run to a few kilobytes.
  const match = /^Bearer[ ]+(\S{1,8192})\s*$/i.exec(header);
  return match ? match[1]! : null;
}

/** The mutations anyone may call without credentials. */
const ANONYMOUS_FIELDS = new Set(["signIn", "refreshSession", "__typename"]);

/**
 * True when the request's operation is a mutation that selects only signIn
 * and refreshSession: the one thing an unauthenticated caller may run.
 * Anything else (queries, introspection, fragments at the top) is not.
 */
export function isAnonymousOperation(
  params: { query?: string; operationName?: string | null },
): boolean {
  if (typeof params.query !== "string") return false;
  let document;
  try {
    document = parse(params.query, { noLocation: true, maxTokens: 500 });
  } catch {
    return false;
  }
  const operations = document.definitions.filter((d) => d.kind === "OperationDefinition");
  const operation = params.operationName
    ? operations.find((o) => o.name?.value === params.operationName)
    : operations.length === 1
    ? operations[0]
    : undefined;
  if (!operation || operation.operation !== "mutation") return false;
  return operation.selectionSet.selections.every((selection) =>
    selection.kind === "Field" && ANONYMOUS_FIELDS.has(selection.name.value)
  );
}
