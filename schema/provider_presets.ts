/**
 * The vendor presets an `openai_compat` provider can be configured from, by
 * name, with the base URL each uses when the provider row sets none. Both
 * planes agree on these names: the control plane validates them, the gateway
 * (gateway/providers/presets.ts) adds each vendor's auth and quirks.
 */
export const PROVIDER_PRESETS = {
  openai: { label: "OpenAI", baseUrl: "https://api.openai.com/v1" },
  deepseek: { label: "DeepSeek", baseUrl: "https://api.deepseek.com/v1" },
  qwen: { label: "Qwen (DashScope)", baseUrl: "https://dashscope.aliyuncs.com/compatible-mode/v1" },
  kimi: { label: "Kimi (Moonshot)", baseUrl: "https://api.moonshot.ai/v1" },
  glm: { label: "Zhipu GLM", baseUrl: "https://open.bigmodel.cn/api/paas/v4" },
  minimax: { label: "MiniMax", baseUrl: "https://api.minimax.io/v1" },
  stepfun: { label: "StepFun", baseUrl: "https://api.stepfun.com/v1" },
  gemini: {
    label: "Gemini (OpenAI-compatible)",
    baseUrl: "https://generativelanguage.googleapis.com/v1beta/openai",
  },
} as const;

export type ProviderPreset = keyof typeof PROVIDER_PRESETS;

export const PROVIDER_PRESET_NAMES = Object.keys(PROVIDER_PRESETS) as ProviderPreset[];

export function isProviderPreset(name: string): name is ProviderPreset {
  return Object.hasOwn(PROVIDER_PRESETS, name);
}

/** The Anthropic Messages API's base URL, for `anthropic` providers that set none. */
export const ANTHROPIC_BASE_URL = "https://api.anthropic.com/v1";
