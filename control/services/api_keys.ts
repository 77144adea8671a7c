/**
 * API keys: issued once (the secret is returned to the caller and never
 * stored), kept as a keyed hash, a display prefix and the last 4 characters.
 */
import { type Kysely, sql } from "kysely";
import { z } from "zod";
import type { ApiKey, Database } from "../../schema/database.ts";
import { generateSecret, hashSecret } from "../../schema/keys.ts";
import type { ServerKeys } from "../../schema/secrets.ts";
import { isUuid, NotFoundError, parseInput, textField } from "../errors.ts";
import { type AuditMeta, recordAudit } from "./audit.ts";

export const API_KEY_SCOPES = ["inference", "management"] as const;
export type ApiKeyScope = (typeof API_KEY_SCOPES)[number];

export interface CreateApiKeyInput {
  accountId: string;
  name: string;
  /** Defaults to ["inference"]. */
  scopes?: readonly string[] | null;
  expiresAt?: Date | null;
  /** The model and alias names the key may call; omitted or null: every model. */
  allowedModels?: readonly string[] | null;
}

export interface SetApiKeyAllowedModelsInput {
  id: string;
  /** null or omitted: every model. */
  allowedModels?: readonly string[] | null;
}

export interface CreatedApiKey {
  apiKey: ApiKey;
  /** The full key: shown once, never stored. */
  secret: string;
}

/** The most names an allowlist may hold. */
export const MAX_ALLOWED_MODELS = 200;

/**
 * A model allowlist: trimmed names, duplicates dropped (first kept). Unknown
 * names are accepted: an operator may create the model or alias later.
 */
const allowedModelsField = z.array(textField(200))
  .max(MAX_ALLOWED_MODELS, `must have at most ${MAX_ALLOWED_MODELS} entries`)
  .nullish()
  .transform((names) => (names ? [...new Set(names)] : null));

const setAllowedModelsInput = z.object({ id: z.string(), allowedModels: allowedModelsField });

function createApiKeyInput(now: Date) {
  return z.object({
    accountId: z.string(),
    name: textField(200),
    scopes: z.array(z.enum(API_KEY_SCOPES, "must be inference or management"))
      .min(1, "must name at least one scope")
      .nullish()
      .transform((scopes) => [...new Set(scopes ?? ["inference"])]),
    expiresAt: z.date().refine((d) => d > now, "must be in the future").nullish(),
    allowedModels: allowedModelsField,
  });
}

/** Issues a key for an account; the secret in the result is the only copy. */
export async function createApiKey(
  db: Kysely<Database>,
  input: CreateApiKeyInput,
  options: { keys: ServerKeys; audit: AuditMeta },
): Promise<CreatedApiKey> {
  const parsed = parseInput(createApiKeyInput(new Date()), input);
  const issued = generateSecret();
  return await db.transaction().execute(async (trx) => {
    const account = isUuid(parsed.accountId)
      ? await trx.selectFrom("accounts").select("id").where("id", "=", parsed.accountId)
        .executeTakeFirst()
      : undefined;
    if (!account) throw new NotFoundError(`No account with id "${parsed.accountId}"`);
    const apiKey = await trx.insertInto("api_keys")
      .values({
        account_id: account.id,
        name: parsed.name,
        key_hash: hashSecret(issued.secret, options.keys.hashing),
        prefix: issued.prefix,
        last4: issued.last4,
        scopes: parsed.scopes,
        expires_at: parsed.expiresAt ?? null,
        allowed_models: parsed.allowedModels,
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    await recordAudit(trx, {
      ...options.audit,
      action: "api_key.create",
      targetType: "api_key",
      targetId: apiKey.id,
      diff: {
        accountId: apiKey.account_id,
        name: apiKey.name,
        prefix: apiKey.prefix,
        scopes: apiKey.scopes,
        expiresAt: apiKey.expires_at,
        allowedModels: apiKey.allowed_models,
      },
    });
    return { apiKey, secret: issued.secret };
  });
}

/** Revokes a key. Revoking a revoked key changes nothing and keeps its revoked_at. */
export async function revokeApiKey(
  db: Kysely<Database>,
  input: { id: string },
  options: { audit: AuditMeta },
): Promise<ApiKey> {
  return await db.transaction().execute(async (trx) => {
    const current = isUuid(input.id)
      ? await trx.selectFrom("api_keys").selectAll().where("id", "=", input.id).forUpdate()
        .executeTakeFirst()
      : undefined;
    if (!current) throw new NotFoundError(`No API key with id "${input.id}"`);
    const alreadyRevoked = current.status === "revoked";
    const apiKey = alreadyRevoked ? current : await trx.updateTable("api_keys")
      .set({ status: "revoked", revoked_at: sql<Date>`now()` })
      .where("id", "=", current.id)
      .returningAll()
      .executeTakeFirstOrThrow();
    await recordAudit(trx, {
      ...options.audit,
      action: "api_key.revoke",
      targetType: "api_key",
      targetId: apiKey.id,
      diff: alreadyRevoked ? { alreadyRevoked: true } : { status: ["active", "revoked"] },
    });
    return apiKey;
  });
}

/** Replaces a key's model allowlist; null lets it call every model. */
export async function setApiKeyAllowedModels(
  db: Kysely<Database>,
  input: SetApiKeyAllowedModelsInput,
  options: { audit: AuditMeta },
): Promise<ApiKey> {
  const parsed = parseInput(setAllowedModelsInput, input);
  return await db.transaction().execute(async (trx) => {
    const current = isUuid(parsed.id)
      ? await trx.selectFrom("api_keys").selectAll().where("id", "=", parsed.id).forUpdate()
        .executeTakeFirst()
      : undefined;
    if (!current) throw new NotFoundError(`No API key with id "${parsed.id}"`);
    const apiKey = await trx.updateTable("api_keys")
      .set({ allowed_models: parsed.allowedModels })
      .where("id", "=", current.id)
      .returningAll()
      .executeTakeFirstOrThrow();
    await recordAudit(trx, {
      ...options.audit,
      action: "api_key.set_allowed_models",
      targetType: "api_key",
      targetId: apiKey.id,
      diff: { allowedModels: [current.allowed_models, apiKey.allowed_models] },
    });
    return apiKey;
  });
}

/** Keys, newest first; only one account's when `accountId` is given. */
export async function listApiKeys(
  db: Kysely<Database>,
  options: { accountId?: string | null } = {},
): Promise<ApiKey[]> {
  const { accountId } = options;
  if (accountId != null && !isUuid(accountId)) return [];
  let query = db.selectFrom("api_keys").selectAll();
  if (accountId != null) query = query.where("account_id", "=", accountId);
  return await query.orderBy("created_at", "desc").orderBy("id").execute();
}
