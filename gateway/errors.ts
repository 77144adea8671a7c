/**
 * One error type for the data plane. A GatewayError carries a stable code
 * from a literal union, an HTTP status and a cause; this module is the one
 * place that turns it into the caller's dialect: `renderError` for OpenAI's
 * shape, `renderAnthropicError` for Anthropic's.
 */

export type ErrorCode =
  | "invalid_request_error"
  | "invalid_json"
  | "invalid_agent_identity"
  | "request_too_large"
  | "missing_api_key"
  | "invalid_api_key"
  | "revoked_api_key"
  | "expired_api_key"
  | "account_suspended"
  | "insufficient_scope"
  /** The key's IP allowlist does not hold the client's address (403). */
  | "ip_not_allowed"
  /** The key's requests or tokens per minute are used up on this replica (429). */
  | "rate_limit_exceeded"
  | "model_not_found"
  | "model_not_allowed"
  | "route_unavailable"
  | "unsupported_operation"
  | "not_found"
  | "method_not_allowed"
  | "upstream_error"
  | "upstream_timeout"
  | "upstream_rate_limited"
  /** The upstream said it is overloaded (Anthropic's 529): Anthropic callers get 529 too. */
  | "upstream_overloaded"
  /** The balance cannot cover the request's worst case (402). */
  | "insufficient_quota"
  /** The API key's spend limit cannot cover the request's worst case (402). */
  | "key_spend_limit_reached"
  /** The upstream refused the caller's own provider key (BYOK; 400). */
  | "provider_key_rejected"
  /** The account's registered provider key cannot be decrypted here (BYOK; 503). */
  | "provider_key_unavailable"
  | "internal_error";

const TYPES: Record<number, string> = {
  400: "invalid_request_error",
  401: "authentication_error",
  402: "insufficient_quota",
  403: "permission_error",
  404: "invalid_request_error",
  405: "invalid_request_error",
  413: "invalid_request_error",
  429: "rate_limit_error",
};

const ANTHROPIC_TYPES: Record<number, string> = {
  400: "invalid_request_error",
  401: "authentication_error",
  402: "billing_error",
  403: "permission_error",
  404: "not_found_error",
  413: "request_too_large",
  429: "rate_limit_error",
  529: "overloaded_error",
};

/** Anthropic's own status for an overloaded API; no other dialect uses it. */
const OVERLOADED = 529;

export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly param: string | null;
  /** False when retrying cannot help (a revoked key, a model not allowed). */
  readonly retryable: boolean;
  /** Seconds the caller should wait, when known (an upstream's Retry-After). */
  readonly retryAfter?: number;

  constructor(
    code: ErrorCode,
    status: number,
    message: string,
    options: { param?: string; retryable?: boolean; retryAfter?: number; cause?: unknown } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = "GatewayError";
    this.code = code;
    this.status = status;
    this.param = options.param ?? null;
    this.retryable = options.retryable ?? (status === 429 || status >= 500);
    this.retryAfter = options.retryAfter;
  }

  /** The OpenAI error `type` for this status. */
  get type(): string {
    return TYPES[this.status] ?? (this.status >= 500 ? "api_error" : "invalid_request_error");
  }

  /** The HTTP status in Anthropic's dialect: an overloaded upstream is its 529. */
  get anthropicStatus(): number {
    return this.code === "upstream_overloaded" ? OVERLOADED : this.status;
  }

  /** The Anthropic error `type` for this error's Anthropic status. */
  get anthropicType(): string {
    return ANTHROPIC_TYPES[this.anthropicStatus] ??
      (this.anthropicStatus >= 500 ? "api_error" : "invalid_request_error");
  }
}

export function asGatewayError(error: unknown): GatewayError {
  if (error instanceof GatewayError) return error;
  return new GatewayError("internal_error", 500, "The gateway failed to handle this request.", {
    cause: error,
  });
}

/** Renders an error as OpenAI's `{error:{message,type,param,code}}`. */
export function renderError(error: GatewayError, requestId: string): Response {
  const body = JSON.stringify({
    error: { message: error.message, type: error.type, param: error.param, code: error.code },
  });
  return new Response(body, { status: error.status, headers: errorHeaders(error, requestId) });
}

/**
 * Renders an error as Anthropic's `{type:"error", error:{type,message},
 * request_id}`, with the request id also in `request-id`, where Anthropic's
 * SDKs read it.
 */
export function renderAnthropicError(error: GatewayError, requestId: string): Response {
  const body = JSON.stringify({
    type: "error",
    error: { type: error.anthropicType, message: error.message },
    request_id: requestId,
  });
  const headers = errorHeaders(error, requestId);
  headers.set("request-id", requestId);
  return new Response(body, { status: error.anthropicStatus, headers });
}

function errorHeaders(error: GatewayError, requestId: string): Headers {
  const headers = new Headers({
    "content-type": "application/json",
    "x-request-id": requestId,
    "x-should-retry": String(error.retryable),
  });
  if (error.retryAfter !== undefined) headers.set("retry-after", String(error.retryAfter));
  return headers;
}
