/**
 * An OpenAI chat.completion as an Anthropic Message. Only the first choice is
 * read. Its text (or, failing that, its refusal) is one text block, left out
 * when empty and there are tool calls; each tool call is a tool_use block
 * whose input is the parsed arguments (tool_arguments.ts keeps what does not
 * parse). Reasoning fields (DeepSeek's reasoning_content) are dropped: the
 * request never asks for thinking. The schema is deliberately partial: a new
 * field upstream never breaks a reply.
 */
import { z } from "zod";
import { GatewayError } from "../errors.ts";
import { parseUsage } from "../metering/usage.ts";
import { mapFinishReason, type StopReason } from "../providers/anthropic/finish_reason.ts";
import { toInput } from "./tool_arguments.ts";

export interface MessageOptions {
  /** The model as the client named it. */
  model: string;
  /** The message id; a new `msg_…` when absent. */
  id?: string;
}

export interface AnthropicUsage {
  input_tokens: number;
  output_tokens: number;
  cache_read_input_tokens: number;
  cache_creation_input_tokens: number;
}

const choiceSchema = z.looseObject({
  message: z.looseObject({
    content: z.union([z.string(), z.array(z.looseObject({ text: z.unknown() }))]).nullish(),
    refusal: z.string().nullish(),
    tool_calls: z.array(z.looseObject({
      id: z.string().nullish(),
      function: z.looseObject({ name: z.string().nullish(), arguments: z.unknown() }).nullish(),
    })).nullish(),
  }),
  finish_reason: z.string().nullish(),
});

const completionSchema = z.looseObject({
  choices: z.array(choiceSchema).min(1),
  usage: z.unknown(),
});

export function toAnthropicMessage(
  chat: Record<string, unknown>,
  options: MessageOptions,
): Record<string, unknown> {
  const parsed = completionSchema.safeParse(chat);
  if (!parsed.success) {
    throw new GatewayError(
      "upstream_error",
      502,
      "The provider sent a body that is not a chat completion.",
      { cause: parsed.error },
    );
  }
  const { message, finish_reason } = parsed.data.choices[0]!;
  const calls = (message.tool_calls ?? []).map((call, i) => ({
    type: "tool_use",
    id: call.id || toolUseId(i),
    name: call.function?.name ?? "",
    input: toInput(call.function?.arguments),
  }));
  const text = textOf(message.content) || (message.refusal ?? "");
  return {
    id: options.id ?? newMessageId(),
    type: "message",
    role: "assistant",
    model: options.model,
    content: text || calls.length === 0 ? [{ type: "text", text }, ...calls] : calls,
    stop_reason: stopReason(finish_reason, calls.length > 0),
    stop_sequence: null,
    usage: anthropicUsage(parsed.data.usage),
  };
}

export function newMessageId(): string {
  return `msg_${crypto.randomUUID().replaceAll("-", "")}`;
}

/** An id for a tool call the upstream sent without one. */
export function toolUseId(index: number): string {
  return `toolu_${index}_${crypto.randomUUID().replaceAll("-", "").slice(0, 16)}`;
}

/**
 * The stop reason, agreeing with the content: clients loop while it is
 * "tool_use", so it is "tool_use" exactly when a tool was called (some vendors
 * end tool calls with "stop").
 */
export function stopReason(finish: string | null | undefined, calledTools: boolean): StopReason {
  const reason = mapFinishReason(finish);
  if (calledTools && reason === "end_turn") return "tool_use";
  if (!calledTools && reason === "tool_use") return "end_turn";
  return reason;
}

/**
 * OpenAI's usage (chat shape, DeepSeek's cache hits included) in Anthropic's
 * terms: cache reads are counted apart from input_tokens; OpenAI-compatible
 * caches report no writes. Missing usage is all zeros.
 */
export function anthropicUsage(usage: unknown): AnthropicUsage {
  const counts = parseUsage(usage);
  const cached = counts?.cachedTokens ?? 0;
  return {
    input_tokens: Math.max(0, (counts?.promptTokens ?? 0) - cached),
    output_tokens: counts?.completionTokens ?? 0,
    cache_read_input_tokens: cached,
    cache_creation_input_tokens: 0,
  };
}

function textOf(content: string | { text: unknown }[] | null | undefined): string {
  if (typeof content === "string") return content;
  return (content ?? []).map((part) => typeof part.text === "string" ? part.text : "").join("");
}
