/**
 * Signing in, refreshing and signing out: the flows behind the signIn,
 * refreshSession and signOut mutations. A sign-in checks the password
 * (rate limited per email and address, see rate_limit.ts), opens a session
 * and returns a short-lived access token with the session's first refresh
 * token. Failed attempts change nothing and are not written to the audit
 * log (anyone could fill it); successes, refreshes, detected reuse and
 * sign-outs are.
 */
import type { Kysely } from "kysely";
import type { Database } from "../../schema/database.ts";
import type { Actor } from "../access.ts";
import { ForbiddenError } from "../errors.ts";
import { type AuditMeta, recordAudit } from "../services/audit.ts";
import { checkPassword } from "../services/users.ts";
import {
  InvalidCredentialsError,
  InvalidRefreshTokenError,
  TooManyAttemptsError,
} from "./errors.ts";
import { type AccessTokenKeys, issueAccessToken } from "./jwt.ts";
import type { SignInLimiter } from "./rate_limit.ts";
import { openSession, revoke, rotateRefreshToken } from "./sessions.ts";

/** What a sign-in or a refresh returns to the client. */
export interface SessionTokens {
  userId: string;
  accessToken: string;
  accessTokenExpiresAt: Date;
  refreshToken: string;
  refreshTokenExpiresAt: Date;
}

export interface SignInDeps {
  db: Kysely<Database>;
  hashingKey: Uint8Array;
  accessTokens: AccessTokenKeys;
  limiter: SignInLimiter;
}

/** The request's part of the audit rows these flows write; the actor is the user. */
export type RequestMeta = Omit<AuditMeta, "actor">;

export async function signIn(
  deps: SignInDeps,
  input: { email: string; password: string },
  meta: RequestMeta,
): Promise<SessionTokens> {
  const retryAfter = deps.limiter.retryAfter(input.email, meta.ip);
  if (retryAfter > 0) throw new TooManyAttemptsError(retryAfter);
  let userId: string;
  try {
    userId = await checkPassword(deps.db, input);
  } catch (error) {
    if (error instanceof InvalidCredentialsError) deps.limiter.failed(input.email, meta.ip);
    throw error;
  }
  deps.limiter.succeeded(input.email, meta.ip);
  const { sessionId, refresh } = await deps.db.transaction().execute(async (trx) => {
    const opened = await openSession(trx, { userId, ip: meta.ip, hashingKey: deps.hashingKey });
    await recordAudit(trx, {
      ...meta,
      actor: `user:${userId}`,
      action: "session.sign_in",
      targetType: "session",
      targetId: opened.sessionId,
      diff: { method: "password" },
    });
    return opened;
  });
  return await tokensFor(deps.accessTokens, { userId, sessionId, refresh });
}

/** Exchanges a refresh token for new tokens; InvalidRefreshTokenError whatever is wrong. */
export async function refreshSession(
  deps: Omit<SignInDeps, "limiter">,
  refreshToken: string,
  meta: RequestMeta,
): Promise<SessionTokens> {
  const outcome = await rotateRefreshToken(deps.db, refreshToken, {
    hashingKey: deps.hashingKey,
    audit: meta,
  });
  if (!outcome.ok) throw new InvalidRefreshTokenError();
  return await tokensFor(deps.accessTokens, outcome);
}

/**
 * Revokes the caller's session (its refresh tokens stop working, and so do
 * its access tokens, which are checked against the session on every
 * request), or with `everywhere` every session of the user. Returns how
 * many sessions were revoked.
 */
export async function signOut(
  db: Kysely<Database>,
  input: { everywhere?: boolean | null },
  options: { actor: Actor; audit: AuditMeta },
): Promise<number> {
  const { actor } = options;
  if (actor.kind !== "user" || (!actor.sessionId && !input.everywhere)) {
    throw new ForbiddenError(
      actor.kind === "user"
        ? "This token comes from your identity provider: sign out there (or pass everywhere: true)"
        : "Only a signed-in user has a session to sign out of",
    );
  }
  return await db.transaction().execute(async (trx) => {
    const revoked = input.everywhere
      ? await revoke(trx, { userId: actor.userId }, "sign_out")
      : await revoke(trx, { sessionId: actor.sessionId! }, "sign_out");
    await recordAudit(trx, {
      ...options.audit,
      action: "session.sign_out",
      targetType: input.everywhere ? "user" : "session",
      targetId: input.everywhere ? actor.userId : actor.sessionId!,
      diff: { everywhere: !!input.everywhere, revoked },
    });
    return revoked;
  });
}

async function tokensFor(
  accessTokens: AccessTokenKeys,
  session: { userId: string; sessionId: string; refresh: { token: string; expiresAt: Date } },
): Promise<SessionTokens> {
  const access = await issueAccessToken(accessTokens, session);
  return {
    userId: session.userId,
    accessToken: access.token,
    accessTokenExpiresAt: access.expiresAt,
    refreshToken: session.refresh.token,
    refreshTokenExpiresAt: session.refresh.expiresAt,
  };
}
