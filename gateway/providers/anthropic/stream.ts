/**
 * Anthropic's Messages SSE as OpenAI chat.completion.chunk SSE, parsed once
 * (eventsource-parser) and translated event by event as the caller pulls:
 *
 *   message_start                    → a role chunk; input usage remembered
 *   content_block_start (tool_use)   → a tool_calls delta: index, id, type, name, ""
 *   content_block_delta text_delta   → a content delta
 *   content_block_delta input_json_delta → a tool_calls arguments delta (or a
 *                                      content delta for the json_schema response tool)
 *   message_delta                    → the finish_reason chunk; output usage
 *   message_stop                     → the usage-only chunk (when asked), then [DONE]
 *   ping, thinking, signatures       → nothing
 *   error                            → the output stream errors, after what came before
 *
 * Each chunk is the JSON of its delta between a prefix and suffix built once.
 */
import { createParser, type EventSourceMessage } from "eventsource-parser";
import type { GatewayError } from "../../errors.ts";
import { SSE_DONE, sseData } from "../../streaming/sse.ts";
import { malformedReply, streamEventError } from "./errors.ts";
import { type FinishReason, mapStopReason } from "./finish_reason.ts";
import { type AnthropicUsage, chatUsage } from "./response.ts";
import { RESPONSE_TOOL } from "./tools.ts";

export interface StreamOptions {
  provider: string;
  /** The json_schema response tool's input is streamed as content. */
  structured: boolean;
  /** End with a usage-only chunk (the call's stream_options.include_usage). */
  includeUsage: boolean;
  /** Unix seconds for every chunk's `created`. */
  created: number;
}

/** What an Anthropic content block becomes: text, the Nth tool call, the answer, or nothing. */
type Block = "text" | number | "answer" | null;

interface AnthropicEvent {
  type?: string;
  index?: number;
  message?: { id?: string; model?: string; usage?: AnthropicUsage };
  content_block?: { type?: string; text?: string; id?: string; name?: string };
  delta?: { type?: string; text?: string; partial_json?: string; stop_reason?: string | null };
  usage?: AnthropicUsage;
}

export function translateStream(
  upstream: ReadableStream<Uint8Array>,
  options: StreamOptions,
): ReadableStream<Uint8Array> {
  const reader = upstream.getReader();
  const decoder = new TextDecoder();
  const out: Uint8Array[] = [];
  const blocks: Block[] = [];
  const usage: AnthropicUsage = {};
  let head = header("", "", options.created);
  let tools = 0;
  let failure: GatewayError | null = null;
  let finished = false;

  const emit = (delta: string, finish: FinishReason | null = null) => {
    out.push(sseData(
      `${head},"choices":[{"index":0,"delta":${delta},"logprobs":null,"finish_reason":${
        finish ? `"${finish}"` : "null"
      }}]}`,
    ));
  };

  const onEvent = (event: EventSourceMessage) => {
    if (failure || finished || event.event === "ping") return;
    let data: AnthropicEvent;
    try {
      data = JSON.parse(event.data);
    } catch (error) {
      failure = malformedReply(options.provider, "an event", error);
      return;
    }
    switch (data.type) {
      case "message_start":
        head = header(data.message?.id ?? "", data.message?.model ?? "", options.created);
        addUsage(usage, data.message?.usage);
        emit('{"role":"assistant","content":""}');
        break;
      case "content_block_start":
        startBlock(data);
        break;
      case "content_block_delta":
        blockDelta(data);
        break;
      case "message_delta": {
        addUsage(usage, data.usage);
        let finish = mapStopReason(data.delta?.stop_reason);
        if (finish === "tool_calls" && tools === 0) finish = "stop";
        emit("{}", finish);
        break;
      }
      case "message_stop":
        if (options.includeUsage) {
          out.push(sseData(`${head},"choices":[],"usage":${JSON.stringify(chatUsage(usage))}}`));
        }
        out.push(sseData(SSE_DONE));
        finished = true;
        break;
      case "error":
        failure = streamEventError(data, options.provider);
        break;
    }
  };

  function startBlock(data: AnthropicEvent) {
    const block = data.content_block;
    let kind: Block = null;
    if (block?.type === "text") {
      kind = "text";
      if (block.text) emit(JSON.stringify({ content: block.text }));
    } else if (block?.type === "tool_use") {
      if (options.structured && block.name === RESPONSE_TOOL) kind = "answer";
      else {
        kind = tools++;
        emit(JSON.stringify({
          tool_calls: [{
            index: kind,
            id: block.id ?? "",
            type: "function",
            function: { name: block.name ?? "", arguments: "" },
          }],
        }));
      }
    }
    if (data.index !== undefined) blocks[data.index] = kind;
  }

  function blockDelta(data: AnthropicEvent) {
    const kind = data.index === undefined ? null : blocks[data.index] ?? null;
    const delta = data.delta;
    if (delta?.type === "text_delta" && kind === "text" && delta.text) {
      emit(JSON.stringify({ content: delta.text }));
    } else if (delta?.type === "input_json_delta" && delta.partial_json) {
      if (kind === "answer") emit(JSON.stringify({ content: delta.partial_json }));
      else if (typeof kind === "number") {
        emit(JSON.stringify({
          tool_calls: [{ index: kind, function: { arguments: delta.partial_json } }],
        }));
      }
    }
  }

  const parser = createParser({ onEvent });

  return new ReadableStream<Uint8Array>({
    // Enqueue or close before returning (see streaming/sse.ts). A failure
    // waits for the next pull, so that what came before it is delivered.
    async pull(controller) {
      for (;;) {
        if (out.length === 0 && (failure || finished)) {
          if (failure) controller.error(failure);
          else controller.close();
          reader.cancel().catch(() => {});
          return;
        }
        if (out.length > 0) {
          for (const chunk of out) controller.enqueue(chunk);
          out.length = 0;
          return;
        }
        let read: ReadableStreamReadResult<Uint8Array>;
        try {
          read = await reader.read();
        } catch (error) {
          controller.error(error);
          return;
        }
        if (read.done) {
          parser.feed(decoder.decode());
          // Cut before message_stop: close without [DONE]; the meter sees the cut.
          finished = true;
        } else {
          parser.feed(decoder.decode(read.value, { stream: true }));
        }
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
}

/** The opening of every chunk, up to (not including) `choices`. */
function header(id: string, model: string, created: number): string {
  return `{"id":${
    JSON.stringify(id)
  },"object":"chat.completion.chunk","created":${created},"model":${JSON.stringify(model)}`;
}

/** Anthropic's usage counts are cumulative: a later event's count replaces an earlier one. */
function addUsage(usage: AnthropicUsage, next: AnthropicUsage | undefined) {
  if (!next) return;
  for (const key of Object.keys(next) as (keyof AnthropicUsage)[]) {
    const value = next[key];
    if (typeof value === "number") usage[key] = value;
  }
}
