/**
 * Anthropic's `stop_reason` and OpenAI's `finish_reason`: one table, read both
 * ways (this adapter reads it Anthropic → OpenAI, gateway/translate/ the other
 * way).
 */

export type FinishReason = "stop" | "length" | "tool_calls" | "content_filter";

export type StopReason =
  | "end_turn"
  | "max_tokens"
  | "tool_use"
  | "refusal"
  | "stop_sequence"
  | "pause_turn"
  | "model_context_window_exceeded";

/**
 * The first row of each finish reason is the stop reason it maps back to.
 * `pause_turn` (a server tool paused a long turn) has no OpenAI equivalent: it
 * ends this reply normally, so it maps to "stop".
 */
const REASONS: readonly (readonly [StopReason, FinishReason])[] = [
  ["end_turn", "stop"],
  ["max_tokens", "length"],
  ["tool_use", "tool_calls"],
  ["refusal", "content_filter"],
  ["stop_sequence", "stop"],
  ["pause_turn", "stop"],
  ["model_context_window_exceeded", "length"],
];

/** An unknown or missing reason maps to "stop", so a new reason upstream never breaks a client. */
export function mapStopReason(reason: string | null | undefined): FinishReason {
  return REASONS.find(([stop]) => stop === reason)?.[1] ?? "stop";
}

/**
 * OpenAI's finish reason as Anthropic's: the legacy `function_call` is a tool
 * call; an unknown or missing reason is "end_turn". OpenAI does not say which
 * stop sequence matched, so "stop" is always "end_turn".
 */
export function mapFinishReason(reason: string | null | undefined): StopReason {
  if (reason === "function_call") return "tool_use";
  return REASONS.find(([, finish]) => finish === reason)?.[0] ?? "end_turn";
}
