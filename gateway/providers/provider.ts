/**
 * The one contract every provider adapter implements. Adapters speak the
 * OpenAI chat-completions dialect to the gateway: a non-streaming reply is
 * OpenAI-shaped JSON text, a streaming reply is an OpenAI-shaped SSE body.
 * Upstream failures are thrown as GatewayErrors with a status the caller can
 * act on (retryable or not).
 */
import type { ProviderKind } from "../../schema/database.ts";

export interface ChatCall {
  /** The caller's body with `model` set to the upstream name. */
  body: Record<string, unknown>;
  stream: boolean;
  signal: AbortSignal;
}

export type ChatReply =
  | { stream: false; text: string; json: Record<string, unknown> }
  | { stream: true; body: ReadableStream<Uint8Array> };

export interface Provider {
  readonly kind: ProviderKind;
  chat(call: ChatCall): Promise<ChatReply>;
}

export interface ProviderDeps {
  fetch: typeof fetch;
}
