/**
 * The one contract every provider adapter implements. Adapters speak the
 * OpenAI dialect to the gateway, whatever they speak upstream: a
 * non-streaming reply is OpenAI-shaped JSON for the operation, a streaming
 * reply is the OpenAI-shaped SSE body for it (chat and completion chunks
 * ending in `data: [DONE]`; Responses API events). Upstream failures are
 * thrown as GatewayErrors with a status the caller can act on (retryable or
 * not). An adapter never retries: fallback is the router's job.
 */
import type { ProviderKind } from "../../schema/database.ts";

/** An OpenAI endpoint, by the path under /v1 it is served on. */
export type Operation = "chat" | "completions" | "embeddings" | "images" | "responses";

export const OPERATION_PATHS: Readonly<Record<Operation, string>> = {
  chat: "/chat/completions",
  completions: "/completions",
  embeddings: "/embeddings",
  images: "/images/generations",
  responses: "/responses",
};

export interface UpstreamCall {
  op: Operation;
  /** The caller's body with `model` set to the upstream name. */
  body: Record<string, unknown>;
  stream: boolean;
  signal: AbortSignal;
}

export type UpstreamReply =
  | { stream: false; text: string; json: Record<string, unknown> }
  | { stream: true; body: ReadableStream<Uint8Array> };

export interface Provider {
  readonly kind: ProviderKind;
  /** Whether this adapter (and its upstream) serves `op`. */
  supports(op: Operation): boolean;
  send(call: UpstreamCall): Promise<UpstreamReply>;
}

export interface ProviderDeps {
  fetch: typeof fetch;
}
