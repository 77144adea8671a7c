/** Anthropic's `stop_reason` as an OpenAI `finish_reason`. */

export type FinishReason = "stop" | "length" | "tool_calls" | "content_filter";

/**
 * `pause_turn` (a server tool paused a long turn) has no OpenAI equivalent:
 * it ends this reply normally, so it maps to "stop". An unknown or missing
 * reason maps to "stop" too, so a new reason upstream never breaks a client.
 */
export function mapStopReason(reason: string | null | undefined): FinishReason {
  switch (reason) {
    case "max_tokens":
    case "model_context_window_exceeded":
      return "length";
    case "tool_use":
      return "tool_calls";
    case "refusal":
      return "content_filter";
    default:
      return "stop";
  }
}
