/**
 * A tool call's arguments between OpenAI's JSON string and Anthropic's
 * `input` object, both ways, so that what does not parse survives a round
 * trip: arguments that are not a JSON object become the input
 * `{ "_unparsed_arguments": "<the raw string>" }`, and that input, sent back
 * in the history, becomes the raw string again.
 */

export const UNPARSED_ARGUMENTS = "_unparsed_arguments";

type Json = Record<string, unknown>;

/** OpenAI arguments as an Anthropic input: "" is `{}` (a call without arguments). */
export function toInput(args: unknown): Json {
  if (args === undefined || args === null || args === "") return {};
  if (isObject(args)) return args; // a vendor that sends the object itself
  if (typeof args !== "string") return { [UNPARSED_ARGUMENTS]: JSON.stringify(args) };
  try {
    const input = JSON.parse(args);
    if (isObject(input)) return input;
  } catch {
    // not JSON: kept raw below
  }
  return { [UNPARSED_ARGUMENTS]: args };
}

/** An Anthropic input as OpenAI arguments. */
export function toArguments(input: unknown): string {
  const raw = (input as Json | null | undefined)?.[UNPARSED_ARGUMENTS];
  if (typeof raw === "string" && Object.keys(input as Json).length === 1) return raw;
  return JSON.stringify(input ?? {});
}

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
