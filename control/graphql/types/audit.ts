/** The audit log: who changed what, chained by hash; and the chain's verification. */
import type { AuditEntry } from "../../../schema/database.ts";
import { isOperator } from "../../access.ts";
import { toGraphQLError } from "../../errors.ts";
import {
  type AuditChainReport,
  auditEntryCursor,
  checkAuditChain,
  listAuditLog,
} from "../../services/audit_log.ts";
import { keysetConnection } from "../connections.ts";
import { auditMeta, builder } from "../builder.ts";

export const AuditEntryRef = builder.objectRef<AuditEntry>("AuditEntry").implement({
  description: "One change (or sensitive read), as recorded in the same transaction. Rows are " +
    "never changed or removed; each links to the one before by hash.",
  fields: (t) => ({
    id: t.id({ resolve: (entry) => entry.id.toString() }),
    accountId: t.exposeID("account_id", {
      nullable: true,
      description: "The account it concerns; null for gateway-wide changes (operators only).",
    }),
    actor: t.exposeString("actor", {
      description: 'Who: "user:<id>", "key:<prefix>", "admin:<token prefix>" or "system".',
    }),
    action: t.exposeString("action", { description: 'A dotted verb such as "api_key.revoke".' }),
    targetType: t.exposeString("target_type", { nullable: true }),
    targetId: t.exposeString("target_id", { nullable: true }),
    diff: t.string({
      description: "What changed, as a JSON object. Never holds a secret: secret-looking " +
        'fields read "[redacted]".',
      resolve: (entry) => JSON.stringify(entry.diff),
    }),
    ip: t.string({
      nullable: true,
      description: "The client's address. Operators see every row's; others see it only for " +
        "their users' and keys' own actions.",
      resolve: (entry, _args, ctx) =>
        isOperator(ctx.actor) || /^(user|key):/.test(entry.actor) ? entry.ip : null,
    }),
    requestId: t.exposeString("request_id", { nullable: true }),
    createdAt: t.expose("created_at", { type: "DateTime" }),
    prevHash: t.exposeString("prev_hash", {
      nullable: true,
      description: "The previous row's hash (null for the first row).",
    }),
    hash: t.exposeString("hash", {
      description: "SHA-256 (hex) of prevHash and this row's fields: a chain link, not a secret.",
    }),
  }),
});

const AuditLogFilterInput = builder.inputType("AuditLogFilter", {
  fields: (t) => ({
    accountId: t.id({ description: "Only this account's rows; required unless an operator." }),
    actor: t.string({ description: 'An actor id, e.g. "user:<id>".' }),
    action: t.string({ description: 'An action, or a prefix such as "api_key.*".' }),
    targetType: t.string(),
    targetId: t.string(),
    from: t.field({ type: "DateTime", description: "Inclusive." }),
    to: t.field({ type: "DateTime", description: "Exclusive." }),
  }),
});

builder.queryField("auditLog", (t) =>
  t.connection(
    {
      type: AuditEntryRef,
      description: "The audit log, newest first (first/last 1..200, default 50). Operators read " +
        "every row; an account's owners and admins read that account's. Each read is audited.",
      args: { filter: t.arg({ type: AuditLogFilterInput }) },
      resolve: (_root, args, ctx) =>
        keysetConnection(
          args,
          { defaultSize: 50, maxSize: 200 },
          auditEntryCursor,
          (page) =>
            listAuditLog(ctx.db, args.filter ?? {}, page, {
              actor: ctx.actor,
              audit: auditMeta(ctx),
            }),
        ),
    },
    { name: "AuditEntryConnection" },
    { name: "AuditEntryEdge" },
  ));

const AuditChainBreakRef = builder.objectRef<{ id: bigint; problem: string }>("AuditChainBreak")
  .implement({
    description: "The first row that does not chain, and what is wrong with it.",
    fields: (t) => ({
      id: t.id({ resolve: (broken) => broken.id.toString() }),
      problem: t.exposeString("problem"),
    }),
  });

const AuditChainHeadRef = builder.objectRef<{ id: bigint; hash: string }>("AuditChainHead")
  .implement({
    description: "The newest row. Note it somewhere else: removing the newest rows leaves a " +
      "chain that still verifies, but not one that still ends here.",
    fields: (t) => ({
      id: t.id({ resolve: (head) => head.id.toString() }),
      hash: t.exposeString("hash"),
    }),
  });

const AuditChainRef = builder.objectRef<AuditChainReport>("AuditChain").implement({
  description: "The audit log's hash chain, recomputed row by row.",
  fields: (t) => ({
    ok: t.boolean({ resolve: (report) => report.check.ok }),
    rows: t.int({
      nullable: true,
      description: "How many rows verified, when ok.",
      resolve: (report) => (report.check.ok ? report.check.rows : null),
    }),
    broken: t.field({
      type: AuditChainBreakRef,
      nullable: true,
      description: "The first broken link, when not ok.",
      resolve: ({ check }) => (check.ok ? null : { id: check.brokenAt, problem: check.problem }),
    }),
    head: t.field({
      type: AuditChainHeadRef,
      nullable: true,
      resolve: (report) => report.head,
    }),
  }),
});

builder.queryField("auditChain", (t) =>
  t.field({
    type: AuditChainRef,
    description: "Verifies the audit log's hash chain and names the first broken link " +
      "(operators only).",
    resolve: async (_root, _args, ctx) => {
      try {
        return await checkAuditChain(ctx.db, { actor: ctx.actor });
      } catch (error) {
        throw toGraphQLError(error);
      }
    },
  }));
