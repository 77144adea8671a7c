/**
 * Signing in: signIn and refreshSession (the only fields that run without a
 * credential), signOut, and `me`, the caller as the control plane sees it.
 */
import { isOperator, roleIn } from "../../access.ts";
import {
  InvalidCredentialsError,
  InvalidRefreshTokenError,
  TooManyAttemptsError,
} from "../../credentials/errors.ts";
import { refreshSession, type SessionTokens, signIn, signOut } from "../../credentials/sign_in.ts";
import { ForbiddenError } from "../../errors.ts";
import { accountCursor, listAccounts } from "../../services/accounts.ts";
import { userView } from "../../services/users.ts";
import { auditMeta, builder, type Context } from "../builder.ts";
import { keysetConnection } from "../connections.ts";
import { AccountRef, MemberRoleEnum } from "./account.ts";
import { ErrorInterface } from "./errors.ts";
import { UserRef } from "./user.ts";
import type { Account } from "../../../schema/database.ts";
import type { Actor, Role } from "../../access.ts";

builder.objectType(InvalidCredentialsError, {
  name: "InvalidCredentialsError",
  description: "The email or password is incorrect (the same answer for an unknown email).",
  interfaces: [ErrorInterface],
});

builder.objectType(TooManyAttemptsError, {
  name: "TooManyAttemptsError",
  description: "Too many failed sign-ins for this email from this address.",
  interfaces: [ErrorInterface],
  fields: (t) => ({
    retryAfterSeconds: t.exposeInt("retryAfterSeconds"),
  }),
});

builder.objectType(InvalidRefreshTokenError, {
  name: "InvalidRefreshTokenError",
  description: "The refresh token is unknown, expired, already used, or its session ended: " +
    "sign in again. (Presenting a used refresh token ends its whole session.)",
  interfaces: [ErrorInterface],
});

const SessionRef = builder.objectRef<SessionTokens>("Session").implement({
  description: "A signed-in session's tokens. Send the access token as `Authorization: " +
    "Bearer <accessToken>`; before it expires, exchange the refresh token (once: it is " +
    "replaced) with refreshSession.",
  fields: (t) => ({
    accessToken: t.exposeString("accessToken", {
      description: "A JWT (EdDSA) for /graphql, valid for 15 minutes.",
    }),
    accessTokenExpiresAt: t.expose("accessTokenExpiresAt", { type: "DateTime" }),
    refreshToken: t.exposeString("refreshToken", {
      description: "Opaque; good for one refreshSession. Keep it secret.",
    }),
    refreshTokenExpiresAt: t.expose("refreshTokenExpiresAt", { type: "DateTime" }),
    tokenType: t.string({ resolve: () => "Bearer" }),
    user: t.field({
      type: UserRef,
      resolve: (session, _args, ctx) => userView(ctx.db, session.userId),
    }),
  }),
});

const SignOutResultRef = builder.objectRef<{ revokedSessions: number }>("SignOutResult")
  .implement({
    fields: (t) => ({
      revokedSessions: t.exposeInt("revokedSessions", {
        description: "How many sessions were signed out.",
      }),
    }),
  });

const ActorKindEnum = builder.enumType("ActorKind", {
  values: ["operator", "user", "api_key"] as const,
});

interface MembershipView {
  account: Account;
  role: Role;
}

const MembershipRef = builder.objectRef<MembershipView>("Membership").implement({
  description: "An account the caller acts in, and its role there.",
  fields: (t) => ({
    account: t.field({ type: AccountRef, resolve: (m) => m.account }),
    role: t.field({ type: MemberRoleEnum, resolve: (m) => m.role }),
  }),
});

const MeRef = builder.objectRef<Actor>("Me").implement({
  description: "The caller: an operator (everything everywhere), a console user, or a " +
    "management-scoped API key (admin in its own account).",
  fields: (t) => ({
    kind: t.field({ type: ActorKindEnum, resolve: (actor) => actor.kind }),
    id: t.exposeString("id", { description: 'As the audit log names it, e.g. "user:<id>".' }),
    user: t.field({
      type: UserRef,
      nullable: true,
      resolve: (actor, _args, ctx) => actor.kind === "user" ? userView(ctx.db, actor.userId) : null,
    }),
    apiKeyId: t.id({
      nullable: true,
      resolve: (actor) => actor.kind === "api_key" ? actor.keyId : null,
    }),
    memberships: t.connection(
      {
        type: MembershipRef,
        description: "The accounts the caller has a role in, oldest first (first/last 1..200, " +
          "default 50). Empty for operators, who act in every account.",
        resolve: (actor, args, ctx) =>
          keysetConnection(
            args,
            { defaultSize: 50, maxSize: 200 },
            (m: MembershipView & { account: { cursor_at: string } }) => accountCursor(m.account),
            async (page) => {
              if (isOperator(actor)) return [];
              const accounts = await listAccounts(ctx.db, actor, page);
              return accounts.map((account) => ({ account, role: roleIn(actor, account.id)! }));
            },
          ),
      },
      { name: "MembershipConnection" },
      { name: "MembershipEdge" },
    ),
  }),
});

const SignInInput = builder.inputType("SignInInput", {
  fields: (t) => ({
    email: t.string({ required: true }),
    password: t.string({ required: true }),
  }),
});

const RefreshSessionInput = builder.inputType("RefreshSessionInput", {
  fields: (t) => ({ refreshToken: t.string({ required: true }) }),
});

const SignOutInput = builder.inputType("SignOutInput", {
  fields: (t) => ({
    everywhere: t.boolean({
      description: "Sign out every session of the user, not only this one.",
    }),
  }),
});

builder.queryField("me", (t) =>
  t.field({
    type: MeRef,
    description: "The caller and the accounts it acts in.",
    resolve: (_root, _args, ctx) => ctx.actor,
  }));

builder.mutationField("signIn", (t) =>
  t.field({
    type: SessionRef,
    description: "Signs a user in with email and password; needs no Authorization header. " +
      "Failures are rate limited per email and address.",
    errors: { types: [InvalidCredentialsError, TooManyAttemptsError] },
    args: { input: t.arg({ type: SignInInput, required: true }) },
    resolve: async (_root, { input }, ctx) =>
      signIn(await signInDeps(ctx), input, requestMeta(ctx)),
  }));

builder.mutationField("refreshSession", (t) =>
  t.field({
    type: SessionRef,
    description: "Exchanges a refresh token for new tokens (the old one stops working); needs " +
      "no Authorization header.",
    errors: { types: [InvalidRefreshTokenError] },
    args: { input: t.arg({ type: RefreshSessionInput, required: true }) },
    resolve: async (_root, { input }, ctx) =>
      refreshSession(await signInDeps(ctx), input.refreshToken, requestMeta(ctx)),
  }));

builder.mutationField("signOut", (t) =>
  t.field({
    type: SignOutResultRef,
    description: "Ends the caller's session: its refresh token and access tokens stop working.",
    errors: { types: [ForbiddenError] },
    args: { input: t.arg({ type: SignOutInput }) },
    resolve: async (_root, { input }, ctx) => ({
      revokedSessions: await signOut(ctx.db, input ?? {}, {
        actor: ctx.actor,
        audit: auditMeta(ctx),
      }),
    }),
  }));

// signIn and refreshSession run without an actor: they must not read ctx.actor.
async function signInDeps(ctx: Context) {
  return {
    db: ctx.db,
    hashingKey: ctx.keys.hashing,
    accessTokens: await ctx.auth.accessTokens,
    limiter: ctx.auth.signInLimiter,
  };
}

function requestMeta(ctx: Context) {
  return { ip: ctx.ip, requestId: ctx.requestId };
}
