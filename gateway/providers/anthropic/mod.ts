/**
 * The `anthropic` provider: Anthropic's native Messages API (POST
 * {baseUrl}/messages). It serves two operations:
 * - `messages`, Anthropic's own dialect, passed through as it is (the
 *   caller's anthropic-version and anthropic-beta go along);
 * - `chat`, spoken to the gateway in the OpenAI dialect: request.ts
 *   translates the body there, response.ts and stream.ts translate the answer
 *   back.
 * HTTP failures map like any upstream's (upstream_error.ts). The other OpenAI
 * operations have no Messages API equivalent, so the router never sends them
 * here.
 */
import { ANTHROPIC_BASE_URL } from "../../../schema/provider_presets.ts";
import { GatewayError } from "../../errors.ts";
import type { ProviderPolicy } from "../../policy/snapshot.ts";
import type {
  Provider,
  ProviderDeps,
  UpstreamCall,
  UpstreamReply,
  UpstreamResponse,
} from "../provider.ts";
import { upstreamHttpError, upstreamNetworkError } from "../upstream_error.ts";
import { malformedReply } from "./errors.ts";
import { toMessagesRequest } from "./request.ts";
import { toChatCompletion } from "./response.ts";
import { translateStream } from "./stream.ts";

export const ANTHROPIC_VERSION = "2023-06-01";

/** Caller headers a pass-through keeps: the API version and beta features it asked for. */
export const PASSED_HEADERS = ["anthropic-version", "anthropic-beta"] as const;

function emptyStream(provider: string): GatewayError {
  return new GatewayError("upstream_error", 502, `Provider "${provider}" sent an empty stream.`);
}

export function createAnthropicProvider(config: ProviderPolicy, deps: ProviderDeps): Provider {
  const url = (config.baseUrl ?? ANTHROPIC_BASE_URL).replace(/\/+$/, "") + "/messages";
  const headers: Record<string, string> = {
    "content-type": "application/json",
    "anthropic-version": ANTHROPIC_VERSION,
  };
  if (config.credential) headers["x-api-key"] = config.credential;
  const streamHeaders = { ...headers, accept: "text/event-stream" };

  async function post(
    call: UpstreamCall,
    body: unknown,
    sent: Record<string, string>,
  ): Promise<UpstreamResponse> {
    let response: UpstreamResponse;
    try {
      response = await deps.fetch(url, {
        method: "POST",
        headers: sent,
        body: JSON.stringify(body),
        signal: call.signal,
      });
    } catch (error) {
      throw upstreamNetworkError(error, config.name);
    }
    if (!response.ok) throw await upstreamHttpError(response, config.name, config.byok);
    return response;
  }

  async function passThrough(call: UpstreamCall): Promise<UpstreamReply> {
    const sent: Record<string, string> = { ...(call.stream ? streamHeaders : headers) };
    for (const name of PASSED_HEADERS) {
      const value = call.headers?.[name];
      if (value) sent[name] = value;
    }
    const response = await post(call, call.body, sent);
    if (call.stream) {
      if (!response.body) throw emptyStream(config.name);
      return { stream: true, body: response.body };
    }
    let text: string;
    try {
      text = await response.text();
    } catch (error) {
      throw upstreamNetworkError(error, config.name);
    }
    try {
      return { stream: false, text, json: JSON.parse(text) };
    } catch (error) {
      throw malformedReply(config.name, "a body", error);
    }
  }

  return {
    kind: "anthropic",
    supports: (op) => op === "chat" || op === "messages",
    async send(call: UpstreamCall): Promise<UpstreamReply> {
      if (call.op === "messages") return await passThrough(call);
      if (call.op !== "chat") {
        throw new GatewayError(
          "unsupported_operation",
          400,
          `Provider "${config.name}" (Anthropic) serves only chat completions.`,
          { retryable: false },
        );
      }
      const request = toMessagesRequest(call.body, { stream: call.stream });
      const response = await post(call, request.body, call.stream ? streamHeaders : headers);
      const created = Math.floor(Date.now() / 1000);

      if (call.stream) {
        if (!response.body) throw emptyStream(config.name);
        const streamOptions = call.body.stream_options as { include_usage?: unknown } | undefined;
        return {
          stream: true,
          body: translateStream(response.body, {
            provider: config.name,
            structured: request.structured,
            includeUsage: streamOptions?.include_usage === true,
            created,
          }),
        };
      }

      let upstream: unknown;
      try {
        upstream = JSON.parse(await response.text());
      } catch (error) {
        throw error instanceof SyntaxError
          ? malformedReply(config.name, "a body", error)
          : upstreamNetworkError(error, config.name);
      }
      const json = toChatCompletion(upstream, {
        provider: config.name,
        structured: request.structured,
        created,
      });
      return { stream: false, text: JSON.stringify(json), json };
    },
  };
}
