/** Upstream providers. Their credentials go in and never come out. */
import type { Provider } from "../../../schema/database.ts";
import { InvalidInputError } from "../../errors.ts";
import { listProviders, PROVIDER_KINDS, upsertProvider } from "../../services/providers.ts";
import { auditMeta, builder } from "../builder.ts";

export const ProviderKindEnum = builder.enumType("ProviderKind", { values: PROVIDER_KINDS });

export const ProviderRef = builder.objectRef<Provider>("Provider").implement({
  description: "An upstream provider. Its credential is stored sealed and never returned.",
  fields: (t) => ({
    id: t.exposeID("id"),
    name: t.exposeString("name"),
    kind: t.expose("kind", { type: ProviderKindEnum }),
    baseUrl: t.exposeString("base_url", { nullable: true }),
    hasCredential: t.boolean({ resolve: (p) => p.credential_ciphertext !== null }),
    credentialLast4: t.exposeString("credential_last4", { nullable: true }),
    updatedAt: t.expose("updated_at", { type: "DateTime" }),
  }),
});

const UpsertProviderInput = builder.inputType("UpsertProviderInput", {
  fields: (t) => ({
    name: t.string({ required: true, description: "The provider's unique name." }),
    kind: t.field({ type: ProviderKindEnum, required: true }),
    baseUrl: t.string({ description: "An http(s) URL; required unless kind is mock." }),
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
