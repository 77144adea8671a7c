/**
 * Console users: created by an operator with a password, or provisioned on
 * first sight from a trusted OIDC issuer. A user's access lives in
 * memberships (accounts.ts); this module knows who a user is, never what
 * they may do. Password hashes are never selected except to check one.
 */
import { type Kysely, sql } from "kysely";
import { z } from "zod";
import type { Database, MemberRole } from "../../schema/database.ts";
import { type Actor, requireOperator, type Role } from "../access.ts";
import { InvalidCredentialsError } from "../credentials/errors.ts";
import type { OidcIdentity } from "../credentials/oidc.ts";
import {
  hashPassword,
  MAX_PASSWORD_LENGTH,
  MIN_PASSWORD_LENGTH,
  needsRehash,
  verifyPassword,
} from "../credentials/passwords.ts";
import { revoke } from "../credentials/sessions.ts";
import { ForbiddenError, InvalidInputError, parseInput, textField } from "../errors.ts";
import { type AuditMeta, recordAudit } from "./audit.ts";

/** A user as the API shows it: never the password hash, only whether there is one. */
export interface UserView {
  id: string;
  email: string | null;
  name: string | null;
  hasPassword: boolean;
  oidcIssuer: string | null;
  createdAt: Date;
}

/** The columns of a UserView, for queries that join users. */
export const USER_VIEW_COLUMNS = [
  "users.id",
  "users.email",
  "users.name",
  sql<boolean>`users.password_hash is not null`.as("has_password"),
  "users.oidc_issuer",
  "users.created_at",
] as const;

export function toUserView(row: {
  id: string;
  email: string | null;
  name: string | null;
  has_password: boolean;
  oidc_issuer: string | null;
  created_at: Date;
}): UserView {
  return {
    id: row.id,
    email: row.email,
    name: row.name,
    hasPassword: row.has_password,
    oidcIssuer: row.oidc_issuer,
    createdAt: row.created_at,
  };
}

/** A trimmed, lower-cased email address; the one form stored and looked up. */
export const emailField = z.string().trim().toLowerCase()
  .max(320, "must be at most 320 characters")
  .regex(/^[^\s@]{1,64}@[^\s@]+\.[^\s@]+$/, "must be an email address");

export const passwordField = z.string()
  .min(MIN_PASSWORD_LENGTH, `must be at least ${MIN_PASSWORD_LENGTH} characters`)
  .max(MAX_PASSWORD_LENGTH, `must be at most ${MAX_PASSWORD_LENGTH} characters`);

const createUserInput = z.object({
  email: emailField,
  name: textField(200),
  password: passwordField,
});

export interface CreateUserInput {
  email: string;
  name: string;
  password: string;
}

/** Creates a user who signs in with a password. Operators only. */
export async function createUser(
  db: Kysely<Database>,
  input: CreateUserInput,
  options: { actor: Actor; audit: AuditMeta },
): Promise<UserView> {
  requireOperator(options.actor, "create users");
  const { email, name, password } = parseInput(createUserInput, input);
  const passwordHash = await hashPassword(password);
  return await db.transaction().execute(async (trx) => {
    const inserted = await trx.insertInto("users")
      .values({ email, name, password_hash: passwordHash })
      .onConflict((oc) => oc.column("email").doNothing())
      .returning("id")
      .executeTakeFirst();
    if (!inserted) throw new InvalidInputError("email: is already taken by another user", "email");
    await recordAudit(trx, {
      ...options.audit,
      action: "user.create",
      targetType: "user",
      targetId: inserted.id,
      diff: { email, name },
    });
    return await userView(trx, inserted.id);
  });
}

/**
 * The user an email and password belong to, or an InvalidCredentialsError
 * that is the same for an unknown email and a wrong password (the scrypt
 * work is done either way). Upgrades a hash made with older parameters.
 */
export async function checkPassword(
  db: Kysely<Database>,
  input: { email: string; password: string },
): Promise<string> {
  const email = emailField.safeParse(input.email);
  const password = input.password.length <= MAX_PASSWORD_LENGTH ? input.password : "";
  const user = email.success
    ? await db.selectFrom("users").select(["id", "password_hash"])
      .where("email", "=", email.data).executeTakeFirst()
    : undefined;
  const stored = user?.password_hash ?? null;
  const ok = await verifyPassword(password, stored);
  if (!ok || !user || !stored || !password) throw new InvalidCredentialsError();
  if (needsRehash(stored)) {
    await db.updateTable("users")
      .set({ password_hash: await hashPassword(password), updated_at: sql<Date>`now()` })
      .where("id", "=", user.id).where("password_hash", "=", stored).execute();
  }
  return user.id;
}

const setPasswordInput = z.object({
  currentPassword: z.string().max(MAX_PASSWORD_LENGTH),
  newPassword: passwordField,
});

export interface SetPasswordInput {
  currentPassword: string;
  newPassword: string;
}

/**
 * Changes the signed-in user's own password, given the current one, and
 * signs out every other session of theirs (the one making the change stays).
 */
export async function setPassword(
  db: Kysely<Database>,
  input: SetPasswordInput,
  options: { actor: Actor; audit: AuditMeta },
): Promise<UserView> {
  const { actor } = options;
  if (actor.kind !== "user") {
    throw new ForbiddenError("Only a signed-in user can change their own password");
  }
  const { currentPassword, newPassword } = parseInput(setPasswordInput, input);
  const current = await db.selectFrom("users").select("password_hash")
    .where("id", "=", actor.userId).executeTakeFirstOrThrow();
  if (!current.password_hash) {
    throw new ForbiddenError("This user signs in through an identity provider and has no password");
  }
  if (!await verifyPassword(currentPassword, current.password_hash)) {
    throw new InvalidCredentialsError("The current password is incorrect");
  }
  const passwordHash = await hashPassword(newPassword);
  return await db.transaction().execute(async (trx) => {
    const changed = await trx.updateTable("users")
      .set({ password_hash: passwordHash, updated_at: sql<Date>`now()` })
      .where("id", "=", actor.userId)
      // Two changes racing from the same old password: only the first applies.
      .where("password_hash", "=", current.password_hash)
      .executeTakeFirst();
    if (Number(changed.numUpdatedRows) !== 1) {
      throw new InvalidCredentialsError("The current password is incorrect");
    }
    const revoked = await revoke(
      trx,
      { userId: actor.userId, exceptSessionId: actor.sessionId },
      "password_change",
    );
    await recordAudit(trx, {
      ...options.audit,
      action: "user.set_password",
      targetType: "user",
      targetId: actor.userId,
      diff: { otherSessionsRevoked: revoked },
    });
    return await userView(trx, actor.userId);
  });
}

/**
 * The user an OIDC identity belongs to, matched by (issuer, subject) only,
 * created on first sight. The email comes from a verified email claim and
 * only when no other user has it: identities are never linked by email.
 */
export async function provisionOidcUser(
  db: Kysely<Database>,
  identity: OidcIdentity,
  options: { audit: Omit<AuditMeta, "actor"> },
): Promise<string> {
  const existing = await findOidcUser(db, identity);
  if (existing) return existing;
  return await db.transaction().execute(async (trx) => {
    const insert = (email: string | null) =>
      trx.insertInto("users")
        .values({
          email,
          name: identity.name,
          oidc_issuer: identity.issuer,
          oidc_subject: identity.subject,
        })
        .onConflict((oc) => oc.doNothing())
        .returning("id")
        .executeTakeFirst();
    let email = identity.email;
    let inserted = await insert(email);
    if (!inserted) {
      // A concurrent first request provisioned the user, or someone took the email.
      const raced = await findOidcUser(trx, identity);
      if (raced) return raced;
      email = null;
      inserted = await insert(email);
      if (!inserted) {
        throw new Error(`Cannot provision the OIDC user ${identity.issuer} ${identity.subject}`);
      }
    }
    await recordAudit(trx, {
      ...options.audit,
      actor: `user:${inserted.id}`,
      action: "user.provision",
      targetType: "user",
      targetId: inserted.id,
      diff: {
        issuer: identity.issuer,
        subject: identity.subject,
        email,
        name: identity.name,
      },
    });
    return inserted.id;
  });
}

async function findOidcUser(db: Kysely<Database>, identity: OidcIdentity): Promise<string | null> {
  const row = await db.selectFrom("users").select("id")
    .where("oidc_issuer", "=", identity.issuer)
    .where("oidc_subject", "=", identity.subject)
    .executeTakeFirst();
  return row?.id ?? null;
}

/** The user's memberships as account id → role. */
export async function rolesOf(
  db: Kysely<Database>,
  userId: string,
): Promise<Map<string, Role>> {
  const rows = await db.selectFrom("memberships").select(["account_id", "role"])
    .where("user_id", "=", userId).execute();
  return new Map(rows.map((row) => [row.account_id, row.role as MemberRole]));
}

/**
 * The user behind a live session, with their roles, in one round trip; null
 * when the session is revoked, expired, or not the user's.
 */
export async function sessionRoles(
  db: Kysely<Database>,
  claims: { userId: string; sessionId: string },
): Promise<Map<string, Role> | null> {
  const rows = await db.selectFrom("sessions")
    .leftJoin("memberships", "memberships.user_id", "sessions.user_id")
    .select(["memberships.account_id", "memberships.role"])
    .where("sessions.id", "=", claims.sessionId)
    .where("sessions.user_id", "=", claims.userId)
    .where("sessions.revoked_at", "is", null)
    .where("sessions.expires_at", ">", sql<Date>`now()`)
    .execute();
  if (rows.length === 0) return null;
  const roles = new Map<string, Role>();
  for (const row of rows) {
    if (row.account_id && row.role) roles.set(row.account_id, row.role);
  }
  return roles;
}

/** One user, as the API shows it. */
export async function userView(db: Kysely<Database>, userId: string): Promise<UserView> {
  const row = await db.selectFrom("users").select(USER_VIEW_COLUMNS)
    .where("users.id", "=", userId).executeTakeFirstOrThrow();
  return toUserView(row);
}
