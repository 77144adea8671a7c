/**
 * Token counting with a real BPE tokenizer (o200k_base, via gpt-tokenizer),
 * for the mock provider's usage and for estimating cut streams. Loaded on
 * first use so an idle gateway does not carry its tables.
 */
type Tokenizer = typeof import("gpt-tokenizer/encoding/o200k_base");

let tokenizer: Tokenizer | undefined;

export async function loadTokenizer(): Promise<void> {
  tokenizer ??= await import("gpt-tokenizer/encoding/o200k_base");
}

/** Tokens in `text`; call loadTokenizer() first. */
export function countTokens(text: string): number {
  if (!tokenizer) throw new Error("Cannot count tokens: call loadTokenizer() first");
  return text ? tokenizer.countTokens(text) : 0;
}

/** The token ids of `text`; call loadTokenizer() first. */
export function encodeText(text: string): number[] {
  if (!tokenizer) throw new Error("Cannot encode: call loadTokenizer() first");
  return tokenizer.encode(text);
}

/** The text of token ids; call loadTokenizer() first. */
export function decodeTokens(tokens: readonly number[]): string {
  if (!tokenizer) throw new Error("Cannot decode: call loadTokenizer() first");
  return tokenizer.decode(tokens as number[]);
}

// OpenAI's published accounting for chat prompts: 3 tokens of framing per
// message, 1 more when a name is set, and 3 to prime the reply.
const PER_MESSAGE = 3;
const PER_NAME = 1;
const REPLY_PRIMING = 3;

/** Prompt tokens of a chat request's messages (text parts; tools and images excluded). */
export function countChatPromptTokens(messages: readonly unknown[]): number {
  let total = REPLY_PRIMING;
  for (const message of messages) {
    if (!message || typeof message !== "object") continue;
    const m = message as Record<string, unknown>;
    total += PER_MESSAGE + countTokens(typeof m.role === "string" ? m.role : "");
    total += countTokens(contentText(m.content));
    if (typeof m.name === "string") total += PER_NAME + countTokens(m.name);
    if (Array.isArray(m.tool_calls)) total += countTokens(JSON.stringify(m.tool_calls));
  }
  return total;
}

/** The text of a message's content: a string, or the text parts of an array. */
export function contentText(content: unknown): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  let text = "";
  for (const part of content) {
    if (part && typeof part === "object" && typeof (part as { text?: unknown }).text === "string") {
      text += (part as { text: string }).text;
    }
  }
  return text;
}
