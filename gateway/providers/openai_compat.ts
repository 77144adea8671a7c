/**
 * Adapter for OpenAI-compatible upstreams. Without a vendor preset (or with
 * `openai`) the body goes through unchanged but for the model, and the answer
 * comes back byte for byte. A preset (presets.ts) adds its base URL, auth
 * header and operations, and its quirks: the request is adjusted before it is
 * sent, and only presets whose answers differ from OpenAI's have them
 * re-written (quirks/).
 */
import type { ProviderPolicy } from "../policy/snapshot.ts";
import { BEARER, presetFor, rewritesJson, rewritesStream } from "./presets.ts";
import {
  OPERATION_PATHS,
  type Provider,
  type ProviderDeps,
  type UpstreamCall,
  type UpstreamReply,
  type UpstreamResponse,
} from "./provider.ts";
import { fixChatJson } from "./quirks/json.ts";
import { applyRequestQuirks } from "./quirks/request.ts";
import { fixChatStream } from "./quirks/stream.ts";
import { upstreamHttpError, upstreamNetworkError } from "./upstream_error.ts";
import { GatewayError } from "../errors.ts";

export function createOpenAICompatProvider(config: ProviderPolicy, deps: ProviderDeps): Provider {
  const preset = presetFor(config.preset);
  // An explicit base URL wins over the preset's (a regional endpoint, a proxy, a test).
  const base = (config.baseUrl ?? preset?.baseUrl ?? "").replace(/\/+$/, "");
  const quirks = preset?.quirks ?? {};
  const fixStream = rewritesStream(quirks);
  const fixJson = rewritesJson(quirks);
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (config.credential) {
    const auth = preset?.auth ?? BEARER;
    headers[auth.header] = auth.prefix + config.credential;
  }
  const streamHeaders = { ...headers, accept: "text/event-stream" };

  return {
    kind: "openai_compat",
    // Messages are Anthropic's dialect: the route translates them to chat.
    supports: (op) => op !== "messages" && (preset ? preset.operations.includes(op) : true),
    async send(call: UpstreamCall): Promise<UpstreamReply> {
      let response: UpstreamResponse;
      try {
        response = await deps.fetch(base + OPERATION_PATHS[call.op], {
          method: "POST",
          headers: call.stream ? streamHeaders : headers,
          body: JSON.stringify(applyRequestQuirks(call.body, quirks)),
          signal: call.signal,
        });
      } catch (error) {
        throw upstreamNetworkError(error, config.name);
      }
      if (!response.ok) throw await upstreamHttpError(response, config.name, config.byok);
      if (call.stream) {
        if (!response.body) {
          throw new GatewayError(
            "upstream_error",
            502,
            `Provider "${config.name}" sent an empty stream.`,
          );
        }
        const body = fixStream && call.op === "chat"
          ? fixChatStream(response.body, quirks)
          : response.body;
        return { stream: true, body };
      }
      let text: string;
      try {
        text = await response.text();
      } catch (error) {
        throw upstreamNetworkError(error, config.name);
      }
      let json: Record<string, unknown>;
      try {
        json = JSON.parse(text);
      } catch (error) {
        throw new GatewayError(
          "upstream_error",
          502,
          `Provider "${config.name}" sent a body that is not JSON.`,
          { cause: error },
        );
      }
      if (fixJson && call.op === "chat" && fixChatJson(json, quirks)) text = JSON.stringify(json);
      return { stream: false, text, json };
    },
  };
}
