/** Reading usage out of OpenAI-shaped bodies, and estimating it when missing. */
import type { TokenUsage } from "../../schema/money.ts";
import { countTokens } from "./tokens.ts";

/** Usage from an OpenAI `usage` object, or null when absent or malformed. */
export function parseUsage(value: unknown): TokenUsage | null {
  if (!value || typeof value !== "object") return null;
  const u = value as Record<string, unknown>;
  const prompt = u.prompt_tokens;
  const completion = u.completion_tokens;
  if (typeof prompt !== "number" || typeof completion !== "number") return null;
  const details = u.prompt_tokens_details as Record<string, unknown> | null | undefined;
  const cached = typeof details?.cached_tokens === "number" ? details.cached_tokens : 0;
  return { promptTokens: prompt, completionTokens: completion, cachedTokens: cached };
}

/** The generated text of streamed chat chunks (content and tool-call arguments). */
export function streamedText(events: readonly string[]): string {
  let text = "";
  for (const data of events) {
    let chunk: { choices?: { delta?: Record<string, unknown> }[] };
    try {
      chunk = JSON.parse(data);
    } catch {
      continue;
    }
    for (const choice of chunk.choices ?? []) {
      const delta = choice.delta ?? {};
      if (typeof delta.content === "string") text += delta.content;
      if (typeof delta.refusal === "string") text += delta.refusal;
      if (Array.isArray(delta.tool_calls)) {
        for (
          const call of delta.tool_calls as { function?: { name?: string; arguments?: string } }[]
        ) {
          text += (call.function?.name ?? "") + (call.function?.arguments ?? "");
        }
      }
    }
  }
  return text;
}

/** Estimated completion tokens of a stream that ended without usage. */
export function estimateStreamedTokens(events: readonly string[]): number {
  return countTokens(streamedText(events));
}
