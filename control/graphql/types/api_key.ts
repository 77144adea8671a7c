/** API keys: issued once, listed by prefix and last 4, revoked for good. */
import type { ApiKey } from "../../../schema/database.ts";
import { InvalidInputError, NotFoundError } from "../../errors.ts";
import {
  API_KEY_SCOPES,
  type ApiKeyScope,
  createApiKey,
  type CreatedApiKey,
  listApiKeys,
  MAX_ALLOWED_MODELS,
  revokeApiKey,
  setApiKeyAllowedModels,
} from "../../services/api_keys.ts";
import { auditMeta, builder } from "../builder.ts";

export const ApiKeyScopeEnum = builder.enumType("ApiKeyScope", { values: API_KEY_SCOPES });
export const ApiKeyStatusEnum = builder.enumType("ApiKeyStatus", {
  values: ["active", "revoked"] as const,
});

export const ApiKeyRef = builder.objectRef<ApiKey>("ApiKey").implement({
  description: "An API key. Its secret is shown once, at creation, and never stored.",
  fields: (t) => ({
    id: t.exposeID("id"),
    accountId: t.exposeID("account_id"),
    name: t.exposeString("name"),
    prefix: t.exposeString("prefix", {
      description: "The key's first characters, e.g. tg_AbCd1234.",
    }),
    last4: t.exposeString("last4"),
    scopes: t.field({ type: [ApiKeyScopeEnum], resolve: (key) => key.scopes as ApiKeyScope[] }),
    status: t.expose("status", { type: ApiKeyStatusEnum }),
    expiresAt: t.expose("expires_at", { type: "DateTime", nullable: true }),
    createdAt: t.expose("created_at", { type: "DateTime" }),
    lastUsedAt: t.expose("last_used_at", { type: "DateTime", nullable: true }),
    revokedAt: t.expose("revoked_at", { type: "DateTime", nullable: true }),
    allowedModels: t.exposeStringList("allowed_models", {
      nullable: true,
      description: "The model and alias names this key may call; null: every model.",
    }),
  }),
});

const ALLOWED_MODELS_RULES = `Each name is non-empty; at most ${MAX_ALLOWED_MODELS} names; ` +
  "duplicates are dropped. Names that match no model or alias yet are accepted (the operator " +
  "may create it later); until then the key gets model_not_found for them.";

const CreatedApiKeyRef = builder.objectRef<CreatedApiKey>("CreatedApiKey").implement({
  fields: (t) => ({
    apiKey: t.field({ type: ApiKeyRef, resolve: (created) => created.apiKey }),
    secret: t.exposeString("secret", { description: "The full key. It is not shown again." }),
  }),
});

const CreateApiKeyInput = builder.inputType("CreateApiKeyInput", {
  fields: (t) => ({
    accountId: t.id({ required: true }),
    name: t.string({ required: true }),
    scopes: t.field({ type: [ApiKeyScopeEnum], description: "Defaults to [inference]." }),
    expiresAt: t.field({ type: "DateTime", description: "Must be in the future." }),
    allowedModels: t.stringList({
      description: "The model and alias names the key may call; omitted or null: every model. " +
        ALLOWED_MODELS_RULES,
    }),
  }),
});

const SetApiKeyAllowedModelsInput = builder.inputType("SetApiKeyAllowedModelsInput", {
  fields: (t) => ({
    id: t.id({ required: true }),
    allowedModels: t.stringList({
      description: "The new allowlist; omitted or null clears it (every model). " +
        ALLOWED_MODELS_RULES,
    }),
  }),
});

const RevokeApiKeyInput = builder.inputType("RevokeApiKeyInput", {
  fields: (t) => ({ id: t.id({ required: true }) }),
});

builder.queryField("apiKeys", (t) =>
  t.field({
    type: [ApiKeyRef],
    description: "API keys, newest first; only one account's when accountId is given.",
    args: { accountId: t.arg.id() },
    resolve: (_root, { accountId }, ctx) => listApiKeys(ctx.db, { accountId }),
  }));

builder.mutationField("createApiKey", (t) =>
  t.field({
    type: CreatedApiKeyRef,
    errors: { types: [InvalidInputError, NotFoundError] },
    args: { input: t.arg({ type: CreateApiKeyInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      createApiKey(ctx.db, input, { keys: ctx.keys, audit: auditMeta(ctx) }),
  }));

builder.mutationField("revokeApiKey", (t) =>
  t.field({
    type: ApiKeyRef,
    description: "Revokes a key; gateways drop it when notified. Revoking twice is harmless.",
    errors: { types: [NotFoundError] },
    args: { input: t.arg({ type: RevokeApiKeyInput, required: true }) },
    resolve: (_root, { input }, ctx) => revokeApiKey(ctx.db, input, { audit: auditMeta(ctx) }),
  }));

builder.mutationField("setApiKeyAllowedModels", (t) =>
  t.field({
    type: ApiKeyRef,
    description: "Replaces a key's model allowlist; gateways apply it when notified.",
    errors: { types: [InvalidInputError, NotFoundError] },
    args: { input: t.arg({ type: SetApiKeyAllowedModelsInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      setApiKeyAllowedModels(ctx.db, input, { audit: auditMeta(ctx) }),
  }));
