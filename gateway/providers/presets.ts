/**
 * One config literal per OpenAI-compatible vendor: its base URL (from
 * schema/provider_presets.ts), how it takes the credential, which operations
 * it serves, and its quirks as data. Each quirk is applied in one place under
 * quirks/: request quirks rewrite the body before it is sent, stream and JSON
 * quirks rewrite the answer into OpenAI's shape. A preset with no response
 * quirks keeps the upstream bytes as they are (the hot path stays a pass-through).
 *
 * What the comments call "confirmed" was read in the vendor's documentation or
 * in a public bug report showing the vendor's wire format; "assumed" was not,
 * and is the conservative choice (renaming `max_completion_tokens` or
 * `developer` is harmless for a vendor that also takes the OpenAI names).
 */
import { PROVIDER_PRESETS, type ProviderPreset } from "../../schema/provider_presets.ts";
import type { Operation } from "./provider.ts";

/** How the credential is sent: `header: prefix + credential`. */
export interface AuthScheme {
  header: string;
  prefix: string;
}

export const BEARER: AuthScheme = { header: "authorization", prefix: "Bearer " };

export interface PresetQuirks {
  /** Send `max_completion_tokens` as `max_tokens` (the vendor knows only the older name). */
  maxTokensField?: "max_tokens";
  /** Send messages of role `developer` as `system`. */
  developerRole?: "system";
  /** Do not send `stream_options` (the vendor sends usage unasked). */
  dropStreamOptions?: boolean;
  /** Usage comes inside a choice (`choices[0].usage`), not at the top level. */
  usageInChoice?: boolean;
  /**
   * Usage rides on chunks that also carry choices (the last one, or every one
   * with running totals) instead of a usage-only chunk before `[DONE]`.
   */
  usageWithChoices?: boolean;
  /**
   * Chunks lack `object`, or the last frame is a `chat.completion` with a
   * `message` instead of a `delta`; non-stream bodies may lack `object`.
   */
  chunkObject?: boolean;
  /** `finish_reason: ""` instead of null, `delta.role: ""` instead of absent. */
  emptyStrings?: boolean;
  /** Tool-call deltas come without `index`. */
  toolCallIndex?: boolean;
  /** A stream that called tools ends with finish_reason "stop", not "tool_calls". */
  toolCallsFinishReason?: boolean;
}

export interface VendorPreset {
  name: ProviderPreset;
  label: string;
  baseUrl: string;
  auth: AuthScheme;
  operations: readonly Operation[];
  quirks: PresetQuirks;
}

const ALL_OPERATIONS: readonly Operation[] = [
  "chat",
  "completions",
  "embeddings",
  "images",
  "responses",
];

/** The request quirks of every vendor that is not OpenAI (assumed, harmless where unneeded). */
const OLDER_NAMES: PresetQuirks = { maxTokensField: "max_tokens", developerRole: "system" };

function preset(
  name: ProviderPreset,
  spec: Pick<VendorPreset, "operations" | "quirks"> & { auth?: AuthScheme },
): VendorPreset {
  const { label, baseUrl } = PROVIDER_PRESETS[name];
  return { name, label, baseUrl, ...spec, auth: spec.auth ?? BEARER };
}

export const VENDOR_PRESETS: Readonly<Record<ProviderPreset, VendorPreset>> = {
  // The reference dialect: everything passes through untouched.
  openai: preset("openai", { operations: ALL_OPERATIONS, quirks: {} }),

  // Confirmed: chat, and FIM completions (beta, documented under the base URL
  // https://api.deepseek.com/beta, so a provider serving FIM sets that base URL);
  // `stream_options.include_usage` is documented; the docs say the usage rides
  // on the last chunk with the finish_reason, with no separate usage-only chunk.
  deepseek: preset("deepseek", {
    operations: ["chat", "completions"],
    quirks: { ...OLDER_NAMES, usageWithChoices: true },
  }),

  // Confirmed: chat and embeddings (text-embedding-v3/v4) in DashScope's
  // compatible mode. Assumed: an OpenAI-shaped stream (a usage-only chunk with
  // `choices: []` when asked), so it passes through; completions (Qwen-Coder
  // FIM only) and images are left out.
  qwen: preset("qwen", { operations: ["chat", "embeddings"], quirks: OLDER_NAMES }),

  // Confirmed: chat only; the stream carries the usage in the final choice
  // (`choices[0].usage`). Assumed: `stream_options` is not documented, and the
  // usage comes unasked, so it is not sent.
  kimi: preset("kimi", {
    operations: ["chat"],
    quirks: { ...OLDER_NAMES, dropStreamOptions: true, usageInChoice: true },
  }),

  // Confirmed: chat, embeddings and images (CogView) under /api/paas/v4; the
  // documented stream has no `object` field and puts finish_reason and usage
  // on the last chunk. Assumed: `stream_options` (undocumented) is not sent;
  // non-stream bodies may lack `object` too.
  glm: preset("glm", {
    operations: ["chat", "embeddings", "images"],
    quirks: { ...OLDER_NAMES, dropStreamOptions: true, usageWithChoices: true, chunkObject: true },
  }),

  // Confirmed (bug reports with wire captures): chunks carry placeholder usage
  // ({"total_tokens":0,...}) and sometimes `delta.role: ""`; the stream closes
  // with a `chat.completion` frame whose choice has a `message` (the whole
  // answer again) and the only real usage. Assumed: chat only; `stream_options`
  // is not sent.
  minimax: preset("minimax", {
    operations: ["chat"],
    quirks: {
      ...OLDER_NAMES,
      dropStreamOptions: true,
      usageWithChoices: true,
      chunkObject: true,
      emptyStrings: true,
    },
  }),

  // Confirmed: the documented stream puts running usage on every chunk, with
  // `finish_reason: ""` and `delta.role: ""` until the last; its tool-call
  // delta lists no `index`. Assumed: chat only (its image API is not claimed
  // here); `stream_options` is not sent.
  stepfun: preset("stepfun", {
    operations: ["chat"],
    quirks: {
      ...OLDER_NAMES,
      dropStreamOptions: true,
      usageWithChoices: true,
      emptyStrings: true,
      toolCallIndex: true,
    },
  }),

  // Confirmed (bug reports with wire captures): streamed tool calls come
  // without `index` and end with finish_reason "stop"; usage rides on chunks
  // with choices, and the whole answer may come in one chunk. Assumed:
  // embeddings (widely used through this endpoint, not re-read here); images
  // are left out until confirmed. `stream_options` is accepted.
  gemini: preset("gemini", {
    operations: ["chat", "embeddings"],
    quirks: {
      ...OLDER_NAMES,
      usageWithChoices: true,
      toolCallIndex: true,
      toolCallsFinishReason: true,
    },
  }),
};

/** The preset of that name; null for none or a name this gateway does not know. */
export function presetFor(name: string | null): VendorPreset | null {
  if (!name || !Object.hasOwn(VENDOR_PRESETS, name)) return null;
  return VENDOR_PRESETS[name as ProviderPreset];
}

/** Whether a chat stream must be re-written; false keeps it a zero-copy pass-through. */
export function rewritesStream(quirks: PresetQuirks): boolean {
  return Boolean(
    quirks.usageInChoice || quirks.usageWithChoices || quirks.chunkObject ||
      quirks.emptyStrings || quirks.toolCallIndex || quirks.toolCallsFinishReason,
  );
}

/** Whether a non-stream chat body must be re-written. */
export function rewritesJson(quirks: PresetQuirks): boolean {
  return Boolean(quirks.usageInChoice || quirks.chunkObject || quirks.toolCallsFinishReason);
}
