/**
 * The offline `mock` provider: deterministic answers with real token counts,
 * streaming included, so the quickstart and tests need no network. It speaks
 * the same OpenAI dialect as a real upstream, for every operation: chat and
 * legacy completions here, embeddings, images and the Responses API in their
 * own modules.
 */
import {
  countChatPromptTokens,
  countInputTokens,
  decodeTokens,
  loadTokenizer,
  type TextInput,
} from "../metering/tokens.ts";
import { GatewayError } from "../errors.ts";
import { SSE_DONE, sseData } from "../streaming/sse.ts";
import { mockEmbeddings } from "./mock_embeddings.ts";
import { mockImages } from "./mock_images.ts";
import { mockResponse } from "./mock_responses.ts";
import { answerFor, answerTo, cutAnswer, eventStream, positiveInt } from "./mock_text.ts";
import type { Provider, UpstreamCall, UpstreamReply } from "./provider.ts";

export function createMockProvider(): Provider {
  return {
    kind: "mock",
    // Messages reach the mock as chat, translated by the route like any OpenAI-compatible upstream.
    supports: (op) => op !== "messages",
    async send(call: UpstreamCall): Promise<UpstreamReply> {
      await loadTokenizer();
      switch (call.op) {
        case "chat":
          return chat(call);
        case "completions":
          return completions(call);
        case "embeddings":
          return mockEmbeddings(call);
        case "images":
          return await mockImages(call);
        case "responses":
          return mockResponse(call);
        case "messages":
          throw new GatewayError(
            "unsupported_operation",
            400,
            "The mock provider serves messages only as chat.",
            { retryable: false },
          );
      }
    },
  };
}

function chat(call: UpstreamCall): UpstreamReply {
  const body = call.body;
  const messages = Array.isArray(body.messages) ? body.messages : [];
  const model = String(body.model);
  // Cut the answer at max_tokens, as a real model would, counting exactly.
  const answer = cutAnswer(
    answerFor(messages),
    positiveInt(body, "max_completion_tokens", "max_tokens"),
  );
  const finishReason = answer.cut ? "length" : "stop";
  const usage = {
    prompt_tokens: countChatPromptTokens(messages),
    completion_tokens: answer.tokens,
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
        message: { role: "assistant", content: answer.text, refusal: null },
        logprobs: null,
        finish_reason: finishReason,
      }],
      usage,
    };
    return { stream: false, text: JSON.stringify(json), json };
  }

  const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
    sseData(
      JSON.stringify({ id, object: "chat.completion.chunk", created, model, choices, ...extra }),
    );
  const choice = (delta: Record<string, unknown>, finish: string | null) => ({
    index: 0,
    delta,
    logprobs: null,
    finish_reason: finish,
  });
  const events = [
    chunk([choice({ role: "assistant", content: "" }, null)]),
    ...answer.pieces.map((piece) => chunk([choice({ content: piece }, null)])),
    chunk([choice({}, finishReason)]),
  ];
  if (includeUsage(body)) events.push(chunk([], { usage }));
  events.push(sseData(SSE_DONE));
  return { stream: true, body: eventStream(events, call.signal) };
}

/** Legacy completions: one choice per prompt, `choices[].text` when streaming. */
function completions(call: UpstreamCall): UpstreamReply {
  const body = call.body;
  const model = String(body.model);
  const prompt = (body.prompt ?? "") as TextInput;
  const limit = positiveInt(body, "max_tokens");
  const answers = promptTexts(prompt).map((text) => cutAnswer(answerTo(text), limit));
  const usage = {
    prompt_tokens: countInputTokens(prompt),
    completion_tokens: answers.reduce((sum, answer) => sum + answer.tokens, 0),
    total_tokens: 0,
  };
  usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
  const id = `cmpl-mock-${crypto.randomUUID().replaceAll("-", "")}`;
  const created = Math.floor(Date.now() / 1000);
  const finish = (index: number) => answers[index]!.cut ? "length" : "stop";

  if (!call.stream) {
    const json = {
      id,
      object: "text_completion",
      created,
      model,
      choices: answers.map((answer, index) => ({
        text: answer.text,
        index,
        logprobs: null,
        finish_reason: finish(index),
      })),
      usage,
    };
    return { stream: false, text: JSON.stringify(json), json };
  }

  const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
    sseData(JSON.stringify({ id, object: "text_completion", created, model, choices, ...extra }));
  const events: Uint8Array[] = [];
  answers.forEach((answer, index) => {
    for (const text of answer.pieces) {
      events.push(chunk([{ text, index, logprobs: null, finish_reason: null }]));
    }
    events.push(chunk([{ text: "", index, logprobs: null, finish_reason: finish(index) }]));
  });
  if (includeUsage(body)) events.push(chunk([], { usage }));
  events.push(sseData(SSE_DONE));
  return { stream: true, body: eventStream(events, call.signal) };
}

/** The text of each prompt: strings as they are, token arrays decoded. */
function promptTexts(prompt: TextInput): string[] {
  if (typeof prompt === "string") return [prompt];
  if (prompt.length === 0) return [""];
  if (prompt.every((entry) => typeof entry === "number")) return [decode(prompt as number[])];
  return prompt.map((entry) => typeof entry === "string" ? entry : decode(entry as number[]));
}

function decode(tokens: readonly number[]): string {
  try {
    return decodeTokens(tokens);
  } catch {
    return ""; // ids outside the vocabulary
  }
}

function includeUsage(body: Record<string, unknown>): boolean {
  return (body.stream_options as { include_usage?: unknown } | null | undefined)
    ?.include_usage === true;
}
