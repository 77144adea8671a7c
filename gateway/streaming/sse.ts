/**
 * Server-sent events, parsed once (eventsource-parser) and written once.
 *
 * `meterSse` sits between an upstream's SSE body (OpenAI's or Anthropic's
 * dialect) and the client. It finds the usage without parsing every event,
 * strips OpenAI's usage chunk when the client did not ask for it, turns an
 * upstream failure into an in-band error event, and reports how the stream
 * ended exactly once: done, cut by the upstream, or cancelled by the client
 * (whose cancel aborts the upstream request).
 */
import { createParser } from "eventsource-parser";
import type { TokenUsage } from "../../schema/money.ts";
import { parseUsage } from "../metering/usage.ts";

const encoder = new TextEncoder();

/** Encodes one SSE `data:` event. */
export function sseData(data: string): Uint8Array {
  return encoder.encode(`data: ${data}\n\n`);
}

/** One named SSE event, as text (Anthropic names every event; its SDKs skip unnamed ones). */
export function sseEvent(name: string, data: string): string {
  return `event: ${name}\ndata: ${data}\n\n`;
}

export const SSE_DONE = "[DONE]";

export interface StreamEnd {
  /** Usage the upstream reported, or null. */
  usage: TokenUsage | null;
  /** How the stream ended. */
  reason: "done" | "upstream_cut" | "client_cancelled" | "upstream_error";
  /** The data of each event before usage arrived, for estimating usage. */
  events: readonly string[];
  /** Monotonic time of the first upstream byte. */
  firstByteAt: number;
}

export interface MeterOptions {
  /**
   * The upstream's event dialect: OpenAI's (usage on a chunk, ending in
   * `[DONE]`) or Anthropic's Messages (usage on message_start and
   * message_delta, ending in message_stop).
   */
  dialect?: "openai" | "anthropic";
  /** Remove the usage-only chunk (the client did not set include_usage); OpenAI only. */
  stripUsage: boolean;
  /**
   * Called once, when the stream ends. What it returns (SSE comment lines,
   * such as the request's cost) is sent last, unless the client cancelled.
   */
  onEnd(end: StreamEnd): string | null | Promise<string | null>;
  /** Builds the whole in-band error event sent when the upstream fails mid-stream. */
  errorEvent?: (error: unknown) => string;
}

/** An upstream SSE body whose first bytes were already read (see routing/fallback.ts). */
export interface SseSource {
  reader: ReadableStreamDefaultReader<Uint8Array>;
  first: Uint8Array;
  firstAt: number;
}

export function meterSse(source: SseSource, options: MeterOptions): ReadableStream<Uint8Array> {
  const { reader } = source;
  const decoder = new TextDecoder();
  const events: string[] = [];
  const out: string[] = [];
  let usage: TokenUsage | null = null;
  let sawDone = false;
  const firstByteAt = source.firstAt;
  let pending: Uint8Array | null = source.first;
  let ended = false;

  const end = (reason: StreamEnd["reason"]) => {
    if (ended) return null;
    ended = true;
    return options.onEnd({ usage, reason, events, firstByteAt });
  };
  /** Ends the stream: its last words (see onEnd), then close. */
  const finish = async (
    controller: ReadableStreamDefaultController<Uint8Array>,
    reason: StreamEnd["reason"],
  ) => {
    const last = await end(reason);
    try {
      if (last) controller.enqueue(encoder.encode(last));
      controller.close();
    } catch {
      // Cancelled while metering (a translation that failed on the error event).
    }
  };

  const anthropic = options.dialect === "anthropic" ? anthropicUsage() : null;
  const parser = createParser({
    onEvent(event) {
      const data = event.data;
      if (anthropic) {
        switch (event.event) {
          case "message_stop":
            sawDone = true;
            return;
          case "message_start":
          case "message_delta":
            usage = anthropic.read(data) ?? usage;
            return;
          case "content_block_delta":
            if (usage === null) events.push(data);
            return;
          default:
            return;
        }
      }
      if (data === SSE_DONE) {
        sawDone = true;
        if (options.stripUsage) out.push(`data: ${SSE_DONE}\n\n`);
        return;
      }
      const found = usageIn(data);
      if (found) {
        usage = found.usage;
        if (options.stripUsage && found.usageOnly) return;
      } else if (usage === null) {
        events.push(data);
      }
      if (options.stripUsage) {
        out.push(event.event ? `event: ${event.event}\ndata: ${data}\n\n` : `data: ${data}\n\n`);
      }
    },
  });

  return new ReadableStream<Uint8Array>({
    // pull must enqueue or close before it returns: a pull that resolves with
    // nothing enqueued is not called again. When stripping, a read can hold
    // only part of an event, so read on until there is something to send.
    async pull(controller) {
      for (;;) {
        let chunk: ReadableStreamReadResult<Uint8Array>;
        if (pending) {
          chunk = { done: false, value: pending };
          pending = null;
        } else {
          try {
            chunk = await reader.read();
          } catch (error) {
            const event = options.errorEvent?.(error);
            if (event) controller.enqueue(encoder.encode(event));
            return await finish(controller, "upstream_error");
          }
        }
        if (chunk.done) {
          parser.feed(decoder.decode());
          flush(controller);
          if (anthropic && !sawDone) {
            // Anthropic streams always end in message_stop: without it the
            // answer is incomplete, and the client must be told so in-band.
            const event = options.errorEvent?.(
              new Error("the upstream ended the stream before message_stop"),
            );
            if (event) controller.enqueue(encoder.encode(event));
          }
          return await finish(
            controller,
            sawDone || (usage && !anthropic) ? "done" : "upstream_cut",
          );
        }
        parser.feed(decoder.decode(chunk.value, { stream: true }));
        if (!options.stripUsage) return controller.enqueue(chunk.value);
        if (flush(controller)) return;
      }
    },
    cancel(reason) {
      void end("client_cancelled");
      return reader.cancel(reason);
    },
  });

  function flush(controller: ReadableStreamDefaultController<Uint8Array>): boolean {
    if (out.length === 0) return false;
    controller.enqueue(encoder.encode(out.join("")));
    out.length = 0;
    return true;
  }
}

/**
 * The usage in an event's data, found without parsing the event unless it
 * carries a usage object (OpenAI sends `"usage":null` on every other chunk).
 */
function usageIn(data: string): { usage: TokenUsage; usageOnly: boolean } | null {
  const at = data.lastIndexOf('"usage"');
  if (at < 0) return null;
  let i = at + 7;
  while (i < data.length && (data[i] === ":" || data[i] === " ")) i++;
  if (data[i] !== "{") return null;
  try {
    const chunk = JSON.parse(data) as {
      usage?: unknown;
      choices?: unknown[];
      response?: { usage?: unknown };
    };
    // Chat and completion chunks carry `usage`; Responses API events carry it
    // in `response` (response.completed).
    const usage = parseUsage(chunk.usage ?? chunk.response?.usage);
    if (!usage) return null;
    const usageOnly = chunk.usage !== undefined &&
      (!Array.isArray(chunk.choices) || chunk.choices.length === 0);
    return { usage, usageOnly };
  } catch {
    return null;
  }
}

/**
 * Anthropic's usage across a stream: message_start carries the input side
 * (and an early output count), each message_delta the cumulative output and
 * any input figures that changed. Usage counts as reported once a
 * message_delta has arrived; a stream cut before that is estimated.
 */
function anthropicUsage() {
  const totals: Record<string, number> = {};
  return {
    read(data: string): TokenUsage | null {
      let event: { type?: string; usage?: unknown; message?: { usage?: unknown } };
      try {
        event = JSON.parse(data);
      } catch {
        return null;
      }
      const fields = event.type === "message_start" ? event.message?.usage : event.usage;
      if (fields && typeof fields === "object") {
        for (const [name, value] of Object.entries(fields)) {
          if (typeof value === "number") totals[name] = value;
        }
      }
      return event.type === "message_delta" ? parseUsage(totals) : null;
    },
  };
}
