/** Accounts: the customers that own keys and balances, each visible only to its members. */
import type { Account } from "../../../schema/database.ts";
import { MEMBER_ROLES } from "../../access.ts";
import { ForbiddenError, InvalidInputError, toGraphQLError } from "../../errors.ts";
import { accountCursor, createAccount, getAccount, listAccounts } from "../../services/accounts.ts";
import { auditMeta, builder } from "../builder.ts";
import { keysetConnection } from "../connections.ts";

export const AccountStatusEnum = builder.enumType("AccountStatus", {
  values: ["active", "suspended"] as const,
});

export const MemberRoleEnum = builder.enumType("MemberRole", {
  description: "A role in an account. viewer reads; member also manages inference API keys; " +
    "admin also manages management keys, members below owner and BYOK provider keys; owner " +
    "does everything in the account.",
  values: MEMBER_ROLES,
});

export const AccountRef = builder.objectRef<Account>("Account").implement({
  description: "A customer account.",
  fields: (t) => ({
    id: t.exposeID("id"),
    name: t.exposeString("name"),
    status: t.expose("status", { type: AccountStatusEnum }),
    balance: t.expose("balance", {
      type: "Money",
      description: "The prepaid balance, derived from the ledger.",
    }),
    createdAt: t.expose("created_at", { type: "DateTime" }),
  }),
});

const CreateAccountInput = builder.inputType("CreateAccountInput", {
  fields: (t) => ({
    name: t.string({ required: true, description: "1 to 200 characters, trimmed." }),
  }),
});

builder.queryField("accounts", (t) =>
  t.connection(
    {
      type: AccountRef,
      description: "The accounts the caller can see (operators: all), oldest first " +
        "(first/last 1..200, default 50).",
      resolve: (_root, args, ctx) =>
        keysetConnection(
          args,
          { defaultSize: 50, maxSize: 200 },
          accountCursor,
          (page) => listAccounts(ctx.db, ctx.actor, page),
        ),
    },
    { name: "AccountConnection" },
    { name: "AccountEdge" },
  ));

builder.queryField("account", (t) =>
  t.field({
    type: AccountRef,
    description: "One account the caller can see; another tenant's is NOT_FOUND, like a " +
      "missing one.",
    args: { id: t.arg.id({ required: true }) },
    resolve: async (_root, { id }, ctx) => {
      try {
        return await getAccount(ctx.db, ctx.actor, id);
      } catch (error) {
        throw toGraphQLError(error);
      }
    },
  }));

builder.mutationField("createAccount", (t) =>
  t.field({
    type: AccountRef,
    description: "Creates an account. Operators and signed-in users may; a user becomes its " +
      "owner.",
    errors: { types: [InvalidInputError, ForbiddenError] },
    args: { input: t.arg({ type: CreateAccountInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      createAccount(ctx.db, input, { actor: ctx.actor, audit: auditMeta(ctx) }),
  }));
