/**
 * An OpenAI chat completions body as an Anthropic Messages API body.
 *
 * - max_completion_tokens ?? max_tokens ?? DEFAULT_MAX_TOKENS → max_tokens
 *   (Anthropic requires it); stop → stop_sequences; temperature and top_p pass
 *   as they are (Anthropic accepts temperature 0–1 and rejects more, with a
 *   400); user (or safety_identifier) → metadata.user_id.
 * - response_format json_object → an instruction appended to `system`;
 *   json_schema → a response tool (tools.ts).
 * - Fields whose loss would change the answer (n > 1, logprobs, top_logprobs,
 *   audio output, legacy functions) are refused with a 400 naming the field.
 * - Dropped without a word, as hints Anthropic has no use for: seed,
 *   frequency_penalty, presence_penalty, logit_bias, reasoning_effort,
 *   service_tier, store, metadata, prediction, stream_options (the usage
 *   chunk is built from Anthropic's own usage events).
 */
import { unsupportedParam } from "./errors.ts";
import { translateMessages } from "./messages.ts";
import { type ResponseSchema, translateTools } from "./tools.ts";

export const DEFAULT_MAX_TOKENS = 4096;

export const JSON_OBJECT_INSTRUCTION =
  "Respond with a single valid JSON object and nothing else: no text before or after it, no code fences.";

export interface MessagesRequest {
  body: Record<string, unknown>;
  /** The answer is the response tool's input (a json_schema response_format). */
  structured: boolean;
}

type Json = Record<string, unknown>;

export function toMessagesRequest(chat: Json, options: { stream: boolean }): MessagesRequest {
  refuseUnsupported(chat);
  const format = responseFormat(chat.response_format);
  const { system, messages } = translateMessages(
    Array.isArray(chat.messages) ? chat.messages : [],
  );
  const { tools, tool_choice, structured } = translateTools(chat, format.schema);

  const body: Json = {
    model: chat.model,
    max_tokens: chat.max_completion_tokens ?? chat.max_tokens ?? DEFAULT_MAX_TOKENS,
  };
  const instructions = [system, format.instruction].filter(Boolean).join("\n\n");
  if (instructions) body.system = instructions;
  body.messages = messages;
  if (tools) body.tools = tools;
  if (tool_choice) body.tool_choice = tool_choice;
  const stop = stopSequences(chat.stop);
  if (stop) body.stop_sequences = stop;
  if (typeof chat.temperature === "number") body.temperature = chat.temperature;
  if (typeof chat.top_p === "number") body.top_p = chat.top_p;
  const user = chat.user ?? chat.safety_identifier;
  if (typeof user === "string" && user) body.metadata = { user_id: user };
  if (options.stream) body.stream = true;
  return { body, structured };
}

function refuseUnsupported(chat: Json): void {
  if (typeof chat.n === "number" && chat.n > 1) {
    throw unsupportedParam(
      "n",
      `Cannot return n = ${chat.n} choices: an Anthropic provider answers with one; set n to 1.`,
    );
  }
  if (chat.logprobs === true) {
    throw unsupportedParam(
      "logprobs",
      "Cannot return logprobs: an Anthropic provider does not report them.",
    );
  }
  if (typeof chat.top_logprobs === "number" && chat.top_logprobs > 0) {
    throw unsupportedParam(
      "top_logprobs",
      "Cannot return top_logprobs: an Anthropic provider does not report them.",
    );
  }
  const modalities = Array.isArray(chat.modalities) ? chat.modalities : [];
  if ((chat.audio !== undefined && chat.audio !== null) || modalities.includes("audio")) {
    const param = modalities.includes("audio") ? "modalities" : "audio";
    throw unsupportedParam(
      param,
      "Cannot answer with audio: an Anthropic provider answers with text.",
    );
  }
  for (const legacy of ["functions", "function_call"]) {
    if (chat[legacy] !== undefined && chat[legacy] !== null) {
      throw unsupportedParam(
        legacy,
        `Cannot translate ${legacy} for an Anthropic provider: use tools and tool_choice instead.`,
      );
    }
  }
}

function responseFormat(
  value: unknown,
): { instruction?: string; schema: ResponseSchema | null } {
  const format = value as Json | null | undefined;
  if (!format || format.type === "text") return { schema: null };
  if (format.type === "json_object") return { instruction: JSON_OBJECT_INSTRUCTION, schema: null };
  if (format.type === "json_schema") {
    const spec = (format.json_schema ?? {}) as Json;
    const schema = (spec.schema as Json | undefined) ?? { type: "object" };
    return {
      schema: typeof spec.description === "string"
        ? { schema, description: spec.description }
        : { schema },
    };
  }
  throw unsupportedParam(
    "response_format",
    `Cannot translate response_format type "${String(format.type)}" for an Anthropic provider.`,
  );
}

function stopSequences(stop: unknown): string[] | undefined {
  if (typeof stop === "string") return stop ? [stop] : undefined;
  if (!Array.isArray(stop)) return undefined;
  const sequences = stop.filter((s): s is string => typeof s === "string" && s.length > 0);
  return sequences.length > 0 ? sequences : undefined;
}
