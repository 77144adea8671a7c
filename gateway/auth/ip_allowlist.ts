/**
 * A key's IP allowlist, checked against the client's address: the socket
 * peer's, unless the peer is one of the operator's trusted proxies
 * (TOLLGATE_TRUSTED_PROXIES), in which case X-Forwarded-For is read from the
 * right, skipping trusted proxies, and the first address that is not one is
 * the client. An untrusted peer's X-Forwarded-For is ignored: anyone can send
 * one. Only keys with an allowlist pay for any of this.
 */
import {
  formatIp,
  inAnyRange,
  type IpBits,
  type IpRange,
  parseIp,
} from "../../schema/ip_ranges.ts";
import { GatewayError } from "../errors.ts";

/** Where a request came from, as the server saw it. */
export interface ClientOrigin {
  /** The socket peer's address, or null when unknown (not TCP). */
  peer: string | null;
  trustedProxies: readonly IpRange[];
}

/** Throws 403 ip_not_allowed unless the client's address is in `allowed`. */
export function assertIpAllowed(
  allowed: readonly IpRange[],
  headers: Headers,
  origin: ClientOrigin,
): void {
  const client = clientAddress(origin.peer, headers.get("x-forwarded-for"), origin.trustedProxies);
  if (client && inAnyRange(client, allowed)) return;
  const seen = client ? formatIp(client) : "an unknown address";
  throw new GatewayError(
    "ip_not_allowed",
    403,
    `This API key may not be used from ${seen}: it is not in the key's IP allowlist.`,
    { retryable: false },
  );
}

/** The client's address, or null when it cannot be read. */
export function clientAddress(
  peer: string | null,
  forwardedFor: string | null,
  trustedProxies: readonly IpRange[],
): IpBits | null {
  const address = peer === null ? null : parseHost(peer);
  if (!address || !forwardedFor || !inAnyRange(address, trustedProxies)) return address;
  const hops = forwardedFor.split(",");
  let client: IpBits = address;
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = parseHost(hops[i]!.trim());
    // A hop that is not an address cannot be vouched for: stop at the last good one.
    if (!hop) return inAnyRange(client, trustedProxies) ? null : client;
    client = hop;
    if (!inAnyRange(hop, trustedProxies)) return hop;
  }
  // Every hop is a trusted proxy: the leftmost is as close to the client as we know.
  return client;
}

/** An address as peers and proxies write it: bare, "[v6]", "[v6]:port", "v4:port" or "v6%zone". */
function parseHost(text: string): IpBits | null {
  let host = text;
  if (host.startsWith("[")) {
    const end = host.indexOf("]");
    if (end < 0) return null;
    host = host.slice(1, end);
  } else if (host.indexOf(":") > 0 && host.indexOf(":") === host.lastIndexOf(":")) {
    host = host.slice(0, host.indexOf(":"));
  }
  const zone = host.indexOf("%");
  if (zone >= 0) host = host.slice(0, zone);
  return parseIp(host);
}
