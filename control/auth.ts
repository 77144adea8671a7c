/**
 * Operator authentication. An operator presents `Authorization: Bearer
 * <token>` with either the configured bootstrap token (TOLLGATE_ADMIN_TOKEN)
 * or a stored admin token, of which only the keyed hash is kept.
 */
import { type Kysely, sql } from "kysely";
import type { Database } from "../schema/database.ts";
import {
  ADMIN_TOKEN_PREFIX,
  generateSecret,
  hashesEqual,
  hashSecret,
  isWellFormedSecret,
} from "../schema/keys.ts";
import type { ServerKeys } from "../schema/secrets.ts";
import type { Actor } from "./access.ts";
import { recordAudit } from "./services/audit.ts";

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

export interface AuthDeps {
  keys: ServerKeys;
  /** TOLLGATE_ADMIN_TOKEN, when configured. */
  adminToken?: string;
  tokens: AdminTokenCache;
}

/** The operator behind the request's bearer token, or null for anyone else. */
export async function authenticate(request: Request, deps: AuthDeps): Promise<Actor | null> {
  const token = bearerToken(request.headers.get("authorization"));
  if (!token) return null;
  const hash = hashSecret(token, deps.keys.hashing);
  if (deps.adminToken && hashesEqual(hash, hashSecret(deps.adminToken, deps.keys.hashing))) {
    return { kind: "operator", id: "admin:configured" };
  }
  // A malformed token cannot be a stored one: refuse it without a lookup.
  if (!isWellFormedSecret(token, ADMIN_TOKEN_PREFIX)) return null;
  const prefix = await deps.tokens.lookup(hash);
  return prefix ? { kind: "operator", id: `admin:${prefix}` } : null;
}

function bearerToken(header: string | null): string | null {
  const match = header && /^Bearer[ ]+(\S{1,512})\s*$/i.exec(header);
  return match ? match[1]! : null;
}
