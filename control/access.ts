/**
 * Who is calling the control plane, and what they may touch.
 *
 * Three kinds of actor:
 * - an operator (the bootstrap admin token or a stored admin token)
 *   administers the whole gateway;
 * - a console user (a JWT we issued, or one from a trusted OIDC issuer) acts
 *   in the accounts they are a member of, with their role in each;
 * - a management-scoped API key acts in its own account with the role it was
 *   given. Inference-only keys never reach here: /graphql refuses them.
 *
 * Every resolver scopes through these helpers. An object in an account the
 * actor cannot see is reported exactly like a missing one (NotFoundError), so
 * ids from other tenants reveal nothing; an action the actor's role does not
 * allow in an account it can see is a ForbiddenError.
 */
import { ForbiddenError, NotFoundError } from "./errors.ts";

export const MEMBER_ROLES = ["owner", "admin", "member", "viewer"] as const;
export type Role = typeof MEMBER_ROLES[number];

export type Actor =
  | {
    kind: "operator";
    /** "admin:<token prefix>", or "admin:configured" for TOLLGATE_ADMIN_TOKEN. */
    id: string;
  }
  | {
    kind: "user";
    /** "user:<user id>", as written to the audit log. */
    id: string;
    userId: string;
    /** Account id → the user's role there. */
    roles: ReadonlyMap<string, Role>;
    /** The sign-in session of a Tollgate access token; absent for an OIDC token. */
    sessionId?: string;
  }
  | {
    kind: "api_key";
    /** "key:<key prefix>", as written to the audit log. */
    id: string;
    keyId: string;
    accountId: string;
    role: Role;
  };

const RANK: Record<Role, number> = { viewer: 0, member: 1, admin: 2, owner: 3 };

/** True when `role` is at least `min` (owner > admin > member > viewer). */
export function atLeast(role: Role, min: Role): boolean {
  return RANK[role] >= RANK[min];
}

/** The actor's role in an account: operators count as owner everywhere; null when not a member. */
export function roleIn(actor: Actor, accountId: string): Role | null {
  switch (actor.kind) {
    case "operator":
      return "owner";
    case "user":
      return actor.roles.get(accountId) ?? null;
    case "api_key":
      return actor.accountId === accountId ? actor.role : null;
  }
}

/** The accounts the actor can see: "all" for operators, otherwise their ids. */
export function visibleAccounts(actor: Actor): "all" | string[] {
  switch (actor.kind) {
    case "operator":
      return "all";
    case "user":
      return [...actor.roles.keys()];
    case "api_key":
      return [actor.accountId];
  }
}

/**
 * Asserts the actor may act in `accountId` with at least `min`. Throws
 * NotFoundError (`what` names the record, e.g. "api key 4f…") when the actor
 * cannot see the account at all, ForbiddenError when its role is too low.
 */
export function requireRole(actor: Actor, accountId: string, min: Role, what: string): void {
  const role = roleIn(actor, accountId);
  if (role === null) throw new NotFoundError(`${what} not found`);
  if (!atLeast(role, min)) {
    throw new ForbiddenError(`This needs the ${min} role in the account; you are ${role}`);
  }
}

/** Asserts the actor is an operator; others get a ForbiddenError naming what needs one. */
export function requireOperator(actor: Actor, action: string): void {
  if (actor.kind !== "operator") {
    throw new ForbiddenError(`Only an operator can ${action}`);
  }
}

export function isOperator(actor: Actor): boolean {
  return actor.kind === "operator";
}
