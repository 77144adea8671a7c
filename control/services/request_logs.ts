/**
 * Request logs: the usage events the gateways metered, one per request,
 * newest first by (created_at, request_id). A viewer and up reads an
 * account's; operators may also read every account's at once. Each read is
 * audited ("request_logs.read") with the filters it used: the logs say which
 * agent called which model when, which is worth knowing who looked at.
 */
import { type Kysely, sql } from "kysely";
import { z } from "zod";
import type { Database, UsageEvent } from "../../schema/database.ts";
import { type Actor, isOperator } from "../access.ts";
import { InvalidInputError, isUuid, parseInput, textField } from "../errors.ts";
import { requireAccount } from "./account_scope.ts";
import { type AuditMeta, recordRead } from "./audit.ts";
import {
  decodeCursor,
  encodeCursor,
  instantPart,
  keysetWindow,
  type PageRequest,
  textPart,
  TIMESTAMP_CURSOR_FORMAT,
} from "./pages.ts";

export const BILLING_MODES = ["standard", "byok"] as const;

export interface RequestLogFilter {
  /** Required unless the actor is an operator, who reads every account's when it is omitted. */
  accountId?: string | null;
  apiKeyId?: string | null;
  /** The agent's name, as the request's X-Agent-Identity gave it. */
  agentName?: string | null;
  /** The model the caller asked for (a model or an alias). */
  model?: string | null;
  /** An HTTP status ("429") or a class of them ("4xx"). */
  status?: string | null;
  billingMode?: string | null;
  /** From this instant, inclusive. */
  from?: Date | null;
  /** Until this instant, exclusive. */
  to?: Date | null;
}

/** A usage event with its created_at to the microsecond, for its cursor. */
export interface RequestLog extends UsageEvent {
  cursor_at: string;
}

const requestLogFilter = z.object({
  accountId: z.string().nullish(),
  apiKeyId: z.string().refine(isUuid, "must be an API key id").nullish(),
  agentName: textField(200).nullish(),
  model: textField(200).nullish(),
  status: z.string().regex(/^[1-5](\d\d|xx)$/i, 'must be a status such as "429", or "4xx"')
    .nullish(),
  billingMode: z.enum(BILLING_MODES, "must be standard or byok").nullish(),
  from: z.date().nullish(),
  to: z.date().nullish(),
}).refine((f) => !f.from || !f.to || f.from < f.to, {
  message: "must be after from",
  path: ["to"],
});

const LIST = "request_log";

export function requestLogCursor(log: RequestLog): string {
  return encodeCursor(LIST, [log.cursor_at, log.request_id]);
}

/** One page of request logs the actor may read, newest first. */
export async function listRequestLogs(
  db: Kysely<Database>,
  filter: RequestLogFilter,
  page: PageRequest,
  options: { actor: Actor; audit: AuditMeta },
): Promise<RequestLog[]> {
  const parsed = parseInput(requestLogFilter, filter);
  const accountId = parsed.accountId ?? null;
  if (accountId === null && !isOperator(options.actor)) {
    throw new InvalidInputError("accountId: is required unless you are an operator", "accountId");
  }
  if (accountId !== null) await requireAccount(db, options.actor, accountId, "viewer");
  const window = keysetWindow(page, "desc", (cursor, field) => {
    const [at, requestId] = decodeCursor(LIST, cursor, [instantPart, textPart(200)], field);
    return { at: at!, requestId: requestId! };
  });

  await recordRead(db, {
    ...options.audit,
    action: "request_logs.read",
    targetType: accountId === null ? null : "account",
    targetId: accountId,
    accountId,
    diff: {
      filter: Object.fromEntries(
        Object.entries({ ...parsed, accountId: undefined }).filter(([, v]) => v != null),
      ),
    },
  });

  let query = db.selectFrom("usage_events").selectAll()
    .select(sql<string>`to_char(created_at at time zone 'UTC', ${TIMESTAMP_CURSOR_FORMAT})`
      .as("cursor_at"));
  if (accountId !== null) query = query.where("account_id", "=", accountId);
  if (parsed.apiKeyId) query = query.where("api_key_id", "=", parsed.apiKeyId);
  if (parsed.agentName) query = query.where("agent_name", "=", parsed.agentName);
  if (parsed.model) query = query.where("model", "=", parsed.model);
  if (parsed.billingMode) query = query.where("billing_mode", "=", parsed.billingMode);
  if (parsed.status) {
    const status = parsed.status.toLowerCase();
    if (status.endsWith("xx")) {
      const low = Number(status[0]) * 100;
      query = query.where("status", ">=", low).where("status", "<", low + 100);
    } else query = query.where("status", "=", Number(status));
  }
  if (parsed.from) query = query.where("created_at", ">=", parsed.from);
  if (parsed.to) query = query.where("created_at", "<", parsed.to);
  // Row comparisons, so each bound is one range of the (…, created_at, request_id) indexes.
  // The instant is bound as text: Postgres.js would pass a timestamptz parameter through a
  // Date, dropping the microseconds the cursor keeps.
  for (
    const [key, op] of [[window.after, window.afterOp], [window.before, window.beforeOp]] as const
  ) {
    if (key === null) continue;
    query = query.where(
      sql<boolean>`(created_at, request_id) ${
        sql.raw(op)
      } (${key.at}::text::timestamptz, ${key.requestId})`,
    );
  }
  return await query.orderBy("created_at", window.read).orderBy("request_id", window.read)
    .limit(window.limit).execute();
}
