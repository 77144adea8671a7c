/** Reading usage out of OpenAI-shaped bodies, and estimating it when missing. */
import type { TokenUsage } from "../../schema/money.ts";
import { countTokens } from "./tokens.ts";

/**
 * Usage from an OpenAI `usage` object, or null when absent or malformed. It
 * reads both shapes: chat, completions and embeddings (`prompt_tokens`,
 * `completion_tokens`, absent for embeddings) and the Responses and Images
 * APIs (`input_tokens`, `output_tokens`), and Anthropic's Messages API, whose
 * `input_tokens` leave out the cache reads and writes that it counts apart.
 */
export function parseUsage(value: unknown): TokenUsage | null {
  if (!value || typeof value !== "object") return null;
  const u = value as Record<string, unknown>;
  const prompt = u.prompt_tokens ?? u.input_tokens;
  const completion = u.completion_tokens ?? u.output_tokens ?? 0;
  if (!isCount(prompt) || !isCount(completion)) return null;
  const details = (u.prompt_tokens_details ?? u.input_tokens_details) as
    | Record<string, unknown>
    | null
    | undefined;
  // DeepSeek reports cache hits at the top level instead of in the details.
  const cached = isCount(details?.cached_tokens)
    ? details.cached_tokens
    : isCount(u.prompt_cache_hit_tokens)
    ? u.prompt_cache_hit_tokens
    : 0;
  // Anthropic counts cache reads and cache writes apart from input_tokens.
  const cacheRead = u.cache_read_input_tokens;
  const cacheWrite = u.cache_creation_input_tokens;
  if (isCount(cacheRead) || isCount(cacheWrite)) {
    const read = isCount(cacheRead) ? cacheRead : 0;
    const write = isCount(cacheWrite) ? cacheWrite : 0;
    return {
      promptTokens: prompt + read + write,
      completionTokens: completion,
      cachedTokens: read,
    };
  }
  return { promptTokens: prompt, completionTokens: completion, cachedTokens: cached };
}

function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 0;
}

/**
 * The generated text of streamed events: chat deltas (content, refusals and
 * tool-call arguments), legacy completion text, Responses API deltas and
 * Anthropic content block deltas.
 */
export function streamedText(events: readonly string[]): string {
  let text = "";
  for (const data of events) {
    let chunk: {
      type?: string;
      delta?: unknown;
      choices?: { delta?: Record<string, unknown>; text?: unknown }[];
    };
    try {
      chunk = JSON.parse(data);
    } catch {
      continue;
    }
    if (typeof chunk.type === "string") {
      // Responses API: output text, refusal and function-call argument deltas.
      if (chunk.type.endsWith(".delta") && typeof chunk.delta === "string") text += chunk.delta;
      // Anthropic: text, tool input and thinking deltas.
      if (chunk.type === "content_block_delta" && chunk.delta && typeof chunk.delta === "object") {
        const delta = chunk.delta as Record<string, unknown>;
        for (const field of ["text", "partial_json", "thinking"]) {
          if (typeof delta[field] === "string") text += delta[field];
        }
      }
      continue;
    }
    for (const choice of chunk.choices ?? []) {
      if (typeof choice.text === "string") text += choice.text;
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

/** The generated text of a non-streaming reply, for estimating missing usage. */
export function replyText(json: Record<string, unknown>): string {
  let text = "";
  const choices = Array.isArray(json.choices) ? json.choices : [];
  for (const choice of choices as { message?: Record<string, unknown>; text?: unknown }[]) {
    if (typeof choice.text === "string") text += choice.text;
    const message = choice.message ?? {};
    if (typeof message.content === "string") text += message.content;
    if (Array.isArray(message.tool_calls)) text += JSON.stringify(message.tool_calls);
  }
  // Anthropic: text and tool_use content blocks.
  if (json.type === "message" && Array.isArray(json.content)) {
    for (const block of json.content as { text?: unknown; input?: unknown }[]) {
      if (typeof block.text === "string") text += block.text;
      if (block.input !== undefined) text += JSON.stringify(block.input);
    }
  }
  const output = Array.isArray(json.output) ? json.output : [];
  for (const item of output as { content?: { text?: unknown }[]; arguments?: unknown }[]) {
    if (typeof item.arguments === "string") text += item.arguments;
    for (const part of item.content ?? []) if (typeof part.text === "string") text += part.text;
  }
  return text;
}
