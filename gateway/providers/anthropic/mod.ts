/**
 * The `anthropic` provider: Anthropic's native Messages API (POST
 * {baseUrl}/messages), spoken to the gateway in the OpenAI chat dialect.
 * request.ts translates the body there, response.ts and stream.ts translate
 * the answer back; HTTP failures map like any upstream's (upstream_error.ts).
 * Only chat is served: the other OpenAI operations have no Messages API
 * equivalent, so the router never sends them here.
 */
import { ANTHROPIC_BASE_URL } from "../../../schema/provider_presets.ts";
import { GatewayError } from "../../errors.ts";
import type { ProviderPolicy } from "../../policy/snapshot.ts";
import type { Provider, ProviderDeps, UpstreamCall, UpstreamReply } from "../provider.ts";
import { upstreamHttpError, upstreamNetworkError } from "../upstream_error.ts";
import { malformedReply } from "./errors.ts";
import { toMessagesRequest } from "./request.ts";
import { toChatCompletion } from "./response.ts";
import { translateStream } from "./stream.ts";

export const ANTHROPIC_VERSION = "2023-06-01";

export function createAnthropicProvider(config: ProviderPolicy, deps: ProviderDeps): Provider {
  const url = (config.baseUrl ?? ANTHROPIC_BASE_URL).replace(/\/+$/, "") + "/messages";
  const headers: Record<string, string> = {
    "content-type": "application/json",
    "anthropic-version": ANTHROPIC_VERSION,
  };
  if (config.credential) headers["x-api-key"] = config.credential;
  const streamHeaders = { ...headers, accept: "text/event-stream" };

  return {
    kind: "anthropic",
    supports: (op) => op === "chat",
    async send(call: UpstreamCall): Promise<UpstreamReply> {
      if (call.op !== "chat") {
        throw new GatewayError(
          "unsupported_operation",
          400,
          `Provider "${config.name}" (Anthropic) serves only chat completions.`,
          { retryable: false },
        );
      }
      const request = toMessagesRequest(call.body, { stream: call.stream });
      let response: Response;
      try {
        response = await deps.fetch(url, {
          method: "POST",
          headers: call.stream ? streamHeaders : headers,
          body: JSON.stringify(request.body),
          signal: call.signal,
        });
      } catch (error) {
        throw upstreamNetworkError(error, config.name);
      }
      if (!response.ok) throw await upstreamHttpError(response, config.name);
      const created = Math.floor(Date.now() / 1000);

      if (call.stream) {
        if (!response.body) {
          throw new GatewayError(
            "upstream_error",
            502,
            `Provider "${config.name}" sent an empty stream.`,
          );
        }
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
