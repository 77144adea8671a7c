/**
 * Models callers can ask for, each served by one provider under its upstream
 * name, with prices in microcents per million tokens. Operators configure
 * them; everyone may list them and their prices. Prices arrive as
 * decimal USD strings and are parsed exactly (no float ever holds one).
 */
import { type Kysely, sql } from "kysely";
import { z } from "zod";
import type { Database, Model, Provider } from "../../schema/database.ts";
import { formatUsd, parseUsd, UNITS_PER_USD } from "../../schema/money.ts";
import { type Actor, requireOperator } from "../access.ts";
import { InvalidInputError, NotFoundError, parseInput, textField } from "../errors.ts";
import { type AuditMeta, recordAudit } from "./audit.ts";
import { decodeCursor, encodeCursor, keysetWindow, type PageRequest, textPart } from "./pages.ts";
import { lockModelNames } from "./routes.ts";

export interface ModelWithProvider extends Model {
  provider: Provider;
}

export interface UpsertModelInput {
  name: string;
  /** The provider's name. */
  provider: string;
  upstreamName: string;
  /** USD per million tokens, such as "2.50". */
  inputPrice: string;
  outputPrice: string;
  /** Defaults to inputPrice: cached tokens are never billed below cost by omission. */
  cachedInputPrice?: string | null;
  maxOutputTokens?: number | null;
}

/** A price cap (1,000,000 USD per million tokens) that keeps every cost far inside int8. */
const MAX_PRICE_UNITS = 1_000_000n * UNITS_PER_USD;

const usdPrice = z.string().transform((text, ctx) => {
  const units = parseUsdOrNull(text);
  if (units === null) ctx.addIssue("must be a USD amount like 2.50 (8 decimals at most)");
  else if (units < 0n) ctx.addIssue("must not be negative");
  else if (units > MAX_PRICE_UNITS) ctx.addIssue("must be at most 1000000 USD");
  else return units;
  return z.NEVER;
});

const upsertModelInput = z.object({
  name: textField(200),
  provider: textField(100),
  upstreamName: textField(200),
  inputPrice: usdPrice,
  outputPrice: usdPrice,
  cachedInputPrice: usdPrice.nullish(),
  maxOutputTokens: z.number().int().min(1, "must be at least 1").max(10_000_000, "is too large")
    .nullish(),
});

/** Creates or updates the model called `name` (operators only). */
export async function upsertModel(
  db: Kysely<Database>,
  input: UpsertModelInput,
  options: { actor: Actor; audit: AuditMeta },
): Promise<ModelWithProvider> {
  requireOperator(options.actor, "configure models and prices");
  const parsed = parseInput(upsertModelInput, input);
  const values = {
    upstream_name: parsed.upstreamName,
    input_price: parsed.inputPrice,
    output_price: parsed.outputPrice,
    cached_input_price: parsed.cachedInputPrice ?? parsed.inputPrice,
    max_output_tokens: parsed.maxOutputTokens ?? null,
  };
  return await db.transaction().execute(async (trx) => {
    await lockModelNames(trx);
    const alias = await trx.selectFrom("routes").select("id").where("name", "=", parsed.name)
      .executeTakeFirst();
    if (alias) {
      throw new InvalidInputError(
        `name: "${parsed.name}" is an alias's name; the alias would shadow the model`,
        "name",
      );
    }
    const provider = await trx.selectFrom("providers").selectAll()
      .where("name", "=", parsed.provider).executeTakeFirst();
    if (!provider) throw new NotFoundError(`No provider named "${parsed.provider}"`);
    const { created, ...model } = await trx.insertInto("models")
      .values({ name: parsed.name, provider_id: provider.id, ...values })
      .onConflict((oc) =>
        oc.column("name").doUpdateSet({
          provider_id: provider.id,
          ...values,
          updated_at: sql<Date>`now()`,
        })
      )
      .returningAll()
      .returning(sql<boolean>`xmax = 0`.as("created"))
      .executeTakeFirstOrThrow();
    await recordAudit(trx, {
      ...options.audit,
      action: created ? "model.create" : "model.update",
      targetType: "model",
      targetId: model.id,
      diff: {
        name: model.name,
        provider: provider.name,
        upstreamName: model.upstream_name,
        inputPrice: formatUsd(model.input_price, 8),
        outputPrice: formatUsd(model.output_price, 8),
        cachedInputPrice: formatUsd(model.cached_input_price, 8),
        maxOutputTokens: model.max_output_tokens,
      },
    });
    return { ...model, provider };
  });
}

const LIST = "model";

export function modelCursor(model: Model): string {
  return encodeCursor(LIST, [model.name]);
}

/**
 * One page of the models with their providers, by name. Every actor may list
 * them and their prices: a console shows what each model costs.
 */
export async function listModels(
  db: Kysely<Database>,
  page: PageRequest,
): Promise<ModelWithProvider[]> {
  const window = keysetWindow(
    page,
    "asc",
    (cursor, field) => decodeCursor(LIST, cursor, [textPart(200)], field)[0]!,
  );
  let query = db.selectFrom("models").selectAll();
  if (window.after !== null) query = query.where("name", window.afterOp, window.after);
  if (window.before !== null) query = query.where("name", window.beforeOp, window.before);
  const models = await query.orderBy("name", window.read).limit(window.limit).execute();
  const providerIds = [...new Set(models.map((m) => m.provider_id))];
  const providers = providerIds.length === 0
    ? []
    : await db.selectFrom("providers").selectAll().where("id", "in", providerIds).execute();
  const byId = new Map(providers.map((p) => [p.id, p]));
  // models.provider_id references providers (on delete restrict): every model has one.
  return models.map((model) => ({ ...model, provider: byId.get(model.provider_id)! }));
}

function parseUsdOrNull(text: string): bigint | null {
  try {
    return parseUsd(text);
  } catch {
    return null;
  }
}
