/**
 * OpenAI chat.completion.chunk SSE as Anthropic Messages SSE, every event
 * named (the Anthropic SDK skips unnamed ones). Parsed once
 * (eventsource-parser), translated chunk by chunk as the caller pulls:
 *
 *   (first pull)             → message_start (input_tokens: the estimate), ping
 *   delta.content / refusal  → a text block's text_delta
 *   delta.tool_calls         → a tool_use block, then input_json_delta per fragment
 *   finish_reason            → content_block_stop of the open block (and held blocks)
 *   usage after the finish, or [DONE], or the end → message_delta, message_stop
 *   data: {"error": …}, a cut, a failed read → an `error` event, then the end
 *
 * Blocks stream one at a time, as Anthropic's do. A delta for another block
 * closes the open one when it is complete (text always; a tool call when its
 * arguments parse as JSON). When it is not (the vendor interleaves tool
 * calls), the other block is held, and every later new block too: they are
 * sent whole after the open one, at the finish, so each tool_use input is
 * complete JSON. A fragment for a closed call can only be whitespace (its
 * JSON was complete) and is dropped. Reasoning deltas are dropped.
 *
 * After message_stop the upstream is read to its end, so that the metering
 * below sees the stream end normally.
 */
import { createParser, type EventSourceMessage } from "eventsource-parser";
import { sseEvent } from "../streaming/sse.ts";
import { anthropicUsage, newMessageId, stopReason, toolUseId } from "./messages_response.ts";

export interface AnthropicStreamOptions {
  /** The model as the client named it. */
  model: string;
  /** The message id; a new `msg_…` when absent. */
  id?: string;
  /** The prompt's estimated tokens, for message_start (the real count comes at the end). */
  promptTokens: number;
}

interface ToolDelta {
  index?: number;
  id?: string | null;
  function?: { name?: string | null; arguments?: string | null } | null;
}

interface ChatChunk {
  choices?: {
    delta?: { content?: string | null; refusal?: string | null; tool_calls?: ToolDelta[] | null };
    finish_reason?: string | null;
  }[];
  usage?: unknown;
  error?: unknown;
}

/** A content block: text, or a tool call and what has streamed of its arguments. */
interface Block {
  type: "text" | "tool_use";
  /** The text, or the arguments so far. */
  text: string;
  id: string;
  name: string;
  /** Its index in the message, once started. */
  index: number;
}

const ERROR_TYPES = new Set([
  "invalid_request_error",
  "authentication_error",
  "permission_error",
  "not_found_error",
  "request_too_large",
  "rate_limit_error",
  "api_error",
  "overloaded_error",
]);

const encoder = new TextEncoder();

type Json = Record<string, unknown>;

export function toAnthropicStream(
  chatSse: ReadableStream<Uint8Array>,
  options: AnthropicStreamOptions,
): ReadableStream<Uint8Array> {
  const reader = chatSse.getReader();
  const decoder = new TextDecoder();
  const out: string[] = [];
  const tools = new Map<number, Block>();
  const held: Block[] = [];
  let open: Block | null = null;
  let blocks = 0;
  let lastTool = -1;
  let finishReason: string | null | undefined; // undefined until the finish chunk
  let usage: unknown = null;
  let stopped = false; // message_stop sent
  let failed = false; // error event sent
  let upstreamDone = false;

  const emit = (type: string, data: string) => out.push(sseEvent(type, data));

  emit(
    "message_start",
    JSON.stringify({
      type: "message_start",
      message: {
        id: options.id ?? newMessageId(),
        type: "message",
        role: "assistant",
        model: options.model,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: {
          input_tokens: options.promptTokens,
          output_tokens: 0,
          cache_read_input_tokens: 0,
          cache_creation_input_tokens: 0,
        },
      },
    }),
  );
  emit("ping", '{"type":"ping"}');

  function fail(type: string, message: string) {
    emit("error", JSON.stringify({ type: "error", error: { type, message } }));
    failed = true;
  }

  function start(block: Block) {
    block.index = blocks++;
    const content = block.type === "text"
      ? '{"type":"text","text":""}'
      : `{"type":"tool_use","id":${JSON.stringify(block.id)},"name":${
        JSON.stringify(block.name)
      },"input":{}}`;
    emit(
      "content_block_start",
      `{"type":"content_block_start","index":${block.index},"content_block":${content}}`,
    );
  }

  function delta(block: Block, piece: string) {
    const body = block.type === "text"
      ? `{"type":"text_delta","text":${JSON.stringify(piece)}}`
      : `{"type":"input_json_delta","partial_json":${JSON.stringify(piece)}}`;
    emit(
      "content_block_delta",
      `{"type":"content_block_delta","index":${block.index},"delta":${body}}`,
    );
  }

  function stop(block: Block) {
    emit("content_block_stop", `{"type":"content_block_stop","index":${block.index}}`);
  }

  /** Opens `block` when the open one can close and nothing is held; holds it otherwise. */
  function place(block: Block) {
    if (held.length > 0 || (open && !isComplete(open))) {
      held.push(block);
      return;
    }
    if (open) stop(open);
    open = block;
    start(block);
    if (block.text) delta(block, block.text);
  }

  function onText(text: string) {
    if (open?.type === "text" && held.length === 0) return delta(open, text);
    const last = held.at(-1);
    if (last?.type === "text") last.text += text;
    else place({ type: "text", text, id: "", name: "", index: -1 });
  }

  function onToolDelta(call: ToolDelta) {
    const key = toolKey(call);
    const fragment = call.function?.arguments ?? "";
    const block = tools.get(key);
    if (block) {
      block.text += fragment;
      if (block === open && fragment) delta(block, fragment);
      return;
    }
    const created: Block = {
      type: "tool_use",
      text: fragment,
      id: call.id || toolUseId(key),
      name: call.function?.name ?? "",
      index: -1,
    };
    tools.set(key, created);
    place(created);
  }

  /** The call's index; a vendor that sends none continues the last call unless the id is new. */
  function toolKey(call: ToolDelta): number {
    if (typeof call.index === "number") lastTool = call.index;
    else if (lastTool < 0 || (call.id && call.id !== tools.get(lastTool)?.id)) {
      lastTool = tools.size;
    }
    return lastTool;
  }

  function endContent() {
    if (open) stop(open);
    open = null;
    for (const block of held) {
      start(block);
      if (block.text) delta(block, block.text);
      stop(block);
    }
    held.length = 0;
  }

  function endMessage() {
    const reason = stopReason(finishReason, tools.size > 0);
    const counts = usage ? JSON.stringify(anthropicUsage(usage)) : '{"output_tokens":0}';
    emit(
      "message_delta",
      `{"type":"message_delta","delta":{"stop_reason":"${reason}","stop_sequence":null},"usage":${counts}}`,
    );
    emit("message_stop", '{"type":"message_stop"}');
    stopped = true;
  }

  function onEvent(event: EventSourceMessage) {
    if (stopped || failed) return;
    if (event.data === "[DONE]") {
      endContent();
      return endMessage();
    }
    let chunk: ChatChunk;
    try {
      chunk = JSON.parse(event.data);
    } catch {
      return fail("api_error", "The upstream sent an event that is not JSON.");
    }
    if (chunk.error) return fail(...inBandError(chunk.error));
    const choice = chunk.choices?.[0];
    if (choice && finishReason === undefined) {
      const { content, refusal, tool_calls } = choice.delta ?? {};
      if (content) onText(content);
      if (refusal) onText(refusal);
      for (const call of tool_calls ?? []) onToolDelta(call);
      if (choice.finish_reason) {
        finishReason = choice.finish_reason;
        endContent();
      }
    }
    if (chunk.usage) {
      usage = chunk.usage;
      if (finishReason !== undefined) endMessage();
    }
  }

  // The gateway's own comments (a stream's cost, after its last event) pass through.
  const onComment = (comment: string) => {
    if (comment.startsWith("x-tollgate-")) out.push(`: ${comment}\n\n`);
  };
  const parser = createParser({ onEvent, onComment });

  return new ReadableStream<Uint8Array>({
    // Enqueue or close before returning: a pull that enqueues nothing is not called again.
    async pull(controller) {
      for (;;) {
        if (out.length > 0) {
          controller.enqueue(encoder.encode(out.join("")));
          out.length = 0;
          return;
        }
        if (failed || upstreamDone) {
          controller.close();
          if (failed) reader.cancel().catch(() => {});
          return;
        }
        let read: ReadableStreamReadResult<Uint8Array>;
        try {
          read = await reader.read();
        } catch (error) {
          upstreamDone = true;
          const reason = error instanceof Error ? error.message : String(error);
          if (!stopped) fail("api_error", `The upstream stream failed: ${reason}`);
          continue;
        }
        if (!read.done) {
          parser.feed(decoder.decode(read.value, { stream: true }));
          continue;
        }
        parser.feed(decoder.decode());
        upstreamDone = true;
        if (stopped || failed) continue;
        if (finishReason === undefined) {
          fail("api_error", "The upstream stream ended before the answer was complete.");
        } else endMessage();
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
}

function isComplete(block: Block): boolean {
  if (block.type === "text") return true;
  try {
    JSON.parse(block.text);
    return true;
  } catch {
    return false;
  }
}

/** An OpenAI in-band error's Anthropic type (api_error unless it is one of Anthropic's) and message. */
function inBandError(error: unknown): [type: string, message: string] {
  const { type, message } = (typeof error === "object" ? error : { message: error }) as Json;
  return [
    typeof type === "string" && ERROR_TYPES.has(type) ? type : "api_error",
    typeof message === "string" && message ? message : "The upstream failed mid-stream.",
  ];
}
