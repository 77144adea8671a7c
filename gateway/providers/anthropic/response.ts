/**
 * An Anthropic Message as an OpenAI chat.completion. Text blocks are joined
 * into the content; tool_use blocks become tool_calls; thinking blocks are
 * dropped (the request never asks for thinking, and OpenAI's chat format has
 * no field for it). With a json_schema response format the response tool's
 * input is the content (tools.ts). The schema is deliberately partial: a new
 * field or block type upstream never breaks a reply.
 */
import { z } from "zod";
import { mapStopReason } from "./finish_reason.ts";
import { malformedReply } from "./errors.ts";
import { RESPONSE_TOOL } from "./tools.ts";

const count = z.number().int().nonnegative().nullish();

const usageSchema = z.looseObject({
  input_tokens: count,
  output_tokens: count,
  cache_read_input_tokens: count,
  cache_creation_input_tokens: count,
});

export type AnthropicUsage = z.infer<typeof usageSchema>;

const messageSchema = z.looseObject({
  id: z.string(),
  model: z.string(),
  content: z.array(z.looseObject({
    type: z.string(),
    text: z.string().optional(),
    id: z.string().optional(),
    name: z.string().optional(),
    input: z.unknown().optional(),
  })),
  stop_reason: z.string().nullish(),
  usage: usageSchema,
});

export interface ChatUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: { cached_tokens: number };
}

/** Anthropic counts cache reads and writes apart from input_tokens; OpenAI's prompt has them all. */
export function chatUsage(usage: AnthropicUsage): ChatUsage {
  const cached = usage.cache_read_input_tokens ?? 0;
  const prompt = (usage.input_tokens ?? 0) + cached + (usage.cache_creation_input_tokens ?? 0);
  const completion = usage.output_tokens ?? 0;
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    prompt_tokens_details: { cached_tokens: cached },
  };
}

export interface ToolCall {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

export function toChatCompletion(
  json: unknown,
  options: { provider: string; structured: boolean; created: number },
): Record<string, unknown> {
  const parsed = messageSchema.safeParse(json);
  if (!parsed.success) throw malformedReply(options.provider, "a body", parsed.error);
  const message = parsed.data;
  let text = "";
  let answer: string | null = null;
  const toolCalls: ToolCall[] = [];
  for (const block of message.content) {
    if (block.type === "text") text += block.text ?? "";
    if (block.type !== "tool_use") continue;
    const args = JSON.stringify(block.input ?? {});
    if (options.structured && block.name === RESPONSE_TOOL) answer = args;
    else {
      toolCalls.push({
        id: block.id ?? "",
        type: "function",
        function: { name: block.name ?? "", arguments: args },
      });
    }
  }
  let finish = mapStopReason(message.stop_reason);
  if (finish === "tool_calls" && toolCalls.length === 0) finish = "stop";
  const content = answer ?? (text || (toolCalls.length > 0 ? null : ""));
  return {
    id: message.id,
    object: "chat.completion",
    created: options.created,
    model: message.model,
    choices: [{
      index: 0,
      message: {
        role: "assistant",
        content,
        refusal: null,
        ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}),
      },
      logprobs: null,
      finish_reason: finish,
    }],
    usage: chatUsage(message.usage),
  };
}
