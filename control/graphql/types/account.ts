/** Accounts: the customers that own keys and balances. */
import type { Account } from "../../../schema/database.ts";
import { InvalidInputError } from "../../errors.ts";
import { createAccount, listAccounts } from "../../services/accounts.ts";
import { auditMeta, builder } from "../builder.ts";

export const AccountStatusEnum = builder.enumType("AccountStatus", {
  values: ["active", "suspended"] as const,
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
  t.field({
    type: [AccountRef],
    description: "Every account, oldest first.",
    resolve: (_root, _args, ctx) => listAccounts(ctx.db),
  }));

builder.mutationField("createAccount", (t) =>
  t.field({
    type: AccountRef,
    errors: { types: [InvalidInputError] },
    args: { input: t.arg({ type: CreateAccountInput, required: true }) },
    resolve: (_root, { input }, ctx) => createAccount(ctx.db, input, { audit: auditMeta(ctx) }),
  }));
