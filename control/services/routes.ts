/**
 * Routes: model aliases. One public name stands for an ordered list of
 * existing models, tried in order ("fallback") or cheapest first
 * ("cheapest"). An alias never shadows a model: the gateway resolves a
 * route's name before a model's, so a route may not take a model's name.
 */
import { type Kysely, sql } from "kysely";
import { z } from "zod";
import type { Database, Route } from "../../schema/database.ts";
import { type Actor, requireOperator } from "../access.ts";
import { InvalidInputError, NotFoundError, parseInput, textField } from "../errors.ts";
import { type AuditMeta, recordAudit } from "./audit.ts";
import { decodeCursor, encodeCursor, keysetWindow, type PageRequest, textPart } from "./pages.ts";

export const ROUTE_STRATEGIES = ["fallback", "cheapest"] as const;
export const ROUTE_STATUSES = ["active", "disabled"] as const;
export const MAX_ROUTE_TARGETS = 16;
export const MAX_ROUTE_TIMEOUT_MS = 600_000;

/** Some targets of a route name no model; `names` lists them. */
export class UnknownModelsError extends Error {
  override readonly name = "UnknownModelsError";
  readonly field = "targets";
  constructor(readonly names: string[]) {
    super(`targets: no model is named ${names.map((n) => `"${n}"`).join(", ")}`);
  }
}

export interface UpsertRouteInput {
  name: string;
  /** Model names, in the order they are tried. */
  targets: readonly string[];
  /** Defaults to "fallback". */
  strategy?: string | null;
  /** Per-attempt upstream timeout; omitted or null: the gateway's defaults. */
  timeoutMs?: number | null;
  /** Omitted: active for a new route, unchanged for an existing one. */
  status?: string | null;
}

const upsertRouteInput = z.object({
  name: textField(200),
  targets: z.array(textField(200))
    .min(1, "must name at least one model")
    .max(MAX_ROUTE_TARGETS, `must name at most ${MAX_ROUTE_TARGETS} models`)
    .refine((names) => new Set(names).size === names.length, {
      error: (issue) => `must not name a model twice (${duplicates(issue.input as string[])})`,
    }),
  strategy: z.enum(ROUTE_STRATEGIES, "must be fallback or cheapest").nullish(),
  timeoutMs: z.number().int("must be an integer").min(1, "must be at least 1")
    .max(MAX_ROUTE_TIMEOUT_MS, `must be at most ${MAX_ROUTE_TIMEOUT_MS}`).nullish(),
  status: z.enum(ROUTE_STATUSES, "must be active or disabled").nullish(),
});

const deleteRouteInput = z.object({ name: textField(200) });

/**
 * Serialises writes to the one namespace models and aliases share, so a model
 * and an alias of the same name cannot be created at the same moment.
 */
export async function lockModelNames(trx: Kysely<Database>): Promise<void> {
  await sql`select pg_advisory_xact_lock(hashtext('tollgate:model-names'))`.execute(trx);
}

/** Creates or updates the route called `name` (operators only). */
export async function upsertRoute(
  db: Kysely<Database>,
  input: UpsertRouteInput,
  options: { actor: Actor; audit: AuditMeta },
): Promise<Route> {
  requireOperator(options.actor, "configure routes");
  const parsed = parseInput(upsertRouteInput, input);
  const values = {
    strategy: parsed.strategy ?? "fallback",
    targets: parsed.targets,
    timeout_ms: parsed.timeoutMs ?? null,
  };
  return await db.transaction().execute(async (trx) => {
    await lockModelNames(trx);
    const models = await trx.selectFrom("models").select("name")
      .where("name", "in", [parsed.name, ...parsed.targets]).execute();
    const modelNames = new Set(models.map((m) => m.name));
    if (modelNames.has(parsed.name)) {
      throw new InvalidInputError(
        `name: "${parsed.name}" is a model's name; an alias would shadow the model`,
        "name",
      );
    }
    const unknown = parsed.targets.filter((target) => !modelNames.has(target));
    if (unknown.length > 0) throw new UnknownModelsError(unknown);

    // xmax = 0 only on a freshly inserted row: tells a create from an update.
    const { created, ...route } = await trx.insertInto("routes")
      .values({ name: parsed.name, ...values, status: parsed.status ?? "active" })
      .onConflict((oc) =>
        oc.column("name").doUpdateSet({
          ...values,
          ...(parsed.status ? { status: parsed.status } : {}),
          updated_at: sql<Date>`now()`,
        })
      )
      .returningAll()
      .returning(sql<boolean>`xmax = 0`.as("created"))
      .executeTakeFirstOrThrow();
    await recordAudit(trx, {
      ...options.audit,
      action: created ? "route.create" : "route.update",
      targetType: "route",
      targetId: route.id,
      diff: {
        name: route.name,
        strategy: route.strategy,
        targets: route.targets,
        timeoutMs: route.timeout_ms,
        status: route.status,
      },
    });
    return route;
  });
}

/** Deletes the route called `name` (operators only); returns it as it was. */
export async function deleteRoute(
  db: Kysely<Database>,
  input: { name: string },
  options: { actor: Actor; audit: AuditMeta },
): Promise<Route> {
  requireOperator(options.actor, "configure routes");
  const { name } = parseInput(deleteRouteInput, input);
  return await db.transaction().execute(async (trx) => {
    const route = await trx.deleteFrom("routes").where("name", "=", name).returningAll()
      .executeTakeFirst();
    if (!route) throw new NotFoundError(`No route named "${name}"`);
    await recordAudit(trx, {
      ...options.audit,
      action: "route.delete",
      targetType: "route",
      targetId: route.id,
      diff: { name: route.name, strategy: route.strategy, targets: route.targets },
    });
    return route;
  });
}

const LIST = "route";

export function routeCursor(route: Route): string {
  return encodeCursor(LIST, [route.name]);
}

/**
 * One page of the routes, by name (operators only: a route's targets say
 * which models stand behind an alias, which is the operator's business;
 * customers see the aliases they may call in the gateway's /v1/models).
 */
export async function listRoutes(
  db: Kysely<Database>,
  page: PageRequest,
  options: { actor: Actor },
): Promise<Route[]> {
  requireOperator(options.actor, "list routes");
  const window = keysetWindow(
    page,
    "asc",
    (cursor, field) => decodeCursor(LIST, cursor, [textPart(200)], field)[0]!,
  );
  let query = db.selectFrom("routes").selectAll();
  if (window.after !== null) query = query.where("name", window.afterOp, window.after);
  if (window.before !== null) query = query.where("name", window.beforeOp, window.before);
  return await query.orderBy("name", window.read).limit(window.limit).execute();
}

function duplicates(names: string[]): string {
  const repeated = new Set(names.filter((name, i) => names.indexOf(name) !== i));
  return [...repeated].map((n) => `"${n}"`).join(", ");
}
