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

/** A prompt or input as the legacy completions and embeddings APIs take it. */
export type TextInput =
  | string
  | readonly string[]
  | readonly number[]
  | readonly (readonly number[])[];

/** Tokens of a completions `prompt` or embeddings `input`: text tokenized, token ids counted. */
export function countInputTokens(input: TextInput): number {
  if (typeof input === "string") return countTokens(input);
  let total = 0;
  for (const entry of input) {
    if (typeof entry === "string") total += countTokens(entry);
    else if (typeof entry === "number") total += 1;
    else total += entry.length;
  }
  return total;
}

/**
 * Prompt tokens of a Responses API request: `instructions` as a system
 * message, then each input item; messages as in chat, function calls and
 * their outputs by their text. Other items (images, files, reasoning) count
 * nothing.
 */
export function countResponsesPromptTokens(input: unknown, instructions?: string | null): number {
  const messages: unknown[] = [];
  if (instructions) messages.push({ role: "system", content: instructions });
  if (typeof input === "string") messages.push({ role: "user", content: input });
  let extra = 0;
  for (const item of Array.isArray(input) ? input : []) {
    if (!item || typeof item !== "object") continue;
    const i = item as Record<string, unknown>;
    if (typeof i.role === "string") messages.push({ role: i.role, content: i.content });
    for (const field of ["name", "arguments", "output"] as const) {
      if (!i.role && typeof i[field] === "string") extra += countTokens(i[field]);
    }
  }
  return countChatPromptTokens(messages) + extra;
}

/**
 * Anthropic counts an image as width x height / 750 tokens after scaling it
 * to at most about 1.15 megapixels, so no image costs more than about 1,600.
 * The size is not known without decoding the image: every image counts the
 * ceiling, as does a document the gateway cannot read (a PDF: one page's worth).
 */
export const IMAGE_TOKENS = 1600;

/** The parts of a Messages API request that make its prompt. */
export interface MessagesPrompt {
  system?: unknown;
  messages: readonly unknown[];
  tools?: readonly unknown[];
}

/**
 * Prompt tokens of an Anthropic Messages request: the system prompt, each
 * message framed as in chat, and tool definitions (name, description, input
 * schema). Text, tool_use input as JSON, tool_result content, document and
 * search_result text count as tokenized; images as IMAGE_TOKENS; a block of
 * another type by its JSON; redacted thinking, which is ciphertext, nothing.
 */
export function countMessagesPromptTokens(prompt: MessagesPrompt): number {
  let total = REPLY_PRIMING + contentTokens(prompt.system);
  for (const message of prompt.messages) {
    const m = message as Record<string, unknown> | null;
    total += PER_MESSAGE + textTokens(m?.role) + contentTokens(m?.content);
  }
  for (const tool of prompt.tools ?? []) {
    const t = tool as Record<string, unknown> | null;
    total += textTokens(t?.name) + textTokens(t?.description) + jsonTokens(t?.input_schema);
  }
  return total;
}

/** A string, or an array of content blocks. */
function contentTokens(content: unknown): number {
  if (typeof content === "string") return countTokens(content);
  if (!Array.isArray(content)) return 0;
  let total = 0;
  for (const block of content) total += blockTokens(block);
  return total;
}

function blockTokens(block: unknown): number {
  if (!block || typeof block !== "object") return 0;
  const b = block as Record<string, unknown>;
  switch (b.type) {
    case "text":
      return textTokens(b.text);
    case "image":
      return IMAGE_TOKENS;
    case "document":
      return textTokens(b.title) + textTokens(b.context) + documentTokens(b.source);
    case "search_result":
      return textTokens(b.title) + textTokens(b.source) + contentTokens(b.content);
    case "tool_use":
    case "server_tool_use":
      return textTokens(b.name) + jsonTokens(b.input);
    case "tool_result":
      return contentTokens(b.content);
    case "thinking":
      return textTokens(b.thinking);
    case "redacted_thinking":
      return 0;
    default:
      return jsonTokens(b);
  }
}

function documentTokens(source: unknown): number {
  const s = source as Record<string, unknown> | null;
  if (s?.type === "text") return textTokens(s.data);
  if (s?.type === "content") return contentTokens(s.content);
  return IMAGE_TOKENS;
}

function textTokens(value: unknown): number {
  return typeof value === "string" ? countTokens(value) : 0;
}

function jsonTokens(value: unknown): number {
  return value === undefined ? 0 : countTokens(JSON.stringify(value));
}
