/**
 * OpenAI function tools and tool_choice as Anthropic `tools` and
 * `tool_choice`, with `parallel_tool_calls: false` as
 * `disable_parallel_tool_use`.
 *
 * A `json_schema` response format is served by one more tool, RESPONSE_TOOL,
 * whose input schema is the caller's schema: it is forced when the caller
 * offers no tools of their own (or tool_choice "none"), and with tool_choice
 * "auto" the model must call some tool (`any`), the response tool standing
 * for a plain answer. Its input comes back as the message content
 * (response.ts, stream.ts). With tool_choice "required" or a named function
 * the caller asked for a tool call, so the schema has nothing to shape and no
 * response tool is added.
 */
import { unsupportedParam } from "./errors.ts";

/** The tool that carries a `json_schema` answer; a caller's tool may not use the name. */
export const RESPONSE_TOOL = "json_response";

export interface AnthropicTool {
  name: string;
  description?: string;
  input_schema: Record<string, unknown>;
}

export type ToolChoice =
  | { type: "auto" | "any"; disable_parallel_tool_use?: boolean }
  | { type: "tool"; name: string; disable_parallel_tool_use?: boolean }
  | { type: "none" };

export interface ResponseSchema {
  schema: Record<string, unknown>;
  description?: string;
}

export interface TranslatedTools {
  tools?: AnthropicTool[];
  tool_choice?: ToolChoice;
  /** Whether RESPONSE_TOOL was added: its call is the answer, not a tool call. */
  structured: boolean;
}

type Json = Record<string, unknown>;

const EMPTY_SCHEMA = { type: "object", properties: {} };

export function translateTools(body: Json, responseSchema: ResponseSchema | null): TranslatedTools {
  const tools = callerTools(body.tools);
  const choice = body.tool_choice ?? null;
  const forcesCall = choice === "required" || (choice !== null && typeof choice === "object");
  if (responseSchema && !forcesCall) {
    if (tools.some((tool) => tool.name === RESPONSE_TOOL)) {
      throw unsupportedParam(
        "tools",
        `Cannot use a json_schema response_format with a tool named "${RESPONSE_TOOL}" on an Anthropic provider: the gateway uses that name to carry the structured answer.`,
      );
    }
    const responseTool: AnthropicTool = {
      name: RESPONSE_TOOL,
      description: responseSchema.description ?? "Give the final answer, as this tool's input.",
      input_schema: responseSchema.schema,
    };
    const withTools = tools.length > 0 && choice !== "none";
    return {
      tools: [...tools, responseTool],
      tool_choice: withTools
        ? { type: "any", ...parallel(body) }
        : { type: "tool", name: RESPONSE_TOOL },
      structured: true,
    };
  }
  if (tools.length === 0) return { structured: false };
  return { tools, tool_choice: toolChoice(choice, body), structured: false };
}

function callerTools(value: unknown): AnthropicTool[] {
  if (value === null || value === undefined) return [];
  if (!Array.isArray(value)) {
    throw unsupportedParam("tools", "Cannot translate tools: it must be an array.");
  }
  return value.map((item, i) => {
    const tool = item as Json;
    const fn = tool?.function as Json | undefined;
    if (tool?.type !== "function" || typeof fn?.name !== "string") {
      throw unsupportedParam(
        `tools[${i}]`,
        `Cannot translate tools[${i}] for an Anthropic provider: only function tools with a name are supported.`,
      );
    }
    const translated: AnthropicTool = {
      name: fn.name,
      input_schema: (fn.parameters as Json | undefined) ?? EMPTY_SCHEMA,
    };
    if (typeof fn.description === "string") translated.description = fn.description;
    return translated;
  });
}

function toolChoice(choice: unknown, body: Json): ToolChoice | undefined {
  if (choice === "none") return { type: "none" };
  if (choice === null || choice === "auto") {
    return body.parallel_tool_calls === false ? { type: "auto", ...parallel(body) } : undefined;
  }
  if (choice === "required") return { type: "any", ...parallel(body) };
  const name = ((choice as Json)?.function as Json | undefined)?.name;
  if ((choice as Json)?.type === "function" && typeof name === "string") {
    return { type: "tool", name, ...parallel(body) };
  }
  throw unsupportedParam(
    "tool_choice",
    `Cannot translate tool_choice ${
      JSON.stringify(choice)
    } for an Anthropic provider: use "auto", "none", "required" or a named function.`,
  );
}

function parallel(body: Json): { disable_parallel_tool_use?: boolean } {
  return body.parallel_tool_calls === false ? { disable_parallel_tool_use: true } : {};
}
