/**
 * API keys: issued once (the secret is returned to the caller and never
 * stored), kept as a keyed hash, a display prefix and the last 4 characters,
 * with the limits the gateway enforces (model and IP allowlists, requests and
 * tokens per minute, a lifetime spend limit, an expiry).
 *
 * Rotation gives a key a new secret under the same id. The secret it replaces
 * keeps working for a grace period (its hash and end are stored beside the
 * current one; gateways compare the end against their clock, so it stops on
 * time without any write). Only one previous secret is kept: rotating again
 * during a grace period ends that grace at once, so after two quick rotations
 * only the latest two secrets work.
 *
 * Every function here takes the acting `Actor` and scopes itself with
 * control/access.ts: viewers read keys; members manage inference keys; a key
 * with the management scope needs an admin.
 */
import { type Kysely, sql } from "kysely";
import { z } from "zod";
import type { ApiKey, Database } from "../../schema/database.ts";
import { parseIpRange } from "../../schema/ip_ranges.ts";
import { generateSecret, hashSecret } from "../../schema/keys.ts";
import type { ServerKeys } from "../../schema/secrets.ts";
import { type Actor, requireRole, type Role } from "../access.ts";
import { InvalidInputError, isUuid, NotFoundError, parseInput, textField } from "../errors.ts";
import { type AuditMeta, recordAudit } from "./audit.ts";
import {
  decodeCursor,
  encodeCursor,
  type KeyPart,
  keysetWindow,
  type PageRequest,
} from "./pages.ts";

export const API_KEY_SCOPES = ["inference", "management"] as const;
export type ApiKeyScope = (typeof API_KEY_SCOPES)[number];

/** The most names an allowlist may hold. */
export const MAX_ALLOWED_MODELS = 200;
/** The most addresses and ranges an IP allowlist may hold. */
export const MAX_ALLOWED_IPS = 100;
export const MAX_RPM_LIMIT = 1_000_000;
/** An int4 column: about 2 billion tokens a minute. */
export const MAX_TPM_LIMIT = 2_000_000_000;
/** The longest a rotated-out secret may keep working: 7 days. */
export const MAX_GRACE_SECONDS = 7 * 24 * 3600;

/** The limits a key is created with or updated to; null clears one. */
export interface ApiKeyLimits {
  expiresAt?: Date | null;
  /** The model and alias names the key may call; null: every model. */
  allowedModels?: readonly string[] | null;
  /** IPv4/IPv6 addresses and CIDR ranges requests may come from; null: anywhere. */
  allowedIps?: readonly string[] | null;
  /** Lifetime spend limit in units of 1e-8 USD; null: none. */
  spendLimit?: bigint | null;
  rpmLimit?: number | null;
  tpmLimit?: number | null;
}

export interface CreateApiKeyInput extends ApiKeyLimits {
  accountId: string;
  name: string;
  /** Defaults to ["inference"]. */
  scopes?: readonly string[] | null;
}

/** Omitted fields are left as they are; an explicit null clears a limit. */
export interface UpdateApiKeyInput extends ApiKeyLimits {
  id: string;
  name?: string | null;
}

export interface SetApiKeyAllowedModelsInput {
  id: string;
  /** null or omitted: every model. */
  allowedModels?: readonly string[] | null;
}

export interface RotateApiKeyInput {
  id: string;
  /** How long the current secret keeps working, 0 to MAX_GRACE_SECONDS. */
  graceSeconds: number;
}

export interface CreatedApiKey {
  apiKey: ApiKey;
  /** The full key: shown once, never stored. */
  secret: string;
}

export type ApiKeyStatus = "active" | "revoked" | "expired";

/** A key's status at `now`: expiry is not stored as a status, it is read off expires_at. */
export function apiKeyStatus(key: ApiKey, now = new Date()): ApiKeyStatus {
  if (key.status === "revoked") return "revoked";
  return key.expires_at && key.expires_at <= now ? "expired" : "active";
}

/** When the previous secret stops working, or null when none works any more. */
export function previousSecretValidUntil(key: ApiKey, now = new Date()): Date | null {
  return key.previous_expires_at && key.previous_expires_at > now ? key.previous_expires_at : null;
}

/**
 * A model allowlist: trimmed names, duplicates dropped (first kept). Unknown
 * names are accepted: an operator may create the model or alias later.
 */
const allowedModelsField = z.array(textField(200))
  .max(MAX_ALLOWED_MODELS, `must have at most ${MAX_ALLOWED_MODELS} entries`)
  .transform((names) => [...new Set(names)]);

/** An IP allowlist, canonicalised ("10.0.0.0/8", "2001:db8::/32"), duplicates dropped. */
const allowedIpsField = z.array(z.string().max(100, "must be at most 100 characters"))
  .min(1, "must name at least one address or range (null allows any)")
  .max(MAX_ALLOWED_IPS, `must have at most ${MAX_ALLOWED_IPS} entries`)
  .transform((items, ctx) => {
    const ranges = new Set<string>();
    for (const [index, item] of items.entries()) {
      const range = parseIpRange(item);
      if (typeof range === "string") {
        ctx.addIssue({ code: "custom", message: range, path: [index] });
        return z.NEVER;
      }
      ranges.add(range.text);
    }
    return [...ranges];
  });

const spendLimitField = z.bigint().min(0n, "must not be negative");
const rpmLimitField = z.number().int("must be a whole number")
  .min(1, "must be at least 1 (null removes the limit)").max(
    MAX_RPM_LIMIT,
    `must be at most ${MAX_RPM_LIMIT}`,
  );
const tpmLimitField = z.number().int("must be a whole number")
  .min(1, "must be at least 1 (null removes the limit)").max(
    MAX_TPM_LIMIT,
    `must be at most ${MAX_TPM_LIMIT}`,
  );
const futureDate = (now: Date) => z.date().refine((d) => d > now, "must be in the future");

/** Absent or null: null. */
const orNull = <T extends z.ZodType>(field: T) =>
  field.nullish().transform((v): z.output<T> | null => v ?? null);

function createApiKeyInput(now: Date) {
  return z.object({
    accountId: z.string(),
    name: textField(200),
    scopes: z.array(z.enum(API_KEY_SCOPES, "must be inference or management"))
      .min(1, "must name at least one scope")
      .nullish()
      .transform((scopes) => [...new Set(scopes ?? ["inference"])]),
    expiresAt: orNull(futureDate(now)),
    allowedModels: orNull(allowedModelsField),
    allowedIps: orNull(allowedIpsField),
    spendLimit: orNull(spendLimitField),
    rpmLimit: orNull(rpmLimitField),
    tpmLimit: orNull(tpmLimitField),
  });
}

function updateApiKeyInput(now: Date) {
  return z.object({
    id: z.string(),
    name: textField(200).optional(),
    expiresAt: futureDate(now).nullable().optional(),
    allowedModels: allowedModelsField.nullable().optional(),
    allowedIps: allowedIpsField.nullable().optional(),
    spendLimit: spendLimitField.nullable().optional(),
    rpmLimit: rpmLimitField.nullable().optional(),
    tpmLimit: tpmLimitField.nullable().optional(),
  });
}

const setAllowedModelsInput = z.object({
  id: z.string(),
  allowedModels: orNull(allowedModelsField),
});

const rotateApiKeyInput = z.object({
  id: z.string(),
  graceSeconds: z.number().int("must be a whole number of seconds")
    .min(0, "must not be negative (0 ends the old secret at once)")
    .max(MAX_GRACE_SECONDS, `must be at most ${MAX_GRACE_SECONDS} (7 days)`),
});

/** Issues a key for an account; the secret in the result is the only copy. */
export async function createApiKey(
  db: Kysely<Database>,
  input: CreateApiKeyInput,
  options: { keys: ServerKeys; actor: Actor; audit: AuditMeta },
): Promise<CreatedApiKey> {
  const parsed = parseInput(createApiKeyInput(new Date()), input);
  const what = `Account "${parsed.accountId}"`;
  requireRole(options.actor, parsed.accountId, neededRole(parsed.scopes), what);
  const issued = generateSecret();
  return await db.transaction().execute(async (trx) => {
    const account = isUuid(parsed.accountId)
      ? await trx.selectFrom("accounts").select("id").where("id", "=", parsed.accountId)
        .executeTakeFirst()
      : undefined;
    if (!account) throw new NotFoundError(`${what} not found`);
    const apiKey = await trx.insertInto("api_keys")
      .values({
        account_id: account.id,
        name: parsed.name,
        key_hash: hashSecret(issued.secret, options.keys.hashing),
        prefix: issued.prefix,
        last4: issued.last4,
        scopes: parsed.scopes,
        expires_at: parsed.expiresAt,
        allowed_models: parsed.allowedModels,
        allowed_ips: parsed.allowedIps,
        spend_limit: parsed.spendLimit,
        rpm_limit: parsed.rpmLimit,
        tpm_limit: parsed.tpmLimit,
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    await recordAudit(trx, {
      ...options.audit,
      action: "api_key.create",
      targetType: "api_key",
      targetId: apiKey.id,
      accountId: apiKey.account_id,
      diff: {
        accountId: apiKey.account_id,
        name: apiKey.name,
        prefix: apiKey.prefix,
        scopes: apiKey.scopes,
        ...auditedFields(apiKey),
      },
    });
    return { apiKey, secret: issued.secret };
  });
}

/** Changes a key's name and limits; gateways apply the change when notified. */
export async function updateApiKey(
  db: Kysely<Database>,
  input: UpdateApiKeyInput,
  options: { actor: Actor; audit: AuditMeta },
): Promise<ApiKey> {
  const parsed = parseInput(updateApiKeyInput(new Date()), input);
  return await db.transaction().execute(async (trx) => {
    const current = await lockKey(trx, parsed.id, options.actor);
    const apiKey = await trx.updateTable("api_keys")
      .set({
        name: parsed.name,
        expires_at: parsed.expiresAt,
        allowed_models: parsed.allowedModels,
        allowed_ips: parsed.allowedIps,
        spend_limit: parsed.spendLimit,
        rpm_limit: parsed.rpmLimit,
        tpm_limit: parsed.tpmLimit,
        updated_at: sql<Date>`now()`,
      })
      .where("id", "=", current.id)
      .returningAll()
      .executeTakeFirstOrThrow();
    const before: Record<string, unknown> = { name: current.name, ...auditedFields(current) };
    const after: Record<string, unknown> = { name: apiKey.name, ...auditedFields(apiKey) };
    const diff: Record<string, unknown> = {};
    for (const field of Object.keys(after)) {
      if (comparable(before[field]) !== comparable(after[field])) {
        diff[field] = [before[field], after[field]];
      }
    }
    await recordAudit(trx, {
      ...options.audit,
      action: "api_key.update",
      targetType: "api_key",
      targetId: apiKey.id,
      accountId: apiKey.account_id,
      diff,
    });
    return apiKey;
  });
}

/**
 * Gives a key a new secret; the one it replaces keeps working for
 * `graceSeconds` (0: not at all). A previous secret still in its grace stops
 * now: only one previous secret is kept. The result's secret is the only copy.
 */
export async function rotateApiKey(
  db: Kysely<Database>,
  input: RotateApiKeyInput,
  options: { keys: ServerKeys; actor: Actor; audit: AuditMeta },
): Promise<CreatedApiKey> {
  const parsed = parseInput(rotateApiKeyInput, input);
  const issued = generateSecret();
  return await db.transaction().execute(async (trx) => {
    const current = await lockKey(trx, parsed.id, options.actor);
    if (current.status === "revoked") {
      throw new InvalidInputError("id: a revoked key cannot be rotated; create a new key", "id");
    }
    const grace = parsed.graceSeconds > 0;
    const apiKey = await trx.updateTable("api_keys")
      .set({
        key_hash: hashSecret(issued.secret, options.keys.hashing),
        prefix: issued.prefix,
        last4: issued.last4,
        previous_key_hash: grace ? current.key_hash : null,
        previous_expires_at: grace
          ? sql<Date>`now() + make_interval(secs => ${parsed.graceSeconds})`
          : null,
        rotated_at: sql<Date>`now()`,
        updated_at: sql<Date>`now()`,
      })
      .where("id", "=", current.id)
      .returningAll()
      .executeTakeFirstOrThrow();
    const endedGrace = previousSecretValidUntil(current);
    await recordAudit(trx, {
      ...options.audit,
      action: "api_key.rotate",
      targetType: "api_key",
      targetId: apiKey.id,
      accountId: apiKey.account_id,
      diff: {
        prefix: [current.prefix, apiKey.prefix],
        last4: [current.last4, apiKey.last4],
        graceSeconds: parsed.graceSeconds,
        // (Field names with "secret" in them would be redacted by the audit log.)
        graceEndsAt: apiKey.previous_expires_at,
        ...(endedGrace ? { endedEarlierGrace: current.previous_expires_at } : {}),
      },
    });
    return { apiKey, secret: issued.secret };
  });
}

/** Revokes a key. Revoking a revoked key changes nothing and keeps its revoked_at. */
export async function revokeApiKey(
  db: Kysely<Database>,
  input: { id: string },
  options: { actor: Actor; audit: AuditMeta },
): Promise<ApiKey> {
  return await db.transaction().execute(async (trx) => {
    const current = await lockKey(trx, input.id, options.actor);
    const alreadyRevoked = current.status === "revoked";
    const apiKey = alreadyRevoked ? current : await trx.updateTable("api_keys")
      .set({ status: "revoked", revoked_at: sql<Date>`now()`, updated_at: sql<Date>`now()` })
      .where("id", "=", current.id)
      .returningAll()
      .executeTakeFirstOrThrow();
    await recordAudit(trx, {
      ...options.audit,
      action: "api_key.revoke",
      targetType: "api_key",
      targetId: apiKey.id,
      accountId: apiKey.account_id,
      diff: alreadyRevoked ? { alreadyRevoked: true } : { status: ["active", "revoked"] },
    });
    return apiKey;
  });
}

/** Replaces a key's model allowlist; null lets it call every model. */
export async function setApiKeyAllowedModels(
  db: Kysely<Database>,
  input: SetApiKeyAllowedModelsInput,
  options: { actor: Actor; audit: AuditMeta },
): Promise<ApiKey> {
  const parsed = parseInput(setAllowedModelsInput, input);
  return await db.transaction().execute(async (trx) => {
    const current = await lockKey(trx, parsed.id, options.actor);
    const apiKey = await trx.updateTable("api_keys")
      .set({ allowed_models: parsed.allowedModels, updated_at: sql<Date>`now()` })
      .where("id", "=", current.id)
      .returningAll()
      .executeTakeFirstOrThrow();
    await recordAudit(trx, {
      ...options.audit,
      action: "api_key.set_allowed_models",
      targetType: "api_key",
      targetId: apiKey.id,
      accountId: apiKey.account_id,
      diff: { allowedModels: [current.allowed_models, apiKey.allowed_models] },
    });
    return apiKey;
  });
}

/** One key, or null when there is none the actor may see. */
export async function getApiKey(
  db: Kysely<Database>,
  id: string,
  options: { actor: Actor },
): Promise<ApiKey | null> {
  if (!isUuid(id)) return null;
  const key = await db.selectFrom("api_keys").selectAll().where("id", "=", id).executeTakeFirst();
  if (!key) return null;
  try {
    requireRole(options.actor, key.account_id, "viewer", `API key "${id}"`);
  } catch (error) {
    if (error instanceof NotFoundError) return null;
    throw error;
  }
  return key;
}

const LIST = "api_keys";

/** A key id, as a cursor holds it. */
const uuidPart: KeyPart = (part) => typeof part === "string" && isUuid(part) ? part : null;

/** A key's cursor in listApiKeys: its id. */
export function apiKeyCursor(key: ApiKey): string {
  return encodeCursor(LIST, [key.id]);
}

/**
 * An account's keys, newest first by (created_at, id), a page at a time. A
 * cursor holds a key's id and the position is read from that row, so it is
 * exact to the microsecond (a Date would round it) and stable while keys are
 * added.
 */
export async function listApiKeys(
  db: Kysely<Database>,
  accountId: string,
  page: PageRequest,
  options: { actor: Actor },
): Promise<ApiKey[]> {
  const what = `Account "${accountId}"`;
  requireRole(options.actor, accountId, "viewer", what);
  const account = isUuid(accountId)
    ? await db.selectFrom("accounts").select("id").where("id", "=", accountId).executeTakeFirst()
    : undefined;
  if (!account) throw new NotFoundError(`${what} not found`);
  const window = keysetWindow(
    page,
    "desc",
    (cursor, field) => decodeCursor(LIST, cursor, [uuidPart], field)[0]!,
  );
  const position = (id: string) => sql`(select created_at, id from api_keys where id = ${id})`;
  let query = db.selectFrom("api_keys").selectAll().where("account_id", "=", account.id);
  if (window.after !== null) {
    query = query.where(
      sql<boolean>`(created_at, id) ${sql.raw(window.afterOp)} ${position(window.after)}`,
    );
  }
  if (window.before !== null) {
    query = query.where(
      sql<boolean>`(created_at, id) ${sql.raw(window.beforeOp)} ${position(window.before)}`,
    );
  }
  return await query.orderBy("created_at", window.read).orderBy("id", window.read)
    .limit(window.limit).execute();
}

/** Management-scoped keys open the control plane, so only an admin may manage them. */
function neededRole(scopes: readonly string[]): Role {
  return scopes.includes("management") ? "admin" : "member";
}

/**
 * The key, locked for update, once the actor is allowed to manage it. A key
 * in an account the actor cannot see is reported like a missing one.
 */
async function lockKey(trx: Kysely<Database>, id: string, actor: Actor): Promise<ApiKey> {
  const what = `API key "${id}"`;
  const key = isUuid(id)
    ? await trx.selectFrom("api_keys").selectAll().where("id", "=", id).forUpdate()
      .executeTakeFirst()
    : undefined;
  if (!key) throw new NotFoundError(`${what} not found`);
  requireRole(actor, key.account_id, neededRole(key.scopes), what);
  return key;
}

/** A field's value as text, for telling what an update changed (bigint included). */
function comparable(value: unknown): string {
  return JSON.stringify(value, (_key, v) => typeof v === "bigint" ? v.toString() : v);
}

/** The limits as the audit log shows them: no secret, hash or previous hash. */
function auditedFields(key: ApiKey): Record<string, unknown> {
  return {
    expiresAt: key.expires_at,
    allowedModels: key.allowed_models,
    allowedIps: key.allowed_ips,
    spendLimit: key.spend_limit,
    rpmLimit: key.rpm_limit,
    tpmLimit: key.tpm_limit,
  };
}
