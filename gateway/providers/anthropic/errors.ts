/**
 * Anthropic failures as GatewayErrors. HTTP errors go through the shared
 * mapping (upstream_error.ts reads Anthropic's `{type:"error", error:{type,
 * message}}` body as it reads OpenAI's; 529 overloaded comes out as a
 * retryable upstream_overloaded). An `event: error` inside a stream carries only the error's
 * type, mapped here the same way its HTTP status would be.
 */
import { GatewayError } from "../../errors.ts";

/** A request field Anthropic cannot honour: a 400 naming the field, not retryable. */
export function unsupportedParam(param: string, message: string): GatewayError {
  return new GatewayError("invalid_request_error", 400, message, { param, retryable: false });
}

/** The error an `event: error` in the upstream stream carries, e.g. `overloaded_error`. */
export function streamEventError(data: unknown, provider: string): GatewayError {
  const error = (data as { error?: { type?: unknown; message?: unknown } } | null)?.error;
  const type = typeof error?.type === "string" ? error.type : "api_error";
  const detail = typeof error?.message === "string" ? `: ${error.message}` : ".";
  switch (type) {
    case "rate_limit_error":
      return new GatewayError(
        "upstream_rate_limited",
        429,
        `Provider "${provider}" is rate limiting requests${detail}`,
      );
    case "invalid_request_error":
    case "not_found_error":
    case "request_too_large":
      return new GatewayError(
        "invalid_request_error",
        400,
        `Provider "${provider}" rejected the request${detail}`,
        { retryable: false },
      );
    case "authentication_error":
    case "permission_error":
      return new GatewayError(
        "upstream_error",
        502,
        `Provider "${provider}" refused the gateway's credential (${type}); the operator must fix it.`,
        { retryable: false },
      );
    case "overloaded_error":
      return new GatewayError(
        "upstream_overloaded",
        503,
        `Provider "${provider}" is overloaded${detail}`,
      );
    default: // api_error and anything new: worth another attempt
      return new GatewayError(
        "upstream_error",
        502,
        `Provider "${provider}" failed mid-stream with ${type}${detail}`,
      );
  }
}

/** An upstream body or event that is not what the Messages API sends. */
export function malformedReply(provider: string, what: string, cause?: unknown): GatewayError {
  return new GatewayError(
    "upstream_error",
    502,
    `Provider "${provider}" sent ${what} that is not a Messages API reply.`,
    { cause },
  );
}
