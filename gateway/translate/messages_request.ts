/**
 * An Anthropic Messages request body (already validated) as an OpenAI chat
 * completions body, for an OpenAI-compatible upstream. `model` is kept as
 * given: the caller replaces it per target.
 *
 * - system (a string or text blocks) → one system message; cache_control is
 *   dropped wherever it appears.
 * - Text blocks joined by TEXT_SEPARATOR make a string content, which every
 *   OpenAI-compatible vendor accepts; a user turn with images becomes an array
 *   of text and image_url parts (base64 sources as data: URLs).
 * - Assistant tool_use blocks → tool_calls; thinking and redacted_thinking
 *   blocks are dropped (another model cannot read them).
 * - User tool_result blocks → `tool` messages, first, so that they directly
 *   follow the assistant message with the calls; the turn's other blocks
 *   follow in one user message. An error result is prefixed "Error: ". Images
 *   in a result cannot go in a tool message: they open that user message, and
 *   the tool message says so.
 * - Documents with a text source become text; any other document (PDF) or
 *   block type is refused with a 400 naming its path, e.g. messages.2.content.0.
 * - tools: custom tools → functions. Anthropic-defined tools (web_search,
 *   bash, …, any `type` but "custom") are skipped: refusing them is the
 *   caller's job (isCustomTool). tool_choice auto/any/tool/none →
 *   "auto"/"required"/a named function/"none"; disable_parallel_tool_use →
 *   parallel_tool_calls false.
 * - max_tokens, temperature and top_p pass; stop_sequences → stop;
 *   metadata.user_id → user; top_k and thinking have no equivalent and are
 *   dropped. A stream asks for the usage chunk (stream_options.include_usage).
 */
import { unsupportedParam } from "../providers/anthropic/errors.ts";
import { toArguments } from "./tool_arguments.ts";

type Json = Record<string, unknown>;

const TEXT_SEPARATOR = "\n\n";

const EMPTY_SCHEMA = { type: "object", properties: {} };

export function toChatRequest(body: Json, options: { stream: boolean }): Json {
  const messages: Json[] = [];
  const system = systemText(body.system);
  if (system) messages.push({ role: "system", content: system });
  (body.messages as Json[]).forEach((message, i) => {
    messages.push(...chatMessages(message, `messages.${i}`));
  });

  const chat: Json = { model: body.model, messages };
  if (typeof body.max_tokens === "number") chat.max_tokens = body.max_tokens;
  const tools = Array.isArray(body.tools) ? body.tools.filter(isCustomTool).map(chatTool) : [];
  if (tools.length > 0) {
    chat.tools = tools;
    Object.assign(chat, toolChoice(body.tool_choice as Json | undefined));
  }
  if (Array.isArray(body.stop_sequences) && body.stop_sequences.length > 0) {
    chat.stop = body.stop_sequences;
  }
  if (typeof body.temperature === "number") chat.temperature = body.temperature;
  if (typeof body.top_p === "number") chat.top_p = body.top_p;
  const user = (body.metadata as Json | undefined)?.user_id;
  if (typeof user === "string" && user) chat.user = user;
  if (options.stream) {
    chat.stream = true;
    chat.stream_options = { include_usage: true };
  }
  return chat;
}

/** A tool the client runs with its own schema (no `type`, or "custom"). */
export function isCustomTool(tool: unknown): boolean {
  const type = (tool as Json | null)?.type;
  return type === undefined || type === null || type === "custom";
}

function systemText(system: unknown): string {
  if (typeof system === "string") return system;
  if (!Array.isArray(system)) return "";
  return joinText(system.map((block: Json) => block.text));
}

function chatMessages(message: Json, at: string): Json[] {
  const { role, content } = message;
  if (typeof content === "string") return [{ role, content }];
  const blocks = content as Json[];
  return role === "assistant" ? assistantMessage(blocks, at) : userMessages(blocks, at);
}

function assistantMessage(blocks: Json[], at: string): Json[] {
  const texts: unknown[] = [];
  const calls: Json[] = [];
  blocks.forEach((block, j) => {
    switch (block.type) {
      case "text":
        texts.push(block.text);
        break;
      case "tool_use":
        calls.push({
          id: block.id,
          type: "function",
          function: { name: block.name, arguments: toArguments(block.input) },
        });
        break;
      case "thinking":
      case "redacted_thinking":
        break;
      default:
        throw unsupportedBlock(`${at}.content.${j}`, block.type);
    }
  });
  const text = joinText(texts);
  if (!text && calls.length === 0) return [];
  const message: Json = { role: "assistant", content: text || null };
  if (calls.length > 0) message.tool_calls = calls;
  return [message];
}

function userMessages(blocks: Json[], at: string): Json[] {
  const results: Json[] = [];
  const parts: Json[] = [];
  blocks.forEach((block, j) => {
    const path = `${at}.content.${j}`;
    switch (block.type) {
      case "tool_result": {
        const { message, images } = toolResult(block, path);
        results.push(message);
        parts.push(...images);
        break;
      }
      case "text":
        parts.push({ type: "text", text: block.text });
        break;
      case "image":
        parts.push(imagePart(block, path));
        break;
      case "document":
        parts.push({ type: "text", text: documentText(block, path) });
        break;
      default:
        throw unsupportedBlock(path, block.type);
    }
  });
  if (parts.length === 0) return results;
  const textOnly = parts.every((part) => part.type === "text");
  const content = textOnly ? joinText(parts.map((part) => part.text)) : parts;
  return [...results, { role: "user", content }];
}

function toolResult(block: Json, path: string): { message: Json; images: Json[] } {
  const texts: unknown[] = [];
  const images: Json[] = [];
  if (typeof block.content === "string") texts.push(block.content);
  else if (Array.isArray(block.content)) {
    block.content.forEach((inner: Json, k) => {
      const at = `${path}.content.${k}`;
      if (inner.type === "text") texts.push(inner.text);
      else if (inner.type === "image") images.push(imagePart(inner, at));
      else if (inner.type === "document") texts.push(documentText(inner, at));
      else throw unsupportedBlock(at, inner.type);
    });
  }
  if (images.length > 0) {
    texts.push(`[${images.length} image(s) of this result follow in the next user message.]`);
  }
  const text = joinText(texts);
  return {
    message: {
      role: "tool",
      tool_call_id: block.tool_use_id,
      content: block.is_error === true ? `Error: ${text}` : text,
    },
    images,
  };
}

function imagePart(block: Json, path: string): Json {
  const source = block.source as Json;
  if (source.type === "base64") {
    return {
      type: "image_url",
      image_url: { url: `data:${source.media_type};base64,${source.data}` },
    };
  }
  if (source.type === "url") return { type: "image_url", image_url: { url: source.url } };
  throw untranslatable(
    `${path}.source`,
    `an image with a "${String(source.type)}" source cannot be sent; use a base64 or url source`,
  );
}

function documentText(block: Json, path: string): string {
  const source = block.source as Json;
  if (source.type === "text" && typeof source.data === "string") {
    return typeof block.title === "string" && block.title
      ? `${block.title}${TEXT_SEPARATOR}${source.data}`
      : source.data;
  }
  const what = source.type === "base64" || source.type === "url"
    ? "a PDF document"
    : `a document with a "${String(source.type)}" source`;
  throw untranslatable(path, `${what} cannot be sent; send its text instead`);
}

function chatTool(tool: Json): Json {
  const fn: Json = { name: tool.name };
  if (typeof tool.description === "string") fn.description = tool.description;
  fn.parameters = tool.input_schema ?? EMPTY_SCHEMA;
  if (typeof tool.strict === "boolean") fn.strict = tool.strict;
  return { type: "function", function: fn };
}

function toolChoice(choice: Json | undefined): Json {
  const out: Json = {};
  switch (choice?.type) {
    case "auto":
    case "none":
      out.tool_choice = choice.type;
      break;
    case "any":
      out.tool_choice = "required";
      break;
    case "tool":
      out.tool_choice = { type: "function", function: { name: choice.name } };
      break;
  }
  if (choice?.disable_parallel_tool_use === true) out.parallel_tool_calls = false;
  return out;
}

function joinText(texts: unknown[]): string {
  return texts.filter((text) => typeof text === "string" && text).join(TEXT_SEPARATOR);
}

function unsupportedBlock(path: string, type: unknown) {
  return untranslatable(path, `a "${String(type)}" block cannot be sent`);
}

function untranslatable(path: string, reason: string) {
  return unsupportedParam(path, `Cannot send ${path} to an OpenAI-compatible model: ${reason}.`);
}
