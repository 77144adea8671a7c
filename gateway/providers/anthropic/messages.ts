/**
 * OpenAI chat messages as Anthropic's `system` and `messages`.
 *
 * - system and developer messages, wherever they are, are concatenated (blank
 *   line between) into the top-level `system`: Anthropic has no mid-turn system
 *   role.
 * - user and assistant content becomes content blocks: text parts, images
 *   (data: URLs as base64 sources, http(s) URLs as url sources), and assistant
 *   tool_calls as tool_use blocks with their JSON arguments parsed.
 * - tool messages become tool_result blocks in a user message.
 * - consecutive messages of the same role are merged into one (consecutive
 *   tool results included), as Anthropic requires user and assistant turns to
 *   alternate. Empty text is dropped: Anthropic rejects empty text blocks.
 */
import { unsupportedParam } from "./errors.ts";

export type ContentBlock =
  | { type: "text"; text: string }
  | {
    type: "image";
    source: { type: "base64"; media_type: string; data: string } | { type: "url"; url: string };
  }
  | { type: "tool_use"; id: string; name: string; input: Record<string, unknown> }
  | { type: "tool_result"; tool_use_id: string; content: string | ContentBlock[] };

export interface AnthropicMessage {
  role: "user" | "assistant";
  content: ContentBlock[];
}

type Json = Record<string, unknown>;

const DATA_URL = /^data:([^;,]+);base64,(.*)$/s;
const QUOTE_LIMIT = 100;

export function translateMessages(
  messages: readonly unknown[],
): { system: string | undefined; messages: AnthropicMessage[] } {
  const system: string[] = [];
  const out: AnthropicMessage[] = [];
  const push = (role: AnthropicMessage["role"], content: ContentBlock[]) => {
    if (content.length === 0) return;
    const last = out.at(-1);
    if (last?.role === role) last.content.push(...content);
    else out.push({ role, content });
  };

  messages.forEach((value, i) => {
    const message = value as Json;
    const at = `messages[${i}]`;
    switch (message.role) {
      case "system":
      case "developer": {
        const text = textOf(message.content, `${at}.content`);
        if (text) system.push(text);
        break;
      }
      case "user":
        push("user", contentBlocks(message.content, `${at}.content`));
        break;
      case "assistant":
        push("assistant", [
          ...contentBlocks(message.content, `${at}.content`),
          ...toolUses(message.tool_calls, `${at}.tool_calls`),
        ]);
        break;
      case "tool":
        push("user", [toolResult(message, at)]);
        break;
      default:
        throw unsupportedParam(
          `${at}.role`,
          `Cannot translate ${at} for an Anthropic provider: role "${
            String(message.role)
          }" is not supported; use "tool" messages for tool results.`,
        );
    }
  });
  return { system: system.length > 0 ? system.join("\n\n") : undefined, messages: out };
}

/** The text of a string or an array of text parts (system, developer and tool content). */
function textOf(content: unknown, param: string): string {
  if (content === null || content === undefined) return "";
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) throw badContent(param, "it must be a string or an array of parts");
  return content.map((part, j) => {
    const p = part as Json;
    if (p?.type !== "text" || typeof p.text !== "string") {
      throw badContent(`${param}[${j}]`, "only text parts are allowed here");
    }
    return p.text;
  }).join("");
}

function contentBlocks(content: unknown, param: string): ContentBlock[] {
  if (content === null || content === undefined) return [];
  if (typeof content === "string") return content ? [{ type: "text", text: content }] : [];
  if (!Array.isArray(content)) throw badContent(param, "it must be a string or an array of parts");
  const blocks: ContentBlock[] = [];
  content.forEach((part, j) => {
    const p = part as Json;
    const at = `${param}[${j}]`;
    const text = p?.type === "text" ? p.text : p?.type === "refusal" ? p.refusal : undefined;
    if (typeof text === "string") {
      if (text) blocks.push({ type: "text", text });
    } else if (p?.type === "image_url") {
      blocks.push(image(p.image_url, `${at}.image_url`));
    } else {
      throw badContent(
        `${at}.type`,
        `part type "${String(p?.type)}" is not supported (text and image_url are)`,
      );
    }
  });
  return blocks;
}

function image(value: unknown, param: string): ContentBlock {
  const url = typeof value === "string" ? value : (value as Json | null)?.url;
  if (typeof url !== "string") throw badContent(`${param}.url`, "an image URL is required");
  const data = DATA_URL.exec(url);
  if (data) {
    return { type: "image", source: { type: "base64", media_type: data[1]!, data: data[2]! } };
  }
  if (/^https?:\/\//i.test(url)) return { type: "image", source: { type: "url", url } };
  throw badContent(`${param}.url`, "it must be a base64 data: URL or an http(s) URL");
}

function toolUses(calls: unknown, param: string): ContentBlock[] {
  if (calls === null || calls === undefined) return [];
  if (!Array.isArray(calls)) throw badContent(param, "it must be an array");
  return calls.map((value, j) => {
    const call = value as Json;
    const fn = call?.function as Json | undefined;
    const at = `${param}[${j}]`;
    if (typeof call?.id !== "string" || typeof fn?.name !== "string") {
      throw badContent(at, "a function tool call needs an id and a function name");
    }
    return { type: "tool_use", id: call.id, name: fn.name, input: toolInput(fn.arguments, at) };
  });
}

function toolInput(args: unknown, at: string): Record<string, unknown> {
  const param = `${at}.function.arguments`;
  if (args === undefined || args === null || args === "") return {};
  if (typeof args !== "string") throw badContent(param, "it must be a JSON string");
  let input: unknown;
  try {
    input = JSON.parse(args);
  } catch {
    throw unsupportedParam(
      param,
      `Cannot parse ${param} "${quote(args)}": it is not valid JSON.`,
    );
  }
  if (!input || typeof input !== "object" || Array.isArray(input)) {
    throw unsupportedParam(
      param,
      `Cannot parse ${param} "${quote(args)}": it must be a JSON object.`,
    );
  }
  return input as Record<string, unknown>;
}

function toolResult(message: Json, at: string): ContentBlock {
  if (typeof message.tool_call_id !== "string") {
    throw badContent(`${at}.tool_call_id`, "a tool message needs the id of the call it answers");
  }
  const content = typeof message.content === "string"
    ? message.content
    : contentBlocks(message.content, `${at}.content`);
  return { type: "tool_result", tool_use_id: message.tool_call_id, content };
}

function badContent(param: string, reason: string) {
  return unsupportedParam(param, `Cannot translate ${param} for an Anthropic provider: ${reason}.`);
}

function quote(text: string): string {
  return text.length > QUOTE_LIMIT ? `${text.slice(0, QUOTE_LIMIT)}…` : text;
}
