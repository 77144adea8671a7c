/**
 * Balances and the ledger: an account's reserved and available amounts,
 * manual adjustments, an account's entries, reconciliation.
 */
import { LEDGER_KINDS, type LedgerEntry, type LedgerKind } from "../../../schema/ledger.ts";
import { ForbiddenError, InvalidInputError, NotFoundError, toGraphQLError } from "../../errors.ts";
import {
  type AccountReconciliation,
  adjustBalance,
  type BalanceAdjustment,
  ledgerEntryCursor,
  listLedgerEntries,
  reconcileLedger,
  type Reconciliation,
  refundRequest,
  type RequestRefund,
} from "../../services/ledger.ts";
import { auditMeta, builder } from "../builder.ts";
import { keysetConnection } from "../connections.ts";
import { AccountRef } from "./account.ts";

export const LedgerKindEnum = builder.enumType("LedgerKind", { values: LEDGER_KINDS });

export const LedgerEntryRef = builder.objectRef<LedgerEntry>("LedgerEntry").implement({
  description: "One entry of a ledger transaction, whose entries sum to zero. Entries are " +
    "never changed or removed.",
  fields: (t) => ({
    id: t.id({ resolve: (entry) => entry.id.toString() }),
    transactionId: t.exposeID("transaction_id"),
    kind: t.field({ type: LedgerKindEnum, resolve: (entry) => entry.kind as LedgerKind }),
    book: t.exposeString("book", {
      description: 'The book it posts to: "customer:<account id>" or a system book such as ' +
        '"system:revenue".',
    }),
    accountId: t.exposeID("account_id", { nullable: true }),
    amount: t.expose("amount", {
      type: "Money",
      description: "Signed: positive credits the book, negative debits it.",
    }),
    reference: t.exposeString("reference", {
      nullable: true,
      description: "What it settles, such as a request id; posted once per kind.",
    }),
    memo: t.exposeString("memo", { nullable: true }),
    createdAt: t.expose("created_at", { type: "DateTime" }),
  }),
});

const BalanceAdjustmentRef = builder.objectRef<BalanceAdjustment>("BalanceAdjustment").implement({
  description: "A manual credit or debit, posted to the ledger and audited.",
  fields: (t) => ({
    accountId: t.exposeID("accountId"),
    transactionId: t.exposeID("transactionId"),
    balance: t.expose("balance", { type: "Money", description: "The balance after it." }),
  }),
});

const AccountReconciliationRef = builder.objectRef<AccountReconciliation>(
  "AccountReconciliation",
).implement({
  description: "One account's cached balance against the entries of its book.",
  fields: (t) => ({
    accountId: t.exposeID("accountId"),
    name: t.exposeString("name"),
    balance: t.expose("balance", { type: "Money", description: "The cached balance." }),
    entriesSum: t.expose("entriesSum", {
      type: "Money",
      description: "The sum of the entries of the account's own book.",
    }),
    balanced: t.exposeBoolean("balanced", { description: "True when the two are equal." }),
  }),
});

const LedgerReconciliationRef = builder.objectRef<Reconciliation>("LedgerReconciliation")
  .implement({
    description: "The ledger checked: every cached balance against its entries, and every " +
      "transaction against zero.",
    fields: (t) => ({
      balanced: t.exposeBoolean("balanced", {
        description: "Every account balanced, and every transaction summing to zero.",
      }),
      entriesSum: t.expose("entriesSum", {
        type: "Money",
        description: "The sum of all entries in every book: zero in a sound ledger.",
      }),
      unbalancedTransactions: t.exposeInt("unbalancedTransactions", {
        description: "How many transactions' entries do not sum to zero.",
      }),
      accounts: t.field({
        type: [AccountReconciliationRef],
        description: "Every account, oldest first.",
        resolve: (reconciliation) => reconciliation.accounts,
      }),
    }),
  });

const AdjustBalanceInput = builder.inputType("AdjustBalanceInput", {
  fields: (t) => ({
    accountId: t.id({ required: true }),
    amount: t.string({
      required: true,
      description: 'A signed USD amount: "10" credits 10 USD, "-2.5" debits 2.50 USD. Not ' +
        "zero, at most 8 decimals; a debit may not take the balance below zero.",
    }),
    reason: t.string({ required: true, description: "Why; kept as the entries' memo." }),
  }),
});

builder.mutationField("adjustBalance", (t) =>
  t.field({
    type: BalanceAdjustmentRef,
    description: "Credits or debits an account by hand, against system:adjustments " +
      "(operators only).",
    errors: { types: [InvalidInputError, NotFoundError, ForbiddenError] },
    args: { input: t.arg({ type: AdjustBalanceInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      adjustBalance(ctx.db, input, { actor: ctx.actor, audit: auditMeta(ctx) }),
  }));

const RequestRefundRef = builder.objectRef<RequestRefund>("RequestRefund").implement({
  description: "What one request was charged, given back to its account: a refund " +
    "transaction against system:refunds, posted once per request.",
  fields: (t) => ({
    requestId: t.exposeString("requestId"),
    accountId: t.exposeID("accountId"),
    transactionId: t.exposeID("transactionId"),
    amount: t.expose("amount", { type: "Money", description: "What was given back." }),
    balance: t.expose("balance", { type: "Money", description: "The balance after it." }),
    created: t.exposeBoolean("created", {
      description: "False when the request had been refunded before (nothing was written; " +
        "this is the first refund).",
    }),
  }),
});

const RefundRequestInput = builder.inputType("RefundRequestInput", {
  fields: (t) => ({
    requestId: t.string({ required: true, description: "The request's x-request-id." }),
    reason: t.string({ required: true, description: "Why; kept as the entries' memo." }),
  }),
});

builder.mutationField("refundRequest", (t) =>
  t.field({
    type: RequestRefundRef,
    description: "Gives back what a request was charged: its cost and fee in Standard mode, " +
      "its routing fee in BYOK mode (operators only; audited). The key's spend goes down by " +
      "as much. Refunding a request again returns the first refund.",
    errors: { types: [InvalidInputError, NotFoundError, ForbiddenError] },
    args: { input: t.arg({ type: RefundRequestInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      refundRequest(ctx.db, input, { actor: ctx.actor, audit: auditMeta(ctx) }),
  }));

builder.queryField("ledgerEntries", (t) =>
  t.connection(
    {
      type: LedgerEntryRef,
      description: "The entries of an account's own book, newest first (first/last 1..500, " +
        "default 50): its statement, for the account's viewers and up. Each read is audited.",
      args: { accountId: t.arg.id({ required: true }) },
      resolve: (_root, args, ctx) =>
        keysetConnection(
          args,
          { defaultSize: 50, maxSize: 500 },
          ledgerEntryCursor,
          (page) =>
            listLedgerEntries(ctx.db, args.accountId, page, {
              actor: ctx.actor,
              audit: auditMeta(ctx),
            }),
        ),
    },
    { name: "LedgerEntryConnection" },
    { name: "LedgerEntryEdge" },
  ));

builder.queryField("ledgerReconciliation", (t) =>
  t.field({
    type: LedgerReconciliationRef,
    description: "Checks every account's cached balance against its ledger entries " +
      "(operators only).",
    resolve: async (_root, _args, ctx) => {
      try {
        return await reconcileLedger(ctx.db, { actor: ctx.actor });
      } catch (error) {
        throw toGraphQLError(error);
      }
    },
  }));

builder.objectFields(AccountRef, (t) => ({
  reserved: t.expose("reserved", {
    type: "Money",
    description: "The part of the balance gateway replicas have leased to admit requests " +
      "with; what they do not spend goes back to the balance.",
  }),
  available: t.field({
    type: "Money",
    description: "balance - reserved: the part of the balance no gateway replica holds.",
    resolve: (account) => account.balance - account.reserved,
  }),
}));
