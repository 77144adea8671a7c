/** Non-stream chat bodies of vendors whose JSON differs from OpenAI's, made OpenAI-shaped. */
import type { PresetQuirks } from "../presets.ts";
import { isObject, type Json } from "./chunk.ts";

/** Rewrites a chat.completion body in place; true when it changed. */
export function fixChatJson(json: Json, quirks: PresetQuirks): boolean {
  let changed = false;
  const choices = Array.isArray(json.choices) ? json.choices.filter(isObject) : [];
  if (quirks.usageInChoice) {
    for (const choice of choices) {
      if (!("usage" in choice)) continue;
      if (!isObject(json.usage)) json.usage = choice.usage;
      delete choice.usage;
      changed = true;
    }
  }
  if (quirks.chunkObject && json.object !== "chat.completion") {
    json.object = "chat.completion";
    changed = true;
  }
  if (quirks.toolCallsFinishReason) {
    for (const choice of choices) {
      const calls = isObject(choice.message) ? choice.message.tool_calls : undefined;
      if (choice.finish_reason === "stop" && Array.isArray(calls) && calls.length > 0) {
        choice.finish_reason = "tool_calls";
        changed = true;
      }
    }
  }
  return changed;
}
