/**
 * Upstream providers, configured by operators. A provider's credential is
 * sealed with the server's credentials key, bound to the provider's id, and
 * never returned: operators see only whether one is set and its last 4
 * characters.
 */
import { type Kysely, sql } from "kysely";
import { z } from "zod";
import type { Database, Provider, ProviderKind } from "../../schema/database.ts";
import {
  ANTHROPIC_BASE_URL,
  isProviderPreset,
  PROVIDER_PRESET_NAMES,
  PROVIDER_PRESETS,
} from "../../schema/provider_presets.ts";
import { sealCredential, type ServerKeys } from "../../schema/secrets.ts";
import { type Actor, requireOperator } from "../access.ts";
import { InvalidInputError, parseInput, textField } from "../errors.ts";
import { type AuditMeta, recordAudit } from "./audit.ts";
import { decodeCursor, encodeCursor, keysetWindow, type PageRequest, textPart } from "./pages.ts";

export const PROVIDER_KINDS = [
  "openai_compat",
  "anthropic",
  "mock",
] as const satisfies readonly ProviderKind[];

export interface UpsertProviderInput {
  name: string;
  kind: string;
  /** Required for openai_compat unless a preset is given; anthropic defaults to Anthropic's API. */
  baseUrl?: string | null;
  /** An openai_compat vendor preset (schema/provider_presets.ts); omitted or null: none. */
  preset?: string | null;
  /** Omitted: keep the stored credential; null: remove it; a string: replace it. */
  apiKey?: string | null;
}

const httpUrl = textField(2000).refine((text) => {
  try {
    return ["http:", "https:"].includes(new URL(text).protocol);
  } catch {
    return false;
  }
}, "must be an http(s) URL");

const upsertProviderInput = z.object({
  name: textField(100),
  kind: z.enum(PROVIDER_KINDS, "must be openai_compat, anthropic or mock"),
  baseUrl: httpUrl.nullish(),
  preset: z.enum(PROVIDER_PRESET_NAMES, `must be one of ${PROVIDER_PRESET_NAMES.join(", ")}`)
    .nullish(),
  apiKey: textField(4000).nullish(),
});

/** Creates or updates the provider called `name` (operators only). */
export async function upsertProvider(
  db: Kysely<Database>,
  input: UpsertProviderInput,
  options: { keys: ServerKeys; actor: Actor; audit: AuditMeta },
): Promise<Provider> {
  requireOperator(options.actor, "configure providers");
  const parsed = parseInput(upsertProviderInput, input);
  if (parsed.preset && parsed.kind !== "openai_compat") {
    throw new InvalidInputError(
      `preset: is only valid for openai_compat providers, not ${parsed.kind}`,
      "preset",
    );
  }
  if (parsed.kind === "openai_compat" && !parsed.baseUrl && !parsed.preset) {
    throw new InvalidInputError(
      "baseUrl: is required for openai_compat providers unless a preset is given",
      "baseUrl",
    );
  }
  const baseUrl = parsed.baseUrl ?? null;
  const preset = parsed.preset ?? null;
  return await db.transaction().execute(async (trx) => {
    // xmax = 0 only on a freshly inserted row: tells a create from an update.
    const upserted = await trx.insertInto("providers")
      .values({ name: parsed.name, kind: parsed.kind, base_url: baseUrl, preset })
      .onConflict((oc) =>
        oc.column("name").doUpdateSet({
          kind: parsed.kind,
          base_url: baseUrl,
          preset,
          updated_at: sql<Date>`now()`,
        })
      )
      .returningAll()
      .returning(sql<boolean>`xmax = 0`.as("created"))
      .executeTakeFirstOrThrow();
    const { created, ...row } = upserted;
    let provider: Provider = row;
    if (parsed.apiKey !== undefined) {
      const apiKey = parsed.apiKey;
      provider = await trx.updateTable("providers")
        .set({
          credential_ciphertext: apiKey === null
            ? null
            : sealCredential(apiKey, options.keys.credentials, `provider:${row.id}`),
          credential_last4: apiKey === null ? null : apiKey.slice(-4),
        })
        .where("id", "=", row.id)
        .returningAll()
        .executeTakeFirstOrThrow();
    }
    await recordAudit(trx, {
      ...options.audit,
      action: created ? "provider.create" : "provider.update",
      targetType: "provider",
      targetId: provider.id,
      diff: {
        name: provider.name,
        kind: provider.kind,
        baseUrl: provider.base_url,
        preset: provider.preset,
        credentialChange: parsed.apiKey === undefined
          ? "unchanged"
          : parsed.apiKey === null
          ? "removed"
          : "replaced",
      },
    });
    return provider;
  });
}

const LIST = "provider";

export function providerCursor(provider: Provider): string {
  return encodeCursor(LIST, [provider.name]);
}

/**
 * One page of the providers, by name. Every actor may list them (a customer
 * picks one to store its own key for); what a provider's configuration says
 * is for operators only, which the GraphQL type enforces field by field.
 */
export async function listProviders(db: Kysely<Database>, page: PageRequest): Promise<Provider[]> {
  const window = keysetWindow(
    page,
    "asc",
    (cursor, field) => decodeCursor(LIST, cursor, [textPart(100)], field)[0]!,
  );
  let query = db.selectFrom("providers").selectAll();
  if (window.after !== null) query = query.where("name", window.afterOp, window.after);
  if (window.before !== null) query = query.where("name", window.beforeOp, window.before);
  return await query.orderBy("name", window.read).limit(window.limit).execute();
}

/**
 * The base URL the gateway calls: the provider's own, else its preset's,
 * else Anthropic's API for an anthropic provider; null for a mock.
 */
export function effectiveBaseUrl(provider: Provider): string | null {
  if (provider.base_url) return provider.base_url;
  if (provider.preset && isProviderPreset(provider.preset)) {
    return PROVIDER_PRESETS[provider.preset].baseUrl;
  }
  return provider.kind === "anthropic" ? ANTHROPIC_BASE_URL : null;
}
