/**
 * The inbound Anthropic dialect of POST /v1/messages and
 * /v1/messages/count_tokens: the `anthropic-version` header, the body schema,
 * the rules of each version, and the prompt's token count. Refusals are 400
 * invalid_request_error in Anthropic's wording, `messages.0.content.1.type:
 * Field required`, with that path as the param. The schema reads what the
 * gateway needs and lets every other field through to the upstream.
 */
import { z } from "zod";
import { GatewayError } from "../errors.ts";
import { countMessagesPromptTokens } from "../metering/tokens.ts";

/**
 * The versions Tollgate serves. 2023-01-01, which Anthropic still lists, is
 * left out: its streaming format is not the one the gateway writes.
 */
export const ANTHROPIC_VERSIONS = ["2023-06-01", "2026-10-21"] as const;
export type AnthropicVersion = (typeof ANTHROPIC_VERSIONS)[number];

/** Fields that 2026-10-21 removed: sent at all, even at their defaults, they are refused. */
const REMOVED_IN_2026 = ["temperature", "top_p", "top_k"] as const;
const VERSION_2026 = "2026-10-21";

/**
 * The request's API version. As Anthropic does, a request without the header
 * is refused rather than given a default: which one it meant is not known.
 */
export function anthropicVersion(headers: Headers): AnthropicVersion {
  const value = headers.get("anthropic-version");
  if (value === null) throw invalid("anthropic-version", "header is required");
  const known = ANTHROPIC_VERSIONS.find((version) => version === value);
  if (known) return known;
  throw invalid(
    "anthropic-version",
    `${JSON.stringify(value)} is not a valid version (Tollgate serves ${
      ANTHROPIC_VERSIONS.join(" and ")
    })`,
  );
}

const block = z.looseObject({ type: z.string() });
const textBlock = z.looseObject({ type: z.literal("text"), text: z.string() });

const content = z.union([z.string(), z.array(block)], {
  error: oneOf("a valid string or a list of content blocks"),
});

const message = z.looseObject({ role: z.enum(["user", "assistant"]), content });

export const countTokensBody = z.looseObject({
  model: z.string().min(1),
  messages: z.array(message).min(1, "at least one message is required"),
  system: z.union([z.string(), z.array(textBlock)], {
    error: oneOf("a valid string or a list of text blocks"),
  }).optional(),
  stop_sequences: z.array(z.string()).optional(),
  stream: z.boolean().optional(),
  temperature: z.number().min(0).max(1).optional(),
  top_p: z.number().min(0).max(1).optional(),
  top_k: z.number().int().min(0).optional(),
  tools: z.array(z.looseObject({ name: z.string().min(1) })).optional(),
  tool_choice: z.looseObject({ type: z.string() }).optional(),
  metadata: z.looseObject({ user_id: z.string().nullish() }).optional(),
  thinking: z.looseObject({ type: z.string() }).optional(),
});

export const messagesBody = countTokensBody.extend({ max_tokens: z.number().int().min(1) });

export type CountTokensBody = z.infer<typeof countTokensBody>;
export type MessagesBody = z.infer<typeof messagesBody>;

/** The body of /v1/messages (or, with `countTokens`, of count_tokens) under `version`. */
export function validateMessages(
  raw: unknown,
  version: AnthropicVersion,
  options: { countTokens: true },
): CountTokensBody;
export function validateMessages(
  raw: unknown,
  version: AnthropicVersion,
  options?: { countTokens?: false },
): MessagesBody;
export function validateMessages(
  raw: unknown,
  version: AnthropicVersion,
  options?: { countTokens?: boolean },
): CountTokensBody;
export function validateMessages(
  raw: unknown,
  version: AnthropicVersion,
  options: { countTokens?: boolean } = {},
): CountTokensBody {
  if (version === VERSION_2026 && raw && typeof raw === "object") {
    const removed = REMOVED_IN_2026.find((field) => field in raw);
    if (removed) throw invalid(removed, "Extra inputs are not permitted");
  }
  const schema = options.countTokens ? countTokensBody : messagesBody;
  const result = schema.safeParse(raw, { error: pydanticMessage });
  if (!result.success) throw schemaError(result.error.issues[0]!);
  if (version === VERSION_2026) checkBlocks2026(result.data);
  return result.data;
}

/** Tokens of the prompt (system, messages, tools); call loadTokenizer() first. */
export function countMessagesTokens(body: CountTokensBody): number {
  return countMessagesPromptTokens(body);
}

type Block = z.infer<typeof block>;

/**
 * 2026-10-21 refuses a document block placed directly in an assistant message,
 * and a text block with citations in a user message, directly or inside a
 * search_result block (itself direct or in a tool_result).
 */
function checkBlocks2026(body: CountTokensBody): void {
  body.messages.forEach((message, i) => {
    if (typeof message.content === "string") return;
    message.content.forEach((item, j) => {
      const at = `messages.${i}.content.${j}`;
      if (message.role === "assistant" && item.type === "document") {
        throw invalid(
          `${at}.type`,
          `document blocks are not allowed in assistant messages under anthropic-version ${VERSION_2026}`,
        );
      }
      const cited = message.role === "user" ? citedText(item, at) : null;
      if (cited) {
        throw invalid(
          cited,
          `citations are not allowed on text blocks in user messages under anthropic-version ${VERSION_2026}`,
        );
      }
    });
  });
}

/** The path of the `citations` of a cited text block at or inside `item`, if any. */
function citedText(item: Block, at: string): string | null {
  if (item.type === "text") {
    return Array.isArray(item.citations) && item.citations.length > 0 ? `${at}.citations` : null;
  }
  // A search_result holds text blocks; a tool_result may hold search_result blocks.
  const inside = item.type === "search_result"
    ? "text"
    : item.type === "tool_result"
    ? "search_result"
    : null;
  if (!inside || !Array.isArray(item.content)) return null;
  for (const [k, nested] of item.content.entries()) {
    if (nested?.type !== inside) continue;
    const found = citedText(nested as Block, `${at}.content.${k}`);
    if (found) return found;
  }
  return null;
}

type Issue = z.core.$ZodIssue;

/** The first issue as a 400; inside a union, the branch that got furthest speaks. */
function schemaError(issue: Issue): GatewayError {
  const reported = deepest(issue);
  const path = reported.path.map(String).join(".");
  if (!path) {
    const message = reported.code === "invalid_type"
      ? "The request body must be a JSON object."
      : reported.message;
    return new GatewayError("invalid_request_error", 400, message, { retryable: false });
  }
  return invalid(path, reported.message);
}

function deepest(issue: Issue): Issue {
  if (issue.code !== "invalid_union") return issue;
  let best: Issue | undefined;
  for (const branch of issue.errors) {
    const first = branch[0];
    if (first && first.path.length > (best?.path.length ?? 0)) best = first;
  }
  return best ? deepest({ ...best, path: [...issue.path, ...best.path] }) : issue;
}

const EXPECTED: Record<string, string> = {
  string: "a valid string",
  number: "a valid number",
  int: "a valid integer",
  boolean: "a valid boolean",
  array: "a valid list",
  object: "a valid dictionary",
};

/** Messages in the words of Anthropic's validator (pydantic). */
function pydanticMessage(issue: z.core.$ZodRawIssue): string | undefined {
  if (issue.input === undefined) return "Field required";
  switch (issue.code) {
    case "invalid_type":
      return `Input should be ${EXPECTED[issue.expected] ?? `a valid ${issue.expected}`}`;
    case "invalid_value":
      return `Input should be ${
        issue.values.map((value) => `'${String(value)}'`).join(", ").replace(/, ([^,]*)$/, " or $1")
      }`;
    case "too_small": {
      if (issue.origin === "array") return `List should have at least ${issue.minimum} item(s)`;
      if (issue.origin === "string") {
        return `String should have at least ${issue.minimum} character(s)`;
      }
      const bound = issue.inclusive ? "greater than or equal to" : "greater than";
      return `Input should be ${bound} ${issue.minimum}`;
    }
    case "too_big": {
      const bound = issue.inclusive ? "less than or equal to" : "less than";
      return `Input should be ${bound} ${issue.maximum}`;
    }
    default:
      return undefined;
  }
}

function oneOf(expected: string) {
  return (issue: z.core.$ZodRawIssue) =>
    issue.input === undefined ? "Field required" : `Input should be ${expected}`;
}

function invalid(param: string, reason: string): GatewayError {
  return new GatewayError("invalid_request_error", 400, `${param}: ${reason}`, {
    param,
    retryable: false,
  });
}
