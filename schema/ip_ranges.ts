/**
 * IP addresses and CIDR ranges, as both planes must read them: the control
 * plane validates and canonicalises a key's IP allowlist, the gateway matches
 * client addresses against it (and against its trusted proxies).
 *
 * Every address is held as 128 bits in four 32-bit words, an IPv4 address as
 * its IPv4-mapped IPv6 form (::ffff:a.b.c.d), so that one comparison serves
 * both families and a dual-stack socket's "::ffff:10.0.0.1" matches "10.0.0.0/8".
 */

/** An address: four big-endian 32-bit words. */
export type IpBits = Uint32Array;

export interface IpRange {
  bits: IpBits;
  /** Leading bits that must match, 0..128 (an IPv4 /n is 96 + n). */
  prefix: number;
  /** The canonical text: "10.0.0.0/8", "203.0.113.7", "2001:db8::/32". */
  text: string;
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;
const MAPPED_PREFIX = 96;

/** Parses a bare IPv4 or IPv6 address (no brackets, port or zone), or returns null. */
export function parseIp(text: string): IpBits | null {
  return text.includes(":") ? parseIpv6(text) : parseIpv4(text);
}

function parseIpv4(text: string): IpBits | null {
  const word = ipv4Word(text);
  return word === null ? null : Uint32Array.of(0, 0, 0xffff, word);
}

function ipv4Word(text: string): number | null {
  const match = IPV4.exec(text);
  if (!match) return null;
  let word = 0;
  for (let i = 1; i <= 4; i++) {
    const part = match[i]!;
    // "010" is octal to some parsers and decimal to others: refuse it.
    if (part.length > 1 && part[0] === "0") return null;
    const octet = Number(part);
    if (octet > 255) return null;
    word = word * 256 + octet;
  }
  return word;
}

function parseIpv6(text: string): IpBits | null {
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const head = halves[0] ? halves[0].split(":") : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(":") : [];
  const groups: number[] = [];
  // Only the address's last group may be a dotted quad ("::ffff:1.2.3.4", not "1.2.3.4::").
  const last = halves.length === 2 ? tail : head;
  // A trailing dotted quad stands for the last two groups.
  const dotted = last.length > 0 && last[last.length - 1]!.includes(".")
    ? ipv4Word(last.pop()!)
    : undefined;
  if (dotted === null) return null;
  for (const part of [...head, ...tail]) {
    if (!HEX_GROUP.test(part)) return null;
  }
  const explicit = head.length + tail.length + (dotted === undefined ? 0 : 2);
  if (halves.length === 1 ? explicit !== 8 : explicit > 7) return null;
  for (const part of head) groups.push(parseInt(part, 16));
  for (let i = explicit; i < 8; i++) groups.push(0);
  for (const part of tail) groups.push(parseInt(part, 16));
  if (dotted !== undefined) groups.push(dotted >>> 16, dotted & 0xffff);
  const bits = new Uint32Array(4);
  for (let i = 0; i < 4; i++) bits[i] = (groups[2 * i]! << 16 | groups[2 * i + 1]!) >>> 0;
  return bits;
}

/** True for an IPv4-mapped address (::ffff:a.b.c.d), which is shown as IPv4. */
function isMapped(bits: IpBits): boolean {
  return bits[0] === 0 && bits[1] === 0 && bits[2] === 0xffff;
}

/**
 * Parses "address" or "address/prefix" into a range, or returns why it is
 * not one. A range with bits set past its prefix ("10.1.2.3/8") is refused,
 * with the range it probably meant, rather than silently widened.
 */
export function parseIpRange(text: string): IpRange | string {
  const trimmed = text.trim();
  const slash = trimmed.indexOf("/");
  const address = slash < 0 ? trimmed : trimmed.slice(0, slash);
  const bits = parseIp(address);
  if (!bits) return `"${trimmed}" is not an IPv4 or IPv6 address or CIDR range`;
  const v4 = !address.includes(":");
  const width = v4 ? 32 : 128;
  let prefix = width;
  if (slash >= 0) {
    const length = trimmed.slice(slash + 1);
    if (!/^\d{1,3}$/.test(length) || Number(length) > width) {
      return `"${trimmed}" has a prefix length that is not 0 to ${width}`;
    }
    prefix = Number(length);
  }
  if (v4) prefix += MAPPED_PREFIX;
  const network = maskTo(bits, prefix);
  const range = { bits: network, prefix, text: formatRange(network, prefix) };
  if (!sameBits(bits, network)) {
    return `"${trimmed}" has bits set past its prefix: the range is ${range.text}`;
  }
  return range;
}

/** True when `address` lies in `range`. */
export function inRange(address: IpBits, range: IpRange): boolean {
  for (let word = 0; word < 4; word++) {
    const bits = Math.min(Math.max(range.prefix - 32 * word, 0), 32);
    if (bits === 0) return true;
    const mask = bits === 32 ? -1 : ~(-1 >>> bits);
    if (((address[word]! ^ range.bits[word]!) & mask) !== 0) return false;
  }
  return true;
}

/** True when `address` lies in any of `ranges`. */
export function inAnyRange(address: IpBits, ranges: readonly IpRange[]): boolean {
  for (const range of ranges) if (inRange(address, range)) return true;
  return false;
}

/** An address as text: dotted IPv4 for a mapped address, RFC 5952 IPv6 otherwise. */
export function formatIp(bits: IpBits): string {
  return formatRange(bits, 128);
}

function formatRange(bits: IpBits, prefix: number): string {
  if (isMapped(bits) && prefix >= MAPPED_PREFIX) {
    const w = bits[3]!;
    const address = `${w >>> 24}.${(w >>> 16) & 255}.${(w >>> 8) & 255}.${w & 255}`;
    return prefix === 128 ? address : `${address}/${prefix - MAPPED_PREFIX}`;
  }
  const groups: number[] = [];
  for (const word of bits) groups.push(word >>> 16, word & 0xffff);
  // RFC 5952: the longest run of two or more zero groups (the first on a tie) becomes "::".
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) [bestStart, bestLength] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  const hex = groups.map((g) => g.toString(16));
  const address = bestStart < 0
    ? hex.join(":")
    : `${hex.slice(0, bestStart).join(":")}::${hex.slice(bestStart + bestLength).join(":")}`;
  return prefix === 128 ? address : `${address}/${prefix}`;
}

function maskTo(bits: IpBits, prefix: number): IpBits {
  const out = new Uint32Array(4);
  for (let word = 0; word < 4; word++) {
    const keep = Math.min(Math.max(prefix - 32 * word, 0), 32);
    const mask = keep === 32 ? -1 : ~(-1 >>> keep);
    out[word] = (bits[word]! & mask) >>> 0;
  }
  return out;
}

function sameBits(a: IpBits, b: IpBits): boolean {
  return a[0] === b[0] && a[1] === b[1] && a[2] === b[2] && a[3] === b[3];
}
