/** Adapter for OpenAI-compatible upstreams: the body goes through unchanged. */
import type { ProviderPolicy } from "../policy/snapshot.ts";
import {
  OPERATION_PATHS,
  type Provider,
  type ProviderDeps,
  type UpstreamCall,
  type UpstreamReply,
} from "./provider.ts";
import { upstreamHttpError, upstreamNetworkError } from "./upstream_error.ts";
import { GatewayError } from "../errors.ts";

export function createOpenAICompatProvider(config: ProviderPolicy, deps: ProviderDeps): Provider {
  const base = (config.baseUrl ?? "").replace(/\/+$/, "");
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (config.credential) headers.authorization = `Bearer ${config.credential}`;
  const streamHeaders = { ...headers, accept: "text/event-stream" };

  return {
    kind: "openai_compat",
    supports: () => true,
    async send(call: UpstreamCall): Promise<UpstreamReply> {
      let response: Response;
      try {
        response = await deps.fetch(base + OPERATION_PATHS[call.op], {
          method: "POST",
          headers: call.stream ? streamHeaders : headers,
          body: JSON.stringify(call.body),
          signal: call.signal,
        });
      } catch (error) {
        throw upstreamNetworkError(error, config.name);
      }
      if (!response.ok) throw await upstreamHttpError(response, config.name);
      if (call.stream) {
        if (!response.body) {
          throw new GatewayError(
            "upstream_error",
            502,
            `Provider "${config.name}" sent an empty stream.`,
          );
        }
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
        throw new GatewayError(
          "upstream_error",
          502,
          `Provider "${config.name}" sent a body that is not JSON.`,
          { cause: error },
        );
      }
    },
  };
}
