/** Upstream providers. Their credentials go in and never come out. */
import type { Provider } from "../../../schema/database.ts";
import { isProviderPreset, PROVIDER_PRESET_NAMES } from "../../../schema/provider_presets.ts";
import { InvalidInputError } from "../../errors.ts";
import {
  effectiveBaseUrl,
  listProviders,
  PROVIDER_KINDS,
  upsertProvider,
} from "../../services/providers.ts";
import { auditMeta, builder } from "../builder.ts";

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
    baseUrl: t.exposeString("base_url", {
      nullable: true,
      description: "The base URL as configured; null uses the preset's or the kind's default.",
    }),
    preset: t.field({
      type: ProviderPresetEnum,
      nullable: true,
      resolve: (p) => (p.preset && isProviderPreset(p.preset) ? p.preset : null),
    }),
    effectiveBaseUrl: t.string({
      nullable: true,
      description: "The base URL the gateway calls: baseUrl, else the preset's, else the " +
        "kind's default (Anthropic's API for anthropic); null for mock.",
      resolve: (p) => effectiveBaseUrl(p),
    }),
    hasCredential: t.boolean({ resolve: (p) => p.credential_ciphertext !== null }),
    credentialLast4: t.exposeString("credential_last4", { nullable: true }),
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
  t.field({
    type: [ProviderRef],
    description: "Every provider, by name.",
    resolve: (_root, _args, ctx) => listProviders(ctx.db),
  }));

builder.mutationField("upsertProvider", (t) =>
  t.field({
    type: ProviderRef,
    description: "Creates the provider called name, or updates it.",
    errors: { types: [InvalidInputError] },
    args: { input: t.arg({ type: UpsertProviderInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      upsertProvider(ctx.db, input, { keys: ctx.keys, audit: auditMeta(ctx) }),
  }));
