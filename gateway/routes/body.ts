/** Reads and validates a JSON request body, refusing oversized ones early. */
import type { z } from "zod";
import { GatewayError } from "../errors.ts";
import { concatBytes } from "../streaming/bytes.ts";

/** Reads at most `maxBytes`; a larger body gets 413 before it is read whole. */
export async function readJsonBody(request: Request, maxBytes: number): Promise<unknown> {
  const declared = Number(request.headers.get("content-length") ?? NaN);
  if (declared > maxBytes) throw tooLarge(maxBytes);
  if (declared > 0) {
    // The framing holds a declared body to its length: read it in one go. (Not
    // through request.body, whose getter would build a stream for it first.)
    return parseJson(await request.text());
  }
  if (declared === 0 || !request.body) {
    throw new GatewayError("invalid_json", 400, "The request has no body: send a JSON object.", {
      retryable: false,
    });
  }
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      // Not cancel(): Deno's server would then drain the rest of the upload.
      reader.releaseLock();
      throw tooLarge(maxBytes);
    }
    chunks.push(value);
  }
  const bytes = chunks.length === 1 ? chunks[0]! : concatBytes(chunks);
  return parseJson(new TextDecoder().decode(bytes));
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new GatewayError("invalid_json", 400, "The request body is not valid JSON.", {
      retryable: false,
      cause: error,
    });
  }
}

/**
 * A bound on a request's prompt tokens that costs nothing: a token is at least
 * one byte, so the body's declared length bounds it (undefined when chunked).
 */
export function promptBound(request: Request): number | undefined {
  const declared = Number(request.headers.get("content-length") ?? NaN);
  return declared >= 0 ? declared : undefined;
}

/** Validates `value` with `schema`; the first problem becomes a 400 naming its param. */
export function validate<T extends z.ZodType>(schema: T, value: unknown): z.infer<T> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const param = issue.path.reduce<string>(
    (path, part) =>
      typeof part === "number"
        ? `${path}[${part}]`
        : path
        ? `${path}.${String(part)}`
        : String(part),
    "",
  );
  const message = param
    ? `Invalid '${param}': ${issue.message}`
    : `Invalid request: ${issue.message}`;
  throw new GatewayError("invalid_request_error", 400, message, {
    param: param || undefined,
    retryable: false,
  });
}

function tooLarge(maxBytes: number): GatewayError {
  return new GatewayError(
    "request_too_large",
    413,
    `The request body is larger than ${maxBytes} bytes.`,
    { retryable: false },
  );
}
