/**
 * Errors in Anthropic's dialect: the error type for each status, the body
 * `{type:"error", error:{type,message}, request_id}`, and the headers
 * Anthropic's SDKs read (request-id, x-should-retry, retry-after). An
 * overloaded upstream is Anthropic's 529 to Anthropic callers only.
 */
import assert from "node:assert/strict";
import {
  type ErrorCode,
  GatewayError,
  renderAnthropicError,
  renderError,
} from "../../gateway/errors.ts";

const REQUEST_ID = "req_0123456789abcdef0123456789abcdef";

Deno.test("each status renders as Anthropic's error type, in Anthropic's body", async () => {
  const cases: [ErrorCode, number, number, string][] = [
    ["invalid_request_error", 400, 400, "invalid_request_error"],
    ["invalid_api_key", 401, 401, "authentication_error"],
    ["invalid_request_error", 402, 402, "billing_error"],
    ["model_not_allowed", 403, 403, "permission_error"],
    ["model_not_found", 404, 404, "not_found_error"],
    ["method_not_allowed", 405, 405, "invalid_request_error"],
    ["request_too_large", 413, 413, "request_too_large"],
    ["upstream_rate_limited", 429, 429, "rate_limit_error"],
    ["internal_error", 500, 500, "api_error"],
    ["upstream_error", 502, 502, "api_error"],
    ["route_unavailable", 503, 503, "api_error"],
    ["upstream_timeout", 504, 504, "api_error"],
    ["upstream_error", 529, 529, "overloaded_error"],
    ["upstream_overloaded", 503, 529, "overloaded_error"],
  ];
  for (const [code, status, rendered, type] of cases) {
    const message = `Something about ${code}.`;
    const response = renderAnthropicError(new GatewayError(code, status, message), REQUEST_ID);
    const what = `${code} ${status}`;
    assert.equal(response.status, rendered, what);
    assert.deepEqual(await response.json(), {
      type: "error",
      error: { type, message },
      request_id: REQUEST_ID,
    }, what);
  }
});

Deno.test("Anthropic errors carry the request id twice, whether to retry, and when", () => {
  const limited = new GatewayError("upstream_rate_limited", 429, "Slow down.", { retryAfter: 7 });
  const refused = new GatewayError("revoked_api_key", 401, "Revoked.", { retryable: false });
  for (
    const [error, retry, retryAfter] of [[limited, "true", "7"], [refused, "false", null]] as const
  ) {
    const headers = renderAnthropicError(error, REQUEST_ID).headers;
    assert.equal(headers.get("content-type"), "application/json");
    assert.equal(headers.get("request-id"), REQUEST_ID);
    assert.equal(headers.get("x-request-id"), REQUEST_ID);
    assert.equal(headers.get("x-should-retry"), retry);
    assert.equal(headers.get("retry-after"), retryAfter);
  }
});

Deno.test("an overloaded upstream stays a retryable 503 api_error in OpenAI's dialect", async () => {
  const error = new GatewayError("upstream_overloaded", 503, "Provider is overloaded.");
  assert.equal(error.retryable, true);
  const response = renderError(error, REQUEST_ID);
  assert.equal(response.status, 503);
  assert.equal(response.headers.get("x-request-id"), REQUEST_ID);
  assert.equal(response.headers.get("request-id"), null);
  assert.deepEqual(await response.json(), {
    error: {
      message: "Provider is overloaded.",
      type: "api_error",
      param: null,
      code: "upstream_overloaded",
    },
  });
  assert.equal(renderAnthropicError(error, REQUEST_ID).headers.get("x-should-retry"), "true");
});
