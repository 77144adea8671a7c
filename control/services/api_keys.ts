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
}

export interface CreatedApiKey {
  apiKey: ApiKey;
  /** The full key: shown once, never stored. */
  secret: string;
}

function createApiKeyInput(now: Date) {
  return z.object({
    accountId: z.string(),
    name: textField(200),
    scopes: z.array(z.enum(API_KEY_SCOPES, "must be inference or management"))
      .min(1, "must name at least one scope")
      .nullish()
      .transform((scopes) => [...new Set(scopes ?? ["inference"])]),
    expiresAt: z.date().refine((d) => d > now, "must be in the future").nullish(),
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
