/** Routes: model aliases that stand for an ordered list of models. Operators only. */
import type { Route } from "../../../schema/database.ts";
import { ForbiddenError, InvalidInputError, NotFoundError } from "../../errors.ts";
import {
  deleteRoute,
  listRoutes,
  MAX_ROUTE_TARGETS,
  MAX_ROUTE_TIMEOUT_MS,
  ROUTE_STATUSES,
  ROUTE_STRATEGIES,
  routeCursor,
  UnknownModelsError,
  upsertRoute,
} from "../../services/routes.ts";
import { auditMeta, builder } from "../builder.ts";
import { keysetConnection } from "../connections.ts";
import { ErrorInterface } from "./errors.ts";

export const RouteStrategyEnum = builder.enumType("RouteStrategy", {
  description: "fallback: targets in order; cheapest: cheapest first, ties in order.",
  values: ROUTE_STRATEGIES,
});
export const RouteStatusEnum = builder.enumType("RouteStatus", { values: ROUTE_STATUSES });

builder.objectType(UnknownModelsError, {
  name: "UnknownModelsError",
  description: "Some of a route's targets name no model; `names` lists them.",
  interfaces: [ErrorInterface],
  fields: (t) => ({
    field: t.exposeString("field"),
    names: t.exposeStringList("names"),
  }),
});

export const RouteRef = builder.objectRef<Route>("Route").implement({
  description: "A model alias: callers send its name as `model`; the gateway serves it " +
    "with one of its target models.",
  fields: (t) => ({
    id: t.exposeID("id"),
    name: t.exposeString("name"),
    strategy: t.expose("strategy", { type: RouteStrategyEnum }),
    targets: t.exposeStringList("targets", { description: "Model names, in order." }),
    timeoutMs: t.exposeInt("timeout_ms", {
      nullable: true,
      description: "The per-attempt upstream timeout; null: the gateway's defaults.",
    }),
    status: t.expose("status", { type: RouteStatusEnum }),
    createdAt: t.expose("created_at", { type: "DateTime" }),
    updatedAt: t.expose("updated_at", { type: "DateTime" }),
  }),
});

const UpsertRouteInput = builder.inputType("UpsertRouteInput", {
  fields: (t) => ({
    name: t.string({
      required: true,
      description: "The alias callers send as `model`; it may not be a model's name.",
    }),
    targets: t.stringList({
      required: true,
      description: `1 to ${MAX_ROUTE_TARGETS} distinct names of existing models.`,
    }),
    strategy: t.field({ type: RouteStrategyEnum, defaultValue: "fallback" }),
    timeoutMs: t.int({
      description: `1 to ${MAX_ROUTE_TIMEOUT_MS}; omitted or null: the gateway's defaults.`,
    }),
    status: t.field({
      type: RouteStatusEnum,
      description: "Omitted: active for a new route, unchanged for an existing one.",
    }),
  }),
});

const DeleteRouteInput = builder.inputType("DeleteRouteInput", {
  fields: (t) => ({ name: t.string({ required: true }) }),
});

builder.queryField("routes", (t) =>
  t.connection(
    {
      type: RouteRef,
      description: "The routes, by name (first/last 1..200, default 100; operators only).",
      resolve: (_root, args, ctx) =>
        keysetConnection(
          args,
          { defaultSize: 100, maxSize: 200 },
          routeCursor,
          (page) => listRoutes(ctx.db, page, { actor: ctx.actor }),
        ),
    },
    { name: "RouteConnection" },
    { name: "RouteEdge" },
  ));

builder.mutationField("upsertRoute", (t) =>
  t.field({
    type: RouteRef,
    description: "Creates the route called name, or updates it (operators only); gateways " +
      "follow it once notified.",
    errors: { types: [InvalidInputError, UnknownModelsError, ForbiddenError] },
    args: { input: t.arg({ type: UpsertRouteInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      upsertRoute(ctx.db, input, { actor: ctx.actor, audit: auditMeta(ctx) }),
  }));

builder.mutationField("deleteRoute", (t) =>
  t.field({
    type: RouteRef,
    description: "Deletes the route called name and returns it (operators only); gateways " +
      "drop it when notified.",
    errors: { types: [InvalidInputError, NotFoundError, ForbiddenError] },
    args: { input: t.arg({ type: DeleteRouteInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      deleteRoute(ctx.db, input, { actor: ctx.actor, audit: auditMeta(ctx) }),
  }));
