/**
 * The offline `mock` provider: deterministic answers with real token counts,
 * streaming included, so the quickstart and tests need no network. It speaks
 * the same OpenAI dialect as a real upstream.
 */
import {
  contentText,
  countChatPromptTokens,
  decodeTokens,
  encodeText,
  loadTokenizer,
} from "../metering/tokens.ts";
import { SSE_DONE, sseData } from "../streaming/sse.ts";
import type { Provider, UpstreamCall, UpstreamReply } from "./provider.ts";

const MAX_ECHO_CHARS = 200;

export function createMockProvider(): Provider {
  return {
    kind: "mock",
    supports: (op) => op === "chat",
    async send(call: UpstreamCall): Promise<UpstreamReply> {
      await loadTokenizer();
      const body = call.body;
      const messages = Array.isArray(body.messages) ? body.messages : [];
      const model = String(body.model);
      const limit = maxTokens(body);
      // Cut the answer at max_tokens, as a real model would, counting exactly.
      const allTokens = encodeText(answerFor(messages));
      const tokens = limit === null ? allTokens : allTokens.slice(0, limit);
      const completionTokens = tokens.length;
      const finishReason = tokens.length < allTokens.length ? "length" : "stop";
      const pieces = tokenPieces(tokens);
      const usage = {
        prompt_tokens: countChatPromptTokens(messages),
        completion_tokens: completionTokens,
        total_tokens: 0,
        prompt_tokens_details: { cached_tokens: 0 },
      };
      usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
      const id = `chatcmpl-mock-${crypto.randomUUID().replaceAll("-", "")}`;
      const created = Math.floor(Date.now() / 1000);

      if (!call.stream) {
        const json = {
          id,
          object: "chat.completion",
          created,
          model,
          choices: [{
            index: 0,
            message: { role: "assistant", content: pieces.join(""), refusal: null },
            logprobs: null,
            finish_reason: finishReason,
          }],
          usage,
        };
        return { stream: false, text: JSON.stringify(json), json };
      }

      const includeUsage = (body.stream_options as { include_usage?: boolean } | undefined)
        ?.include_usage === true;
      const chunk = (delta: Record<string, unknown>, finish: string | null) =>
        JSON.stringify({
          id,
          object: "chat.completion.chunk",
          created,
          model,
          choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
        });
      const events = [
        chunk({ role: "assistant", content: "" }, null),
        ...pieces.map((piece) => chunk({ content: piece }, null)),
        chunk({}, finishReason),
      ];
      if (includeUsage) {
        events.push(
          JSON.stringify({
            id,
            object: "chat.completion.chunk",
            created,
            model,
            choices: [],
            usage,
          }),
        );
      }
      events.push(SSE_DONE);
      let next = 0;
      return {
        stream: true,
        body: new ReadableStream<Uint8Array>({
          pull(controller) {
            if (call.signal.aborted) return controller.error(call.signal.reason);
            const event = events[next++];
            if (event === undefined) return controller.close();
            controller.enqueue(sseData(event));
          },
        }),
      };
    },
  };
}

/** The text of each token in turn, as a model streams it (multi-byte safe). */
function tokenPieces(tokens: readonly number[]): string[] {
  const pieces: string[] = [];
  let previous = "";
  for (let i = 1; i <= tokens.length; i++) {
    const text = decodeTokens(tokens.slice(0, i));
    if (text.endsWith("\uFFFD") && i < tokens.length) continue; // an incomplete character
    pieces.push(text.slice(previous.length));
    previous = text;
  }
  return pieces.filter((piece) => piece.length > 0);
}

function maxTokens(body: Record<string, unknown>): number | null {
  const value = body.max_completion_tokens ?? body.max_tokens;
  return typeof value === "number" && value > 0 ? value : null;
}

/** The deterministic answer: a greeting that quotes the last user message. */
export function answerFor(messages: readonly unknown[]): string {
  let last = "";
  for (const message of messages) {
    const m = message as { role?: unknown; content?: unknown } | null;
    if (m?.role === "user") last = contentText(m.content);
  }
  const quoted = last.length > MAX_ECHO_CHARS ? `${last.slice(0, MAX_ECHO_CHARS)}…` : last;
  return `This is Tollgate's mock provider. You said: "${quoted.trim()}". ` +
    "Point a model at a real provider to get a real answer.";
}
