/**
 * The text input of the legacy completions `prompt` and the embeddings
 * `input`: a string, an array of strings, an array of token ids, or an array
 * of token-id arrays.
 */
import { z } from "zod";

const tokenId = z.number().int().nonnegative();
const EMPTY = "must not be empty";
const SHAPE =
  "expected a string, an array of strings, an array of token ids, or an array of token-id arrays";

export function textInput(options: { nonEmpty?: boolean } = {}) {
  const min = options.nonEmpty ? 1 : 0;
  return z.union([
    z.string().min(min, EMPTY),
    z.array(z.string().min(min, EMPTY)).min(min, EMPTY),
    z.array(tokenId).min(min, EMPTY),
    z.array(z.array(tokenId).min(min, EMPTY)).min(min, EMPTY),
  ], {
    error: (issue) => {
      if (issue.code !== "invalid_union") return undefined;
      if (issue.input === undefined) return "a value is required";
      if (Array.isArray(issue.input) && issue.input.length === 0 && min > 0) return EMPTY;
      return SHAPE;
    },
  });
}
