/**
 * API keys: issued once, listed by prefix and last 4, limited, rotated with a
 * grace period, revoked for good. Who may do what is decided in
 * services/api_keys.ts (viewers read; members manage inference keys; admins
 * management keys too).
 */
import type { ApiKey } from "../../../schema/database.ts";
import { ForbiddenError, InvalidInputError, NotFoundError } from "../../errors.ts";
import {
  API_KEY_SCOPES,
  apiKeyCursor,
  type ApiKeyScope,
  apiKeyStatus,
  createApiKey,
  type CreatedApiKey,
  getApiKey,
  listApiKeys,
  MAX_ALLOWED_IPS,
  MAX_ALLOWED_MODELS,
  MAX_GRACE_SECONDS,
  previousSecretValidUntil,
  revokeApiKey,
  rotateApiKey,
  setApiKeyAllowedModels,
  updateApiKey,
} from "../../services/api_keys.ts";
import { auditMeta, builder } from "../builder.ts";
import { keysetConnection } from "../connections.ts";

export const ApiKeyScopeEnum = builder.enumType("ApiKeyScope", { values: API_KEY_SCOPES });
export const ApiKeyStatusEnum = builder.enumType("ApiKeyStatus", {
  values: ["active", "revoked", "expired"] as const,
});

export const ApiKeyRef = builder.objectRef<ApiKey>("ApiKey").implement({
  description: "An API key. Its secret is shown once, at creation or rotation, and never stored.",
  fields: (t) => ({
    id: t.exposeID("id"),
    accountId: t.exposeID("account_id"),
    name: t.exposeString("name"),
    prefix: t.exposeString("prefix", {
      description: "The current secret's first characters, e.g. tg_AbCd1234.",
    }),
    last4: t.exposeString("last4"),
    scopes: t.field({ type: [ApiKeyScopeEnum], resolve: (key) => key.scopes as ApiKeyScope[] }),
    status: t.field({
      type: ApiKeyStatusEnum,
      description: "revoked once revoked; expired from expiresAt on; otherwise active.",
      resolve: (key) => apiKeyStatus(key),
    }),
    expiresAt: t.expose("expires_at", { type: "DateTime", nullable: true }),
    createdAt: t.expose("created_at", { type: "DateTime" }),
    updatedAt: t.expose("updated_at", { type: "DateTime" }),
    lastUsedAt: t.expose("last_used_at", {
      type: "DateTime",
      nullable: true,
      description: "When the gateway last served a request with it (written in batches).",
    }),
    revokedAt: t.expose("revoked_at", { type: "DateTime", nullable: true }),
    rotatedAt: t.expose("rotated_at", { type: "DateTime", nullable: true }),
    previousSecretValidUntil: t.field({
      type: "DateTime",
      nullable: true,
      description: "When the secret replaced by the latest rotation stops working; null when " +
        "no replaced secret works any more.",
      resolve: (key) => previousSecretValidUntil(key),
    }),
    allowedModels: t.exposeStringList("allowed_models", {
      nullable: true,
      description: "The model and alias names this key may call; null: every model.",
    }),
    allowedIps: t.exposeStringList("allowed_ips", {
      nullable: true,
      description: "The addresses and CIDR ranges requests may come from; null: anywhere.",
    }),
    spendLimit: t.expose("spend_limit", {
      type: "Money",
      nullable: true,
      description: "The most the key may spend over its lifetime; null: no limit.",
    }),
    rpmLimit: t.exposeInt("rpm_limit", {
      nullable: true,
      description: "Requests per minute, enforced by each gateway replica; null: no limit.",
    }),
    tpmLimit: t.exposeInt("tpm_limit", {
      nullable: true,
      description: "Tokens per minute, enforced by each gateway replica; null: no limit.",
    }),
  }),
});

const ALLOWED_MODELS_RULES = `Each name is non-empty; at most ${MAX_ALLOWED_MODELS} names; ` +
  "duplicates are dropped. Names that match no model or alias yet are accepted (the operator " +
  "may create it later); until then the key gets model_not_found for them.";
const ALLOWED_IPS_RULES = `IPv4 or IPv6 addresses and CIDR ranges ("203.0.113.7", ` +
  `"10.0.0.0/8", "2001:db8::/32"), 1 to ${MAX_ALLOWED_IPS}; stored in canonical form. A range ` +
  "with bits set past its prefix is refused. Other addresses get 403 ip_not_allowed.";
const PER_REPLICA = "Counted in memory by each gateway replica: with N replicas behind a load " +
  "balancer a key may get up to N times the limit.";

const CreatedApiKeyRef = builder.objectRef<CreatedApiKey>("CreatedApiKey").implement({
  fields: (t) => ({
    apiKey: t.field({ type: ApiKeyRef, resolve: (created) => created.apiKey }),
    secret: t.exposeString("secret", { description: "The full key. It is not shown again." }),
  }),
});

const RotatedApiKeyRef = builder.objectRef<CreatedApiKey>("RotatedApiKey").implement({
  fields: (t) => ({
    apiKey: t.field({ type: ApiKeyRef, resolve: (rotated) => rotated.apiKey }),
    secret: t.exposeString("secret", {
      description: "The key's new secret. It is not shown again.",
    }),
  }),
});

const CreateApiKeyInput = builder.inputType("CreateApiKeyInput", {
  fields: (t) => ({
    accountId: t.id({ required: true }),
    name: t.string({ required: true }),
    scopes: t.field({
      type: [ApiKeyScopeEnum],
      description: "Defaults to [inference]. A management key needs the admin role.",
    }),
    expiresAt: t.field({ type: "DateTime", description: "Must be in the future." }),
    allowedModels: t.stringList({
      description: "The model and alias names the key may call; omitted or null: every model. " +
        ALLOWED_MODELS_RULES,
    }),
    allowedIps: t.stringList({
      description: `Where requests may come from; omitted or null: anywhere. ${ALLOWED_IPS_RULES}`,
    }),
    spendLimit: t.field({
      type: "Money",
      description: "Lifetime spend limit; omitted or null: none.",
    }),
    rpmLimit: t.int({ description: `Requests per minute, 1 or more. ${PER_REPLICA}` }),
    tpmLimit: t.int({ description: `Tokens per minute, 1 or more. ${PER_REPLICA}` }),
  }),
});

const UpdateApiKeyInput = builder.inputType("UpdateApiKeyInput", {
  description: "Omitted fields stay as they are; null clears a limit.",
  fields: (t) => ({
    id: t.id({ required: true }),
    name: t.string({ description: "Cannot be null." }),
    expiresAt: t.field({ type: "DateTime", description: "In the future; null: never." }),
    allowedModels: t.stringList({ description: `null: every model. ${ALLOWED_MODELS_RULES}` }),
    allowedIps: t.stringList({ description: `null: anywhere. ${ALLOWED_IPS_RULES}` }),
    spendLimit: t.field({ type: "Money", description: "null: no limit." }),
    rpmLimit: t.int({ description: `null: no limit. ${PER_REPLICA}` }),
    tpmLimit: t.int({ description: `null: no limit. ${PER_REPLICA}` }),
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

const RotateApiKeyInput = builder.inputType("RotateApiKeyInput", {
  fields: (t) => ({
    id: t.id({ required: true }),
    graceSeconds: t.int({
      required: true,
      description: `How long the current secret keeps working: 0 (not at all) to ` +
        `${MAX_GRACE_SECONDS} (7 days).`,
    }),
  }),
});

const RevokeApiKeyInput = builder.inputType("RevokeApiKeyInput", {
  fields: (t) => ({ id: t.id({ required: true }) }),
});

builder.queryField("apiKeys", (t) =>
  t.connection(
    {
      type: ApiKeyRef,
      description: "An account's API keys, newest first: first 1..200 (default 50), after a " +
        "cursor from an earlier page (or last/before, backwards).",
      args: { accountId: t.arg.id({ required: true }) },
      resolve: (_root, args, ctx) =>
        keysetConnection(
          args,
          { defaultSize: 50, maxSize: 200 },
          apiKeyCursor,
          (page) => listApiKeys(ctx.db, args.accountId, page, { actor: ctx.actor }),
        ),
    },
    { name: "ApiKeyConnection" },
    { name: "ApiKeyEdge" },
  ));

builder.queryField("apiKey", (t) =>
  t.field({
    type: ApiKeyRef,
    nullable: true,
    description: "One API key; null when there is none you can see.",
    args: { id: t.arg.id({ required: true }) },
    resolve: (_root, { id }, ctx) => getApiKey(ctx.db, id, { actor: ctx.actor }),
  }));

builder.mutationField("createApiKey", (t) =>
  t.field({
    type: CreatedApiKeyRef,
    errors: { types: [InvalidInputError, NotFoundError, ForbiddenError] },
    args: { input: t.arg({ type: CreateApiKeyInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      createApiKey(ctx.db, input, { keys: ctx.keys, actor: ctx.actor, audit: auditMeta(ctx) }),
  }));

builder.mutationField("updateApiKey", (t) =>
  t.field({
    type: ApiKeyRef,
    description: "Changes a key's name and limits; gateways apply it when notified.",
    errors: { types: [InvalidInputError, NotFoundError, ForbiddenError] },
    args: { input: t.arg({ type: UpdateApiKeyInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      updateApiKey(ctx.db, input, { actor: ctx.actor, audit: auditMeta(ctx) }),
  }));

builder.mutationField("rotateApiKey", (t) =>
  t.field({
    type: RotatedApiKeyRef,
    description: "Gives a key a new secret under the same id. The current secret keeps " +
      "working for graceSeconds, then stops. Only one replaced secret is kept: rotating " +
      "during a grace period ends that grace at once. Revoked keys cannot be rotated.",
    errors: { types: [InvalidInputError, NotFoundError, ForbiddenError] },
    args: { input: t.arg({ type: RotateApiKeyInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      rotateApiKey(ctx.db, input, { keys: ctx.keys, actor: ctx.actor, audit: auditMeta(ctx) }),
  }));

builder.mutationField("revokeApiKey", (t) =>
  t.field({
    type: ApiKeyRef,
    description: "Revokes a key (and any secret still in a rotation's grace); gateways drop " +
      "it when notified. Revoking twice is harmless.",
    errors: { types: [NotFoundError, ForbiddenError] },
    args: { input: t.arg({ type: RevokeApiKeyInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      revokeApiKey(ctx.db, input, { actor: ctx.actor, audit: auditMeta(ctx) }),
  }));

builder.mutationField("setApiKeyAllowedModels", (t) =>
  t.field({
    type: ApiKeyRef,
    description: "Replaces a key's model allowlist; gateways apply it when notified. " +
      "updateApiKey does this and more.",
    errors: { types: [InvalidInputError, NotFoundError, ForbiddenError] },
    args: { input: t.arg({ type: SetApiKeyAllowedModelsInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      setApiKeyAllowedModels(ctx.db, input, { actor: ctx.actor, audit: auditMeta(ctx) }),
  }));
