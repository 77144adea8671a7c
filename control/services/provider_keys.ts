/**
 * Customers' own provider keys (BYOK). A key is envelope-sealed under the
 * keyring's current KEK with AAD "byok:<accountId>:<providerId>", so a row
 * copied to another account or provider does not open; callers and audit
 * rows only ever see its last 4 characters. Rotating the KEK: configure the
 * new one with the old one in TOLLGATE_KEK_PREVIOUS, then rewrapProviderKeys.
 *
 * Viewers and up list an account's keys; admins and owners set and delete
 * them; re-wrapping every key is for operators.
 */
import { type Kysely, sql } from "kysely";
import { z } from "zod";
import type { CustomerProviderKey, Database } from "../../schema/database.ts";
import {
  kekIdOf,
  type Keyring,
  providerKeyAad,
  rewrapEnvelope,
  sealEnvelope,
} from "../../schema/envelope.ts";
import { type Actor, requireOperator, requireRole, roleIn } from "../access.ts";
import { isUuid, NotFoundError, parseInput } from "../errors.ts";
import { requireAccount } from "./account_scope.ts";
import { createdKeyOf, createdOrder, cursorAt, type Positioned } from "./accounts.ts";
import { type AuditMeta, recordAudit } from "./audit.ts";
import { encodeCursor, keysetWindow, type PageRequest } from "./pages.ts";

export interface SetProviderKeyInput {
  accountId: string;
  providerId: string;
  apiKey: string;
}

/** A stored key could not be re-wrapped (its KEK is not in the keyring, or it was tampered with). */
export class UnreadableProviderKeyError extends Error {
  override readonly name = "UnreadableProviderKeyError";
  constructor(message: string, readonly id: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/** What a rotation did: how many keys moved to the current KEK, named by its id. */
export interface RewrapResult {
  rewrapped: number;
  kekId: string;
}

export const MAX_PROVIDER_KEY_LENGTH = 4096;
/** Shorter keys would show too much of themselves as their last 4. */
export const MIN_PROVIDER_KEY_LENGTH = 8;
const REWRAP_BATCH = 200;

const setProviderKeyInput = z.object({
  accountId: z.string(),
  providerId: z.string(),
  apiKey: z.string().trim()
    .min(MIN_PROVIDER_KEY_LENGTH, `must be at least ${MIN_PROVIDER_KEY_LENGTH} characters`)
    .max(MAX_PROVIDER_KEY_LENGTH, `must be at most ${MAX_PROVIDER_KEY_LENGTH} characters`)
    .regex(/^[\x21-\x7e]+$/, "must be printable ASCII without whitespace"),
});

/** Stores an account's key for a provider, replacing the one it had. Admins and owners. */
export async function setProviderKey(
  db: Kysely<Database>,
  input: SetProviderKeyInput,
  options: { actor: Actor; keyring: Keyring; audit: AuditMeta },
): Promise<CustomerProviderKey> {
  await requireAccount(db, options.actor, input.accountId, "admin");
  const { accountId, providerId, apiKey } = parseInput(setProviderKeyInput, input);
  return await db.transaction().execute(async (trx) => {
    if (!isUuid(providerId) || !await exists(trx, "providers", providerId)) {
      throw new NotFoundError(`No provider with id "${providerId}"`);
    }
    const ciphertext = sealEnvelope(apiKey, options.keyring, providerKeyAad(accountId, providerId));
    const sealed = { ciphertext, kek_id: kekIdOf(ciphertext), last4: apiKey.slice(-4) };
    // xmax = 0 only on a freshly inserted row: tells a create from a replacement.
    const { created, ...key } = await trx.insertInto("customer_provider_keys")
      .values({ account_id: accountId, provider_id: providerId, ...sealed })
      .onConflict((oc) =>
        oc.columns(["account_id", "provider_id"])
          .doUpdateSet({ ...sealed, updated_at: sql<Date>`now()` })
      )
      .returningAll()
      .returning(sql<boolean>`xmax = 0`.as("created"))
      .executeTakeFirstOrThrow();
    await recordAudit(trx, {
      ...options.audit,
      action: created ? "provider_key.create" : "provider_key.replace",
      targetType: "provider_key",
      targetId: key.id,
      accountId,
      diff: { accountId, providerId, last4: key.last4, kekId: key.kek_id },
    });
    return key;
  });
}

/** Deletes a stored key and returns it. Admins and owners of its account. */
export async function deleteProviderKey(
  db: Kysely<Database>,
  input: { id: string },
  options: { actor: Actor; audit: AuditMeta },
): Promise<CustomerProviderKey> {
  return await db.transaction().execute(async (trx) => {
    const found = isUuid(input.id)
      ? await trx.selectFrom("customer_provider_keys").select("account_id")
        .where("id", "=", input.id).forUpdate().executeTakeFirst()
      : undefined;
    // Another tenant's key is reported exactly like a missing one.
    if (!found || roleIn(options.actor, found.account_id) === null) {
      throw new NotFoundError(`No provider key with id "${input.id}"`);
    }
    requireRole(options.actor, found.account_id, "admin", "provider key");
    const key = await trx.deleteFrom("customer_provider_keys").where("id", "=", input.id)
      .returningAll().executeTakeFirstOrThrow();
    await recordAudit(trx, {
      ...options.audit,
      action: "provider_key.delete",
      targetType: "provider_key",
      targetId: key.id,
      accountId: key.account_id,
      diff: { accountId: key.account_id, providerId: key.provider_id, last4: key.last4 },
    });
    return key;
  });
}

const PROVIDER_KEYS = "provider_keys";

export function providerKeyCursor(key: CustomerProviderKey & Positioned): string {
  return encodeCursor(PROVIDER_KEYS, [key.cursor_at, key.id]);
}

/** A page of an account's keys, oldest first. Viewers and up. */
export async function listProviderKeys(
  db: Kysely<Database>,
  accountId: string,
  page: PageRequest,
  options: { actor: Actor },
): Promise<(CustomerProviderKey & Positioned)[]> {
  await requireAccount(db, options.actor, accountId, "viewer");
  const window = keysetWindow(page, "asc", createdKeyOf(PROVIDER_KEYS));
  const query = db.selectFrom("customer_provider_keys").selectAll()
    .select(cursorAt("customer_provider_keys.created_at").as("cursor_at"))
    .where("account_id", "=", accountId);
  return await createdOrder(
    query,
    { createdAt: "customer_provider_keys.created_at", id: "customer_provider_keys.id" },
    window,
  ).execute();
}

/**
 * Re-wraps every key not yet under the keyring's current KEK, in batches of
 * one transaction each (each with its audit row), and says how many moved.
 * Keys already under the current KEK are left alone, so a rerun is harmless.
 */
export async function rewrapProviderKeys(
  db: Kysely<Database>,
  options: { actor: Actor; keyring: Keyring; audit: AuditMeta },
): Promise<RewrapResult> {
  requireOperator(options.actor, "re-wrap provider keys");
  const kekId = options.keyring.current.id;
  let total = 0;
  for (;;) {
    const moved = await db.transaction().execute(async (trx) => {
      const rows = await trx.selectFrom("customer_provider_keys")
        .select(["id", "account_id", "provider_id", "ciphertext", "kek_id"])
        .where("kek_id", "<>", kekId).orderBy("id").limit(REWRAP_BATCH).forUpdate().execute();
      for (const row of rows) {
        const ciphertext = rewrapStored(row, options.keyring, total);
        await trx.updateTable("customer_provider_keys")
          .set({ ciphertext, kek_id: kekIdOf(ciphertext), updated_at: sql<Date>`now()` })
          .where("id", "=", row.id).execute();
      }
      if (rows.length > 0 || total === 0) {
        await recordAudit(trx, {
          ...options.audit,
          action: "provider_key.rewrap",
          targetType: "provider_key",
          targetId: null,
          diff: { kekId, count: rows.length, from: [...new Set(rows.map((r) => r.kek_id))] },
        });
      }
      return rows.length;
    });
    total += moved;
    if (moved < REWRAP_BATCH) return { rewrapped: total, kekId };
  }
}

function rewrapStored(
  row: Pick<CustomerProviderKey, "id" | "account_id" | "provider_id" | "ciphertext">,
  keyring: Keyring,
  doneBefore: number,
): string {
  try {
    return rewrapEnvelope(row.ciphertext, keyring, providerKeyAad(row.account_id, row.provider_id));
  } catch (error) {
    throw new UnreadableProviderKeyError(
      `Cannot re-wrap provider key "${row.id}" (${doneBefore} re-wrapped before it): ${
        error instanceof Error ? error.message : error
      }. Add its KEK to TOLLGATE_KEK_PREVIOUS and retry, or delete the key.`,
      row.id,
      { cause: error },
    );
  }
}

async function exists(
  db: Kysely<Database>,
  table: "providers",
  id: string,
): Promise<boolean> {
  return !!await db.selectFrom(table).select("id").where("id", "=", id).executeTakeFirst();
}
