/**
 * Console sessions and their refresh tokens. A sign-in opens a session
 * (absolute lifetime SESSION_TTL_MS) with a first refresh token; each
 * refresh uses the presented token up and issues the next one (rotation),
 * valid for REFRESH_TOKEN_TTL_MS but never past the session's end. Only
 * tokens' keyed hashes are stored.
 *
 * Reuse detection: a token is marked used by one conditional update, so of
 * two requests presenting it exactly one wins; presenting a used token again
 * means it was copied, and the whole session (every token of the family) is
 * revoked. Two tabs refreshing with the same token at once therefore sign
 * the user out: clients must share one refresh in flight.
 */
import { type Kysely, sql } from "kysely";
import type { Database, SessionRevokedReason } from "../../schema/database.ts";
import { generateSecret, hashSecret, isWellFormedSecret } from "../../schema/keys.ts";
import { type AuditMeta, recordAudit } from "../services/audit.ts";

export const REFRESH_TOKEN_PREFIX = "tgr_";
/** A refresh token unused for this long expires (the session idles out). */
export const REFRESH_TOKEN_TTL_MS = 14 * 24 * 3600_000;
/** A session ends this long after sign-in, however often it is refreshed. */
export const SESSION_TTL_MS = 30 * 24 * 3600_000;

export interface IssuedRefreshToken {
  /** The token itself: returned once, stored only as its keyed hash. */
  token: string;
  expiresAt: Date;
}

export type RefreshOutcome =
  | { ok: true; userId: string; sessionId: string; refresh: IssuedRefreshToken }
  | { ok: false };

/**
 * Opens a session for a user and issues its first refresh token. Runs in
 * the caller's transaction (the sign-in's, with its audit row).
 */
export async function openSession(
  trx: Kysely<Database>,
  options: { userId: string; ip: string | null; hashingKey: Uint8Array; now?: number },
): Promise<{ sessionId: string; refresh: IssuedRefreshToken }> {
  const now = options.now ?? Date.now();
  const session = await trx.insertInto("sessions")
    .values({
      user_id: options.userId,
      expires_at: new Date(now + SESSION_TTL_MS),
      ip: options.ip,
    })
    .returning(["id", "expires_at"])
    .executeTakeFirstOrThrow();
  const refresh = await insertRefreshToken(trx, session.id, session.expires_at, {
    hashingKey: options.hashingKey,
    now,
  });
  return { sessionId: session.id, refresh };
}

/**
 * Exchanges a refresh token for the next one. A used token revokes its
 * session (and says so in the audit log); an unknown, expired or revoked
 * one is simply refused. Failures carry no reason: the caller must not tell
 * them apart.
 */
export async function rotateRefreshToken(
  db: Kysely<Database>,
  token: string,
  options: { hashingKey: Uint8Array; audit: Omit<AuditMeta, "actor"> },
): Promise<RefreshOutcome> {
  if (!isWellFormedSecret(token, REFRESH_TOKEN_PREFIX)) return { ok: false };
  const tokenHash = hashSecret(token, options.hashingKey);
  return await db.transaction().execute(async (trx) => {
    const now = Date.now();
    const claimed = await trx.updateTable("refresh_tokens")
      .set({ used_at: sql<Date>`now()` })
      .where("token_hash", "=", tokenHash)
      .where("used_at", "is", null)
      .returning(["session_id", "expires_at"])
      .executeTakeFirst();
    if (!claimed) {
      const used = await trx.selectFrom("refresh_tokens")
        .innerJoin("sessions", "sessions.id", "refresh_tokens.session_id")
        .select(["sessions.id", "sessions.user_id", "sessions.revoked_at"])
        .where("refresh_tokens.token_hash", "=", tokenHash)
        .executeTakeFirst();
      if (used && used.revoked_at === null) {
        await revoke(trx, { sessionId: used.id }, "reuse");
        await recordAudit(trx, {
          ...options.audit,
          actor: `user:${used.user_id}`,
          action: "session.reuse_detected",
          targetType: "session",
          targetId: used.id,
          diff: { revoked: true },
        });
      }
      return { ok: false };
    }
    const session = await trx.selectFrom("sessions")
      .select(["id", "user_id", "expires_at", "revoked_at"])
      .where("id", "=", claimed.session_id)
      .forUpdate()
      .executeTakeFirstOrThrow();
    const live = session.revoked_at === null && session.expires_at.getTime() > now &&
      claimed.expires_at.getTime() > now;
    if (!live) return { ok: false };
    const refresh = await insertRefreshToken(trx, session.id, session.expires_at, {
      hashingKey: options.hashingKey,
      now,
    });
    await trx.updateTable("sessions").set({ last_refreshed_at: sql<Date>`now()` })
      .where("id", "=", session.id).execute();
    // Expired tokens can no longer be reused: they need not be kept to detect it.
    await trx.deleteFrom("refresh_tokens")
      .where("session_id", "=", session.id)
      .where("expires_at", "<", sql<Date>`now()`)
      .execute();
    await recordAudit(trx, {
      ...options.audit,
      actor: `user:${session.user_id}`,
      action: "session.refresh",
      targetType: "session",
      targetId: session.id,
      diff: {},
    });
    return { ok: true, userId: session.user_id, sessionId: session.id, refresh };
  });
}

/**
 * Revokes one session, or every live session of a user (except
 * `exceptSessionId`); returns how many were revoked. Runs in the caller's
 * transaction.
 */
export async function revoke(
  trx: Kysely<Database>,
  target: { sessionId: string } | { userId: string; exceptSessionId?: string },
  reason: SessionRevokedReason,
): Promise<number> {
  let query = trx.updateTable("sessions")
    .set({ revoked_at: sql<Date>`now()`, revoked_reason: reason })
    .where("revoked_at", "is", null);
  if ("sessionId" in target) {
    query = query.where("id", "=", target.sessionId);
  } else {
    query = query.where("user_id", "=", target.userId);
    if (target.exceptSessionId) query = query.where("id", "<>", target.exceptSessionId);
  }
  const result = await query.executeTakeFirst();
  return Number(result.numUpdatedRows);
}

async function insertRefreshToken(
  trx: Kysely<Database>,
  sessionId: string,
  sessionEnd: Date,
  options: { hashingKey: Uint8Array; now: number },
): Promise<IssuedRefreshToken> {
  const { secret } = generateSecret(REFRESH_TOKEN_PREFIX);
  const expiresAt = new Date(Math.min(options.now + REFRESH_TOKEN_TTL_MS, sessionEnd.getTime()));
  await trx.insertInto("refresh_tokens")
    .values({
      token_hash: hashSecret(secret, options.hashingKey),
      session_id: sessionId,
      expires_at: expiresAt,
    })
    .execute();
  return { token: secret, expiresAt };
}
