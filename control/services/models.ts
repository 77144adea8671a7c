/**
 * Models callers can ask for, each served by one provider under its upstream
 * name, with prices in microcents per million tokens. Prices arrive as
 * decimal USD strings and are parsed exactly (no float ever holds one).
 */
import { type Kysely, sql } from "kysely";
import { z } from "zod";
import type { Database, Model, Provider } from "../../schema/database.ts";
import { formatUsd, parseUsd, UNITS_PER_USD } from "../../schema/money.ts";
import { InvalidInputError, NotFoundError, parseInput, textField } from "../errors.ts";
import { type AuditMeta, recordAudit } from "./audit.ts";
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

/** Creates or updates the model called `name`. */
export async function upsertModel(
  db: Kysely<Database>,
  input: UpsertModelInput,
  options: { audit: AuditMeta },
): Promise<ModelWithProvider> {
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

/** Every model with its provider, by name. */
export async function listModels(db: Kysely<Database>): Promise<ModelWithProvider[]> {
  const [models, providers] = await Promise.all([
    db.selectFrom("models").selectAll().orderBy("name").execute(),
    db.selectFrom("providers").selectAll().execute(),
  ]);
  const byId = new Map(providers.map((p) => [p.id, p]));
  return models.flatMap((model) => {
    const provider = byId.get(model.provider_id);
    return provider ? [{ ...model, provider }] : [];
  });
}

function parseUsdOrNull(text: string): bigint | null {
  try {
    return parseUsd(text);
  } catch {
    return null;
  }
}
