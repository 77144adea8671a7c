/**
 * The audit log: one append-only row per mutation, written in the mutation's
 * own transaction and chained by hash. Each row's hash is the SHA-256 (hex)
 * of the previous row's hash followed by the canonical JSON of its fields, so
 * editing or removing a row breaks every later hash.
 */
import { createHash } from "node:crypto";
import { type Kysely, sql } from "kysely";
import type { AuditEntry, Database } from "../../schema/database.ts";

/** Who did it, from where: the request's part of an audit row. */
export interface AuditMeta {
  /** The actor id, such as "admin:tga_AbCd1234", or "system". */
  actor: string;
  ip: string | null;
  requestId: string | null;
}

export interface AuditRecord extends AuditMeta {
  /** A dotted verb such as "api_key.create". */
  action: string;
  targetType: string | null;
  targetId: string | null;
  /** What changed; never a secret, key hash or credential. */
  diff: Record<string, unknown>;
}

/** Keys a diff may never carry (compared case-insensitively, without "_"). */
const FORBIDDEN_DIFF_KEYS = new Set([
  "secret",
  "keyhash",
  "tokenhash",
  "token",
  "apikey",
  "credential",
  "credentialciphertext",
  "password",
  "passwordhash",
]);

/**
 * Appends an audit row. Must run inside the mutation's transaction: it takes
 * a transaction-scoped advisory lock so that two writers cannot both chain
 * onto the same previous row.
 */
export async function recordAudit(db: Kysely<Database>, record: AuditRecord): Promise<AuditEntry> {
  if (!db.isTransaction) throw new Error("recordAudit must run inside the mutation's transaction");
  const diff = toJsonObject(record.diff);
  await sql`select pg_advisory_xact_lock(hashtext('tollgate.audit_log'))`.execute(db);
  const previous = await db.selectFrom("audit_log").select("hash").orderBy("id", "desc").limit(1)
    .executeTakeFirst();
  const prevHash = previous?.hash ?? null;
  const fields: ChainedFields = {
    actor: record.actor,
    action: record.action,
    target_type: record.targetType,
    target_id: record.targetId,
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

export type AuditChainCheck = { ok: true; rows: number } | { ok: false; brokenAt: bigint };

/** Recomputes every hash in id order; reports the first row that does not chain. */
export async function verifyAuditChain(db: Kysely<Database>): Promise<AuditChainCheck> {
  let prevHash: string | null = null;
  let lastId = 0n;
  let rows = 0;
  for (;;) {
    const page = await db.selectFrom("audit_log").selectAll().where("id", ">", lastId)
      .orderBy("id").limit(500).execute();
    if (page.length === 0) return { ok: true, rows };
    for (const row of page) {
      const expected = chainHash(prevHash, {
        actor: row.actor,
        action: row.action,
        target_type: row.target_type,
        target_id: row.target_id,
        diff: row.diff,
        ip: row.ip,
        request_id: row.request_id,
        created_at: row.created_at.toISOString(),
      });
      if (row.prev_hash !== prevHash || row.hash !== expected) {
        return { ok: false, brokenAt: row.id };
      }
      prevHash = row.hash;
      lastId = row.id;
      rows++;
    }
  }
}

interface ChainedFields {
  actor: string;
  action: string;
  target_type: string | null;
  target_id: string | null;
  diff: Record<string, unknown>;
  ip: string | null;
  request_id: string | null;
  created_at: string;
}

function chainHash(prevHash: string | null, fields: ChainedFields): string {
  return createHash("sha256").update((prevHash ?? "") + canonicalJson(fields)).digest("hex");
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

/** Makes a diff plain JSON (bigint as string, Date as ISO) and refuses secret-looking keys. */
function toJsonObject(diff: Record<string, unknown>): Record<string, unknown> {
  return toJson(diff) as Record<string, unknown>;
}

function toJson(value: unknown): unknown {
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return value.map(toJson);
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [key, inner] of Object.entries(value)) {
      if (FORBIDDEN_DIFF_KEYS.has(key.toLowerCase().replaceAll("_", ""))) {
        throw new Error(`Cannot record audit diff: "${key}" looks like a secret`);
      }
      if (inner !== undefined) out[key] = toJson(inner);
    }
    return out;
  }
  if (typeof value === "number" && !Number.isFinite(value)) return null;
  return value;
}
