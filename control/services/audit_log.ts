/**
 * Reading the audit log, newest first. Operators read every row; an
 * account's owners and admins read the rows of their account (accountId is
 * then required). Every read is itself audited ("audit_log.read"), in the
 * account it looked at, with the filters it used.
 */
import type { Kysely } from "kysely";
import { z } from "zod";
import type { AuditEntry, Database } from "../../schema/database.ts";
import { type Actor, isOperator, requireOperator } from "../access.ts";
import { InvalidInputError, parseInput, textField } from "../errors.ts";
import { requireAccount } from "./account_scope.ts";
import { type AuditChainCheck, type AuditMeta, recordRead, verifyAuditChain } from "./audit.ts";
import { decodeCursor, encodeCursor, idPart, keysetWindow, type PageRequest } from "./pages.ts";

export interface AuditLogFilter {
  /** Only this account's rows; required unless the actor is an operator. */
  accountId?: string | null;
  /** An actor id, such as "user:<id>" or "admin:configured". */
  actor?: string | null;
  /** An action ("api_key.revoke"), or every action under a prefix ("api_key.*"). */
  action?: string | null;
  targetType?: string | null;
  targetId?: string | null;
  /** From this instant, inclusive. */
  from?: Date | null;
  /** Until this instant, exclusive. */
  to?: Date | null;
}

const ACTION = /^[a-z0-9_]+(\.[a-z0-9_]+)*(\.\*)?$/;
const action = textField(200)
  .refine((text) => ACTION.test(text), 'must be like "api_key.revoke" or "api_key.*"');

const auditLogFilter = z.object({
  accountId: z.string().nullish(),
  actor: textField(200).nullish(),
  action: action.nullish(),
  targetType: textField(100).nullish(),
  targetId: textField(200).nullish(),
  from: z.date().nullish(),
  to: z.date().nullish(),
}).refine((f) => !f.from || !f.to || f.from < f.to, {
  message: "must be after from",
  path: ["to"],
});

const LIST = "audit";

/** An audit row's cursor: its id. */
export function auditEntryCursor(entry: AuditEntry): string {
  return encodeCursor(LIST, [entry.id.toString()]);
}

/** One page of the audit log the actor may read, newest first. */
export async function listAuditLog(
  db: Kysely<Database>,
  filter: AuditLogFilter,
  page: PageRequest,
  options: { actor: Actor; audit: AuditMeta },
): Promise<AuditEntry[]> {
  const parsed = parseInput(auditLogFilter, filter);
  const accountId = parsed.accountId ?? null;
  if (accountId === null && !isOperator(options.actor)) {
    throw new InvalidInputError("accountId: is required unless you are an operator", "accountId");
  }
  if (accountId !== null) await requireAccount(db, options.actor, accountId, "admin");
  const window = keysetWindow(
    page,
    "desc",
    (cursor, field) => BigInt(decodeCursor(LIST, cursor, [idPart], field)[0]!),
  );

  await recordRead(db, {
    ...options.audit,
    action: "audit_log.read",
    targetType: accountId === null ? null : "account",
    targetId: accountId,
    accountId,
    diff: { filter: definedOnly({ ...parsed, accountId: undefined }) },
  });

  let query = db.selectFrom("audit_log").selectAll();
  if (accountId !== null) query = query.where("account_id", "=", accountId);
  if (parsed.actor) query = query.where("actor", "=", parsed.actor);
  if (parsed.action?.endsWith(".*")) {
    // The pattern allows only [a-z0-9_.]; "_" is escaped, being a LIKE wildcard.
    const prefix = parsed.action.slice(0, -1).replaceAll("_", "\\_");
    query = query.where("action", "like", `${prefix}%`);
  } else if (parsed.action) query = query.where("action", "=", parsed.action);
  if (parsed.targetType) query = query.where("target_type", "=", parsed.targetType);
  if (parsed.targetId) query = query.where("target_id", "=", parsed.targetId);
  if (parsed.from) query = query.where("created_at", ">=", parsed.from);
  if (parsed.to) query = query.where("created_at", "<", parsed.to);
  if (window.after !== null) query = query.where("id", window.afterOp, window.after);
  if (window.before !== null) query = query.where("id", window.beforeOp, window.before);
  return await query.orderBy("id", window.read).limit(window.limit).execute();
}

export interface AuditChainReport {
  check: AuditChainCheck;
  /** The newest row, to note and compare later: removing the newest rows leaves a valid chain. */
  head: { id: bigint; hash: string } | null;
}

/**
 * Verifies the whole chain (operators only) and reports its head, both from
 * one snapshot: appends commit in id order (they hold the chain's lock until
 * commit), so the snapshot is always a prefix of the chain.
 */
export async function checkAuditChain(
  db: Kysely<Database>,
  options: { actor: Actor },
): Promise<AuditChainReport> {
  requireOperator(options.actor, "verify the audit chain");
  return await db.transaction().setIsolationLevel("repeatable read").execute(async (trx) => {
    const check = await verifyAuditChain(trx);
    const head = await trx.selectFrom("audit_log").select(["id", "hash"]).orderBy("id", "desc")
      .limit(1).executeTakeFirst();
    return { check, head: head ?? null };
  });
}

/** The filter's given fields, for the read's own audit row. */
function definedOnly(filter: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(filter).filter(([, v]) => v != null));
}
