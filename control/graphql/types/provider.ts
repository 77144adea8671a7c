/**
 * Upstream providers. Their credentials go in and never come out. Anyone
 * signed in may list them (a customer picks one to store its own key for);
 * their configuration (URLs, whether a credential is set) reads null except
 * to operators, who alone may change it.
 */
import type { Provider } from "../../../schema/database.ts";
import { isProviderPreset, PROVIDER_PRESET_NAMES } from "../../../schema/provider_presets.ts";
import { isOperator } from "../../access.ts";
import { ForbiddenError, InvalidInputError } from "../../errors.ts";
import {
  effectiveBaseUrl,
  listProviders,
  PROVIDER_KINDS,
  providerCursor,
  upsertProvider,
} from "../../services/providers.ts";
import { auditMeta, builder, type Context } from "../builder.ts";
import { keysetConnection } from "../connections.ts";

/** A configuration field's value for operators, null for everyone else. */
function forOperators<T>(ctx: Context, value: () => T): T | null {
  return isOperator(ctx.actor) ? value() : null;
}

const OPERATORS_ONLY = "Null unless the caller is an operator.";

export const ProviderKindEnum = builder.enumType("ProviderKind", { values: PROVIDER_KINDS });
export const ProviderPresetEnum = builder.enumType("ProviderPreset", {
  description: "An OpenAI-compatible vendor an openai_compat provider is configured from.",
  values: PROVIDER_PRESET_NAMES,
});

export const ProviderRef = builder.objectRef<Provider>("Provider").implement({
  description: "An upstream provider. Its credential is stored sealed and never returned.",
  fields: (t) => ({
    id: t.exposeID("id"),
    name: t.exposeString("name"),
    kind: t.expose("kind", { type: ProviderKindEnum }),
    baseUrl: t.string({
      nullable: true,
      description: "The base URL as configured; null uses the preset's or the kind's default. " +
        OPERATORS_ONLY,
      resolve: (p, _args, ctx) => forOperators(ctx, () => p.base_url),
    }),
    preset: t.field({
      type: ProviderPresetEnum,
      nullable: true,
      resolve: (p) => (p.preset && isProviderPreset(p.preset) ? p.preset : null),
    }),
    effectiveBaseUrl: t.string({
      nullable: true,
      description: "The base URL the gateway calls: baseUrl, else the preset's, else the " +
        "kind's default (Anthropic's API for anthropic); null for mock. " + OPERATORS_ONLY,
      resolve: (p, _args, ctx) => forOperators(ctx, () => effectiveBaseUrl(p)),
    }),
    hasCredential: t.boolean({
      nullable: true,
      description: "Whether the operator's credential for it is set. " + OPERATORS_ONLY,
      resolve: (p, _args, ctx) => forOperators(ctx, () => p.credential_ciphertext !== null),
    }),
    credentialLast4: t.string({
      nullable: true,
      description: OPERATORS_ONLY,
      resolve: (p, _args, ctx) => forOperators(ctx, () => p.credential_last4),
    }),
    updatedAt: t.expose("updated_at", { type: "DateTime" }),
  }),
});

const UpsertProviderInput = builder.inputType("UpsertProviderInput", {
  fields: (t) => ({
    name: t.string({ required: true, description: "The provider's unique name." }),
    kind: t.field({ type: ProviderKindEnum, required: true }),
    baseUrl: t.string({
      description: "An http(s) URL. Required for openai_compat unless preset is given; " +
        "anthropic defaults to Anthropic's API.",
    }),
    preset: t.field({
      type: ProviderPresetEnum,
      description: "Only for openai_compat: the vendor, whose base URL is used when baseUrl " +
        "is omitted. Omitted or null: a plain OpenAI-compatible provider.",
    }),
    apiKey: t.string({
      description: "The upstream credential. Omitted: keep the stored one; null: remove it.",
    }),
  }),
});

builder.queryField("providers", (t) =>
  t.connection(
    {
      type: ProviderRef,
      description: "The providers, by name (first/last 1..200, default 100).",
      resolve: (_root, args, ctx) =>
        keysetConnection(
          args,
          { defaultSize: 100, maxSize: 200 },
          providerCursor,
          (page) => listProviders(ctx.db, page),
        ),
    },
    { name: "ProviderConnection" },
    { name: "ProviderEdge" },
  ));

builder.mutationField("upsertProvider", (t) =>
  t.field({
    type: ProviderRef,
    description: "Creates the provider called name, or updates it (operators only).",
    errors: { types: [InvalidInputError, ForbiddenError] },
    args: { input: t.arg({ type: UpsertProviderInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      upsertProvider(ctx.db, input, { keys: ctx.keys, actor: ctx.actor, audit: auditMeta(ctx) }),
  }));
