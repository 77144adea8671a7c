/**
 * The one contract every provider adapter implements. Adapters speak the
 * operation's dialect to the gateway, whatever they speak upstream: for the
 * OpenAI operations a non-streaming reply is OpenAI-shaped JSON, a streaming
 * reply the OpenAI-shaped SSE body (chat and completion chunks ending in
 * `data: [DONE]`; Responses API events); for `messages` both are Anthropic's
 * Messages API as it is, which only Anthropic upstreams serve natively (the
 * /v1/messages route translates for the others). Upstream failures are
 * thrown as GatewayErrors with a status the caller can act on (retryable or
 * not). An adapter never retries: fallback is the router's job.
 */
import type { ProviderKind } from "../../schema/database.ts";

/** An endpoint, by the path under /v1 it is served on. */
export type Operation = "chat" | "completions" | "embeddings" | "images" | "responses" | "messages";

export const OPERATION_PATHS: Readonly<Record<Operation, string>> = {
  chat: "/chat/completions",
  completions: "/completions",
  embeddings: "/embeddings",
  images: "/images/generations",
  responses: "/responses",
  messages: "/messages",
};

export interface UpstreamCall {
  op: Operation;
  /** The caller's body with `model` set to the upstream name. */
  body: Record<string, unknown>;
  stream: boolean;
  signal: AbortSignal;
  /** Caller headers an upstream of the same dialect should see (anthropic-version, -beta). */
  headers?: Readonly<Record<string, string>>;
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

/**
 * What adapters read of an upstream's answer: fetch's Response has it all,
 * and so does the pooled client's lighter answer (http/answer.ts).
 */
export type UpstreamResponse = Pick<
  Response,
  "ok" | "status" | "headers" | "body" | "text" | "json"
>;

/** How adapters call upstreams: fetch, or anything taking the same arguments. */
export type UpstreamFetch = (url: string, init: RequestInit) => Promise<UpstreamResponse>;

export interface ProviderDeps {
  fetch: UpstreamFetch;
}
