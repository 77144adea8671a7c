/** Customers' own provider keys (BYOK): they go in and only their last 4 come out. */
import type { CustomerProviderKey } from "../../../schema/database.ts";
import { ForbiddenError, InvalidInputError, NotFoundError } from "../../errors.ts";
import {
  deleteProviderKey,
  listProviderKeys,
  MAX_PROVIDER_KEY_LENGTH,
  MIN_PROVIDER_KEY_LENGTH,
  providerKeyCursor,
  rewrapProviderKeys,
  type RewrapResult,
  setProviderKey,
  UnreadableProviderKeyError,
} from "../../services/provider_keys.ts";
import { auditMeta, builder } from "../builder.ts";
import { keysetConnection } from "../connections.ts";
import { ErrorInterface } from "./errors.ts";

builder.objectType(UnreadableProviderKeyError, {
  name: "UnreadableProviderKeyError",
  description: "A stored provider key does not open with the keyring; `id` names it.",
  interfaces: [ErrorInterface],
  fields: (t) => ({ id: t.exposeID("id") }),
});

export const ProviderKeyRef = builder.objectRef<CustomerProviderKey>("ProviderKey").implement({
  description: "An account's own key for a provider (BYOK). It is stored envelope-encrypted " +
    "and never returned: only its last 4 characters are.",
  fields: (t) => ({
    id: t.exposeID("id"),
    accountId: t.exposeID("account_id"),
    providerId: t.exposeID("provider_id"),
    last4: t.exposeString("last4"),
    kekId: t.exposeString("kek_id", {
      description: "The key-encryption key it is sealed under; rewrapProviderKeys moves " +
        "every key to the current one.",
    }),
    createdAt: t.expose("created_at", { type: "DateTime" }),
    updatedAt: t.expose("updated_at", { type: "DateTime" }),
  }),
});

const RewrapResultRef = builder.objectRef<RewrapResult>("RewrapProviderKeysResult").implement({
  fields: (t) => ({
    rewrapped: t.exposeInt("rewrapped", {
      description: "How many keys moved to the current key-encryption key.",
    }),
    kekId: t.exposeString("kekId", { description: "The current key-encryption key's id." }),
  }),
});

const SetProviderKeyInput = builder.inputType("SetProviderKeyInput", {
  fields: (t) => ({
    accountId: t.id({ required: true }),
    providerId: t.id({ required: true }),
    apiKey: t.string({
      required: true,
      description: `The provider key: ${MIN_PROVIDER_KEY_LENGTH} to ${MAX_PROVIDER_KEY_LENGTH} ` +
        "printable ASCII characters without whitespace (surrounding whitespace is trimmed).",
    }),
  }),
});

const DeleteProviderKeyInput = builder.inputType("DeleteProviderKeyInput", {
  fields: (t) => ({ id: t.id({ required: true }) }),
});

builder.queryField("providerKeys", (t) =>
  t.connection(
    {
      type: ProviderKeyRef,
      description: "An account's provider keys, oldest first (first/last 1..200, default 50), " +
        "for its viewers and up.",
      args: { accountId: t.arg.id({ required: true }) },
      resolve: (_root, args, ctx) =>
        keysetConnection(
          args,
          { defaultSize: 50, maxSize: 200 },
          providerKeyCursor,
          (page) => listProviderKeys(ctx.db, args.accountId, page, { actor: ctx.actor }),
        ),
    },
    { name: "ProviderKeyConnection" },
    { name: "ProviderKeyEdge" },
  ));

builder.mutationField("setProviderKey", (t) =>
  t.field({
    type: ProviderKeyRef,
    description: "Stores an account's key for a provider, replacing the one it had. Admins " +
      "and owners of the account.",
    errors: { types: [InvalidInputError, NotFoundError, ForbiddenError] },
    args: { input: t.arg({ type: SetProviderKeyInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      setProviderKey(ctx.db, input, {
        actor: ctx.actor,
        keyring: ctx.keys.keyring,
        audit: auditMeta(ctx),
      }),
  }));

builder.mutationField("deleteProviderKey", (t) =>
  t.field({
    type: ProviderKeyRef,
    description: "Deletes a provider key and returns it. Admins and owners of its account.",
    errors: { types: [NotFoundError, ForbiddenError] },
    args: { input: t.arg({ type: DeleteProviderKeyInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      deleteProviderKey(ctx.db, input, { actor: ctx.actor, audit: auditMeta(ctx) }),
  }));

builder.mutationField("rewrapProviderKeys", (t) =>
  t.field({
    type: RewrapResultRef,
    description: "Re-wraps every provider key under the current key-encryption key and " +
      "says how many moved (keys already under it are left alone). The rotation: set the " +
      "new TOLLGATE_KEK with the old one in TOLLGATE_KEK_PREVIOUS, run this, then drop the old. " +
      "Operators only.",
    errors: { types: [UnreadableProviderKeyError, ForbiddenError] },
    resolve: (_root, _args, ctx) =>
      rewrapProviderKeys(ctx.db, {
        actor: ctx.actor,
        keyring: ctx.keys.keyring,
        audit: auditMeta(ctx),
      }),
  }));
