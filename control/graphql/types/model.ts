/**
 * Models: public names mapped to a provider's upstream model, with prices.
 * Everyone may list them and their prices (a console shows them, and a
 * customer bringing its own key needs the upstream name it will be billed
 * for); only operators change them.
 */
import { ForbiddenError, InvalidInputError, NotFoundError } from "../../errors.ts";
import {
  listModels,
  modelCursor,
  type ModelWithProvider,
  upsertModel,
} from "../../services/models.ts";
import { auditMeta, builder } from "../builder.ts";
import { keysetConnection } from "../connections.ts";
import { ProviderRef } from "./provider.ts";

export const ModelStatusEnum = builder.enumType("ModelStatus", {
  values: ["active", "disabled"] as const,
});

export const ModelRef = builder.objectRef<ModelWithProvider>("Model").implement({
  description: "A model callers can ask for. Prices are per million tokens.",
  fields: (t) => ({
    id: t.exposeID("id"),
    name: t.exposeString("name", { description: "The name callers send as `model`." }),
    provider: t.field({ type: ProviderRef, resolve: (model) => model.provider }),
    upstreamName: t.exposeString("upstream_name"),
    inputPrice: t.expose("input_price", { type: "Money" }),
    outputPrice: t.expose("output_price", { type: "Money" }),
    cachedInputPrice: t.expose("cached_input_price", { type: "Money" }),
    maxOutputTokens: t.exposeInt("max_output_tokens", { nullable: true }),
    status: t.expose("status", { type: ModelStatusEnum }),
  }),
});

const UpsertModelInput = builder.inputType("UpsertModelInput", {
  fields: (t) => ({
    name: t.string({ required: true, description: "The public model name." }),
    provider: t.string({ required: true, description: "The provider's name." }),
    upstreamName: t.string({ required: true }),
    inputPrice: t.string({
      required: true,
      description: 'USD per million input tokens, e.g. "2.50" (at most 8 decimals).',
    }),
    outputPrice: t.string({ required: true, description: "USD per million output tokens." }),
    cachedInputPrice: t.string({
      description: "USD per million cached input tokens; defaults to inputPrice.",
    }),
    maxOutputTokens: t.int(),
  }),
});

builder.queryField("models", (t) =>
  t.connection(
    {
      type: ModelRef,
      description: "The models and their prices, by name (first/last 1..200, default 100).",
      resolve: (_root, args, ctx) =>
        keysetConnection(
          args,
          { defaultSize: 100, maxSize: 200 },
          modelCursor,
          (page) => listModels(ctx.db, page),
        ),
    },
    { name: "ModelConnection" },
    { name: "ModelEdge" },
  ));

builder.mutationField("upsertModel", (t) =>
  t.field({
    type: ModelRef,
    description: "Creates the model called name, or updates it (operators only). Gateways " +
      "serve it, at its prices, once notified.",
    errors: { types: [InvalidInputError, NotFoundError, ForbiddenError] },
    args: { input: t.arg({ type: UpsertModelInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      upsertModel(ctx.db, input, { actor: ctx.actor, audit: auditMeta(ctx) }),
  }));
