/**
 * Request quirks: the body as a vendor understands it. The caller's body is
 * never changed; a copy is made only when a quirk applies.
 */
import type { PresetQuirks } from "../presets.ts";

export function applyRequestQuirks(
  body: Record<string, unknown>,
  quirks: PresetQuirks,
): Record<string, unknown> {
  let out = body;
  const copy = () => (out === body ? (out = { ...body }) : out);

  if (quirks.maxTokensField === "max_tokens" && body.max_completion_tokens !== undefined) {
    const sent = copy();
    sent.max_tokens ??= body.max_completion_tokens;
    delete sent.max_completion_tokens;
  }
  if (quirks.developerRole === "system" && Array.isArray(body.messages)) {
    const messages = body.messages.map((message: unknown) =>
      isDeveloper(message) ? { ...message, role: "system" } : message
    );
    if (messages.some((message, i) => message !== (body.messages as unknown[])[i])) {
      copy().messages = messages;
    }
  }
  if (quirks.dropStreamOptions && body.stream_options !== undefined) {
    delete copy().stream_options;
  }
  return out;
}

function isDeveloper(message: unknown): message is Record<string, unknown> {
  return typeof message === "object" && message !== null &&
    (message as { role?: unknown }).role === "developer";
}
