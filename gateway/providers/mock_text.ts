/**
 * What the mock provider's operations share: the deterministic answer, cut
 * at a token limit as a real model would, and SSE bodies written from a list
 * of events (named `event:` ones for the Responses and Images APIs).
 */
import { contentText, decodeTokens, encodeText } from "../metering/tokens.ts";

const MAX_ECHO_CHARS = 200;
const encoder = new TextEncoder();

/** The deterministic answer: a greeting that quotes what was said. */
export function answerTo(said: string): string {
  const quoted = said.length > MAX_ECHO_CHARS ? `${said.slice(0, MAX_ECHO_CHARS)}…` : said;
  return `This is Tollgate's mock provider. You said: "${quoted.trim()}". ` +
    "Point a model at a real provider to get a real answer.";
}

/** The answer to the last user message of a chat or of Responses API input items. */
export function answerFor(messages: readonly unknown[]): string {
  let last = "";
  for (const message of messages) {
    const m = message as { role?: unknown; content?: unknown } | null;
    if (m?.role === "user") last = contentText(m.content);
  }
  return answerTo(last);
}

export interface Answer {
  /** The text of each token in turn, as a model streams it. */
  pieces: string[];
  text: string;
  tokens: number;
  /** Whether the limit cut the answer short. */
  cut: boolean;
}

/** `text` cut at `limit` tokens (null: no limit), counting exactly. */
export function cutAnswer(text: string, limit: number | null): Answer {
  const all = encodeText(text);
  const tokens = limit === null ? all : all.slice(0, limit);
  const pieces = tokenPieces(tokens);
  return { pieces, text: pieces.join(""), tokens: tokens.length, cut: tokens.length < all.length };
}

/** A positive integer field of the body (a token limit), or null. */
export function positiveInt(body: Record<string, unknown>, ...fields: string[]): number | null {
  for (const field of fields) {
    const value = body[field];
    if (typeof value === "number" && Number.isInteger(value) && value > 0) return value;
  }
  return null;
}

/** Multi-byte safe: a piece never ends inside a character. */
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

/** One SSE event with a name: `event: <name>` then its JSON `data:`. */
export function sseEvent(name: string, data: unknown): Uint8Array {
  return encoder.encode(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
}

/** An SSE body that sends one event per read and stops when `signal` aborts. */
export function eventStream(
  events: readonly Uint8Array[],
  signal: AbortSignal,
): ReadableStream<Uint8Array> {
  let next = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (signal.aborted) return controller.error(signal.reason);
      const event = events[next++];
      if (event === undefined) return controller.close();
      controller.enqueue(event);
    },
  });
}
