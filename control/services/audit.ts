/**
 * The audit log: one append-only row per mutation (and per sensitive read),
 * written in the mutation's own transaction and chained by hash. Each row's
 * hash is the SHA-256 (hex) of the previous row's hash followed by the
 * canonical JSON of its fields, so editing or removing a row breaks the link
 * at that row or the next one; verifyAuditChain names the first broken link.
 *
 * Appends are serialised by a transaction-scoped advisory lock, taken before
 * the previous row is read and held until commit: two concurrent writers can
 * never both link to the same previous row. The database refuses UPDATE,
 * DELETE and TRUNCATE on the table (migrations 0001 and 0010).
 *
 * A row names the account it concerns (`accountId`), so that account's owners
 * and admins can read it (audit_log.ts); gateway-wide changes (providers,
 * models, routes, operator tokens) leave it null and only operators see them.
 */
import { createHash } from "node:crypto";
import { type Kysely, sql } from "kysely";
import type { AuditEntry, Database } from "../../schema/database.ts";
import { redactDiff } from "./audit_redaction.ts";

/** Who did it, from where: the request's part of an audit row. */
export interface AuditMeta {
  /** The actor id, such as "admin:tga_AbCd1234", "user:<id>", "key:<prefix>" or "system". */
  actor: string;
  ip: string | null;
  requestId: string | null;
}

export interface AuditRecord extends AuditMeta {
  /** A dotted verb such as "api_key.create". */
  action: string;
  targetType: string | null;
  targetId: string | null;
  /** The account the change concerns; omitted or null for gateway-wide changes. */
  accountId?: string | null;
  /**
   * What changed. Secret-looking fields are redacted on the way in (see
   * audit_redaction.ts), but a diff should never be handed one.
   */
  diff: Record<string, unknown>;
}

/**
 * Appends an audit row. Must run inside the mutation's transaction: it takes
 * a transaction-scoped advisory lock so that two writers cannot both chain
 * onto the same previous row, and the row commits or rolls back with the
 * change it records.
 */
export async function recordAudit(db: Kysely<Database>, record: AuditRecord): Promise<AuditEntry> {
  if (!db.isTransaction) throw new Error("recordAudit must run inside the mutation's transaction");
  const diff = redactDiff(record.diff);
  await sql`select pg_advisory_xact_lock(hashtext('tollgate.audit_log'))`.execute(db);
  const previous = await db.selectFrom("audit_log").select("hash").orderBy("id", "desc").limit(1)
    .executeTakeFirst();
  const prevHash = previous?.hash ?? null;
  const fields: ChainedFields = {
    actor: record.actor,
    action: record.action,
    target_type: record.targetType,
    target_id: record.targetId,
    account_id: record.accountId ?? null,
    diff,
    ip: record.ip,
    request_id: record.requestId,
    created_at: new Date().toISOString(),
  };
  return await db.insertInto("audit_log")
    .values({
      ...fields,
      // Cast from text: Postgres.js would encode a string bound to jsonb as a JSON string.
      diff: sql<string>`${JSON.stringify(diff)}::text::jsonb`,
      prev_hash: prevHash,
      hash: chainHash(prevHash, fields),
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

/**
 * Records a sensitive read (an audit log, request logs, ledger entries) in a
 * transaction of its own, before the data is read: a read that cannot be
 * recorded is not served.
 */
export async function recordRead(db: Kysely<Database>, record: AuditRecord): Promise<void> {
  await db.transaction().execute((trx) => recordAudit(trx, record));
}

export type AuditChainCheck =
  | { ok: true; rows: number }
  | {
    ok: false;
    /** The first row that does not chain. */
    brokenAt: bigint;
    /** What is wrong with it, in a sentence. */
    problem: string;
  };

/**
 * Recomputes every hash in id order and reports the first row that does not
 * chain: one whose contents no longer match its hash (it was edited), or
 * whose link does not match the row before it (a row between them was
 * removed, or the one before was rewritten with a recomputed hash). Removing
 * the newest rows leaves a shorter chain that still verifies: compare the
 * head (the newest id and hash) with one noted earlier to catch that.
 */
export async function verifyAuditChain(db: Kysely<Database>): Promise<AuditChainCheck> {
  let prevHash: string | null = null;
  let lastId = 0n;
  let rows = 0;
  for (;;) {
    const page = await db.selectFrom("audit_log").selectAll().where("id", ">", lastId)
      .orderBy("id").limit(500).execute();
    if (page.length === 0) return { ok: true, rows };
    for (const row of page) {
      if (row.prev_hash !== prevHash) {
        return { ok: false, brokenAt: row.id, problem: linkProblem(row, lastId, rows) };
      }
      if (row.hash !== chainHash(prevHash, chainedFieldsOf(row))) {
        return {
          ok: false,
          brokenAt: row.id,
          problem: `row ${row.id}'s contents do not match its hash: the row was altered`,
        };
      }
      prevHash = row.hash;
      lastId = row.id;
      rows++;
    }
  }
}

function linkProblem(row: AuditEntry, lastId: bigint, verified: number): string {
  if (verified === 0) {
    return `row ${row.id} is the oldest row but links to an earlier one: the rows before it ` +
      "were removed";
  }
  if (row.prev_hash === null) {
    return `row ${row.id} does not link to row ${lastId} before it: its link was removed`;
  }
  return `row ${row.id} does not link to row ${lastId} before it: a row between them was ` +
    `removed, or row ${lastId} was rewritten with a recomputed hash`;
}

/** The fields a row's hash covers, as they were when it was written. */
interface ChainedFields {
  actor: string;
  action: string;
  target_type: string | null;
  target_id: string | null;
  account_id: string | null;
  diff: Record<string, unknown>;
  ip: string | null;
  request_id: string | null;
  created_at: string;
}

function chainedFieldsOf(row: AuditEntry): ChainedFields {
  return {
    actor: row.actor,
    action: row.action,
    target_type: row.target_type,
    target_id: row.target_id,
    account_id: row.account_id,
    diff: row.diff,
    ip: row.ip,
    request_id: row.request_id,
    created_at: row.created_at.toISOString(),
  };
}

function chainHash(prevHash: string | null, fields: ChainedFields): string {
  // account_id is hashed only when set: rows written before it existed keep
  // their hashes, and setting or clearing it afterwards still breaks the link.
  const { account_id, ...rest } = fields;
  const hashed = account_id === null ? rest : fields;
  return createHash("sha256").update((prevHash ?? "") + canonicalJson(hashed)).digest("hex");
}

/** JSON with object keys sorted at every depth, so equal values hash equally. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}
