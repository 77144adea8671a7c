/** Console users and account members: who signs in, and their role in each account. */
import { InvalidCredentialsError } from "../../credentials/errors.ts";
import { MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH } from "../../credentials/passwords.ts";
import { ForbiddenError, InvalidInputError, NotFoundError } from "../../errors.ts";
import {
  addMember,
  getAccount,
  listMembers,
  type Member,
  memberCursor,
  removeMember,
  updateMemberRole,
} from "../../services/accounts.ts";
import { createUser, setPassword, type UserView } from "../../services/users.ts";
import { auditMeta, builder } from "../builder.ts";
import { keysetConnection } from "../connections.ts";
import { AccountRef, MemberRoleEnum } from "./account.ts";

export const UserRef = builder.objectRef<UserView>("User").implement({
  description: "A console user. Access comes from memberships, each with a role in an account.",
  fields: (t) => ({
    id: t.exposeID("id"),
    email: t.exposeString("email", {
      nullable: true,
      description: "Null only for an OIDC user whose verified email another user has.",
    }),
    name: t.exposeString("name", { nullable: true }),
    hasPassword: t.exposeBoolean("hasPassword", {
      description: "Whether the user can sign in with a password (signIn).",
    }),
    oidcIssuer: t.exposeString("oidcIssuer", {
      nullable: true,
      description: "The OIDC issuer the user signs in through, if any.",
    }),
    createdAt: t.expose("createdAt", { type: "DateTime" }),
  }),
});

export const MemberRef = builder.objectRef<Member>("Member").implement({
  description: "A user's membership of an account, with their role there.",
  fields: (t) => ({
    accountId: t.exposeID("accountId"),
    account: t.field({
      type: AccountRef,
      resolve: (member, _args, ctx) => getAccount(ctx.db, ctx.actor, member.accountId),
    }),
    user: t.field({ type: UserRef, resolve: (member) => member.user }),
    role: t.field({ type: MemberRoleEnum, resolve: (member) => member.role }),
    createdAt: t.expose("createdAt", { type: "DateTime", description: "When they joined." }),
  }),
});

const PASSWORD_RULES = `${MIN_PASSWORD_LENGTH} to ${MAX_PASSWORD_LENGTH} characters.`;

const CreateUserInput = builder.inputType("CreateUserInput", {
  fields: (t) => ({
    email: t.string({ required: true, description: "Stored trimmed and lower-cased." }),
    name: t.string({ required: true, description: "1 to 200 characters, trimmed." }),
    password: t.string({ required: true, description: PASSWORD_RULES }),
  }),
});

const SetPasswordInput = builder.inputType("SetPasswordInput", {
  fields: (t) => ({
    currentPassword: t.string({ required: true }),
    newPassword: t.string({ required: true, description: PASSWORD_RULES }),
  }),
});

const AddMemberInput = builder.inputType("AddMemberInput", {
  fields: (t) => ({
    accountId: t.id({ required: true }),
    email: t.string({ required: true, description: "An existing user's email." }),
    role: t.field({ type: MemberRoleEnum, required: true }),
  }),
});

const UpdateMemberRoleInput = builder.inputType("UpdateMemberRoleInput", {
  fields: (t) => ({
    accountId: t.id({ required: true }),
    userId: t.id({ required: true }),
    role: t.field({ type: MemberRoleEnum, required: true }),
  }),
});

const RemoveMemberInput = builder.inputType("RemoveMemberInput", {
  fields: (t) => ({
    accountId: t.id({ required: true }),
    userId: t.id({ required: true }),
  }),
});

const MEMBER_RULES = "Admins manage members below owner; only owners grant, change or remove " +
  "an owner; the last owner cannot be removed or demoted.";

builder.queryField("members", (t) =>
  t.connection(
    {
      type: MemberRef,
      description: "An account's members, oldest first (first/last 1..200, default 50), for its " +
        "viewers and up.",
      args: { accountId: t.arg.id({ required: true }) },
      resolve: (_root, args, ctx) =>
        keysetConnection(
          args,
          { defaultSize: 50, maxSize: 200 },
          memberCursor,
          (page) => listMembers(ctx.db, ctx.actor, args.accountId, page),
        ),
    },
    { name: "MemberConnection" },
    { name: "MemberEdge" },
  ));

builder.mutationField("createUser", (t) =>
  t.field({
    type: UserRef,
    description: "Creates a user who signs in with a password. Operators only; add them to " +
      "accounts with addMember.",
    errors: { types: [InvalidInputError, ForbiddenError] },
    args: { input: t.arg({ type: CreateUserInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      createUser(ctx.db, input, { actor: ctx.actor, audit: auditMeta(ctx) }),
  }));

builder.mutationField("setPassword", (t) =>
  t.field({
    type: UserRef,
    description: "Changes the signed-in user's own password, given the current one, and signs " +
      "out their other sessions.",
    errors: { types: [InvalidInputError, InvalidCredentialsError, ForbiddenError] },
    args: { input: t.arg({ type: SetPasswordInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      setPassword(ctx.db, input, { actor: ctx.actor, audit: auditMeta(ctx) }),
  }));

builder.mutationField("addMember", (t) =>
  t.field({
    type: MemberRef,
    description: `Adds an existing user to an account. ${MEMBER_RULES}`,
    errors: { types: [InvalidInputError, NotFoundError, ForbiddenError] },
    args: { input: t.arg({ type: AddMemberInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      addMember(ctx.db, input, { actor: ctx.actor, audit: auditMeta(ctx) }),
  }));

builder.mutationField("updateMemberRole", (t) =>
  t.field({
    type: MemberRef,
    description: `Changes a member's role. ${MEMBER_RULES}`,
    errors: { types: [InvalidInputError, NotFoundError, ForbiddenError] },
    args: { input: t.arg({ type: UpdateMemberRoleInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      updateMemberRole(ctx.db, input, { actor: ctx.actor, audit: auditMeta(ctx) }),
  }));

builder.mutationField("removeMember", (t) =>
  t.field({
    type: MemberRef,
    description: `Removes a member from an account and returns them. ${MEMBER_RULES}`,
    errors: { types: [InvalidInputError, NotFoundError, ForbiddenError] },
    args: { input: t.arg({ type: RemoveMemberInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      removeMember(ctx.db, input, { actor: ctx.actor, audit: auditMeta(ctx) }),
  }));
