/** Maps an upstream's failure (HTTP status or network error) to a GatewayError. */
import { GatewayError } from "../errors.ts";
import type { UpstreamResponse } from "./provider.ts";

const MAX_ERROR_BODY = 8 * 1024;

/**
 * `byok`: the credential sent was the customer's own key (billing/byok.ts),
 * so a refusal is the caller's to fix, not the operator's.
 */
export async function upstreamHttpError(
  response: UpstreamResponse,
  provider: string,
  byok = false,
): Promise<GatewayError> {
  const detail = await readErrorMessage(response);
  const retryAfter = parseRetryAfter(response.headers.get("retry-after"));
  const status = response.status;
  if (status === 429) {
    return new GatewayError(
      "upstream_rate_limited",
      429,
      `Provider "${provider}" is rate limiting requests${suffix(detail)}`,
      { retryAfter },
    );
  }
  if (status === 400 || status === 404 || status === 409 || status === 422) {
    return new GatewayError(
      "invalid_request_error",
      400,
      `Provider "${provider}" rejected the request${suffix(detail)}`,
      { retryable: false },
    );
  }
  if ((status === 401 || status === 403) && byok) {
    return new GatewayError(
      "provider_key_rejected",
      400,
      `Provider "${provider}" refused your provider key (HTTP ${status})${suffix(detail)} ` +
        "Check the key passed as provider_key, or the one registered for this provider.",
      { param: "provider_key", retryable: false },
    );
  }
  if (status === 401 || status === 403) {
    return new GatewayError(
      "upstream_error",
      502,
      `Provider "${provider}" refused the gateway's credential (HTTP ${status}); the operator must fix it.`,
      // Not a reason to retry or fall back: another attempt gets the same answer.
      { retryable: false },
    );
  }
  if (status === 529) {
    // Anthropic's "overloaded": worth another attempt, shown to Anthropic callers as 529.
    return new GatewayError(
      "upstream_overloaded",
      503,
      `Provider "${provider}" is overloaded${suffix(detail)}`,
      { retryAfter },
    );
  }
  return new GatewayError(
    "upstream_error",
    502,
    `Provider "${provider}" failed with HTTP ${status}${suffix(detail)}`,
    { retryAfter },
  );
}

export function upstreamNetworkError(error: unknown, provider: string): GatewayError {
  if (error instanceof GatewayError) return error;
  if (error instanceof DOMException && error.name === "TimeoutError") {
    return new GatewayError(
      "upstream_timeout",
      504,
      `Provider "${provider}" did not answer in time.`,
      { cause: error },
    );
  }
  return new GatewayError("upstream_error", 502, `Cannot reach provider "${provider}".`, {
    cause: error,
  });
}

function suffix(detail: string | null): string {
  return detail ? `: ${detail}` : ".";
}

async function readErrorMessage(response: UpstreamResponse): Promise<string | null> {
  try {
    const text = (await response.text()).slice(0, MAX_ERROR_BODY);
    try {
      const json = JSON.parse(text);
      const message = json?.error?.message ?? json?.message;
      return typeof message === "string" ? message : null;
    } catch {
      return text.trim() ? text.trim().slice(0, 500) : null;
    }
  } catch {
    return null;
  }
}

/** Retry-After in seconds, from either delta-seconds or an HTTP date. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, Math.ceil((date - now) / 1000));
}
