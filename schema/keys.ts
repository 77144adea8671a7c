/**
 * Secret formats and hashing shared by both planes.
 *
 * An API key is `tg_` + 32 base62 characters (190 bits of randomness) + a
 * 6-character base62 CRC-32 of the random part, so a mistyped key is refused
 * without a lookup. Only its keyed hash (HMAC-SHA-256 under the server
 * secret), a display prefix and the last 4 characters are stored.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";

const ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const BODY_LENGTH = 32;
const CHECKSUM_LENGTH = 6;
const DISPLAY_LENGTH = 8;

export const API_KEY_PREFIX = "tg_";
export const ADMIN_TOKEN_PREFIX = "tga_";

export interface IssuedSecret {
  /** The full secret: shown once, never stored. */
  secret: string;
  /** Display prefix such as `tg_AbCd1234`. */
  prefix: string;
  last4: string;
}

/** Generates a new secret with the given prefix (`tg_` for API keys). */
export function generateSecret(prefix = API_KEY_PREFIX): IssuedSecret {
  const body = randomBase62(BODY_LENGTH);
  const secret = prefix + body + checksum(body);
  return {
    secret,
    prefix: secret.slice(0, prefix.length + DISPLAY_LENGTH),
    last4: secret.slice(-4),
  };
}

/** True when `secret` has the format and a valid checksum; no lookup needed. */
export function isWellFormedSecret(secret: string, prefix = API_KEY_PREFIX): boolean {
  if (secret.length !== prefix.length + BODY_LENGTH + CHECKSUM_LENGTH) return false;
  if (!secret.startsWith(prefix)) return false;
  const body = secret.slice(prefix.length, prefix.length + BODY_LENGTH);
  for (let i = 0; i < body.length; i++) {
    if (ALPHABET.indexOf(body[i]!) < 0) return false;
  }
  return checksum(body) === secret.slice(prefix.length + BODY_LENGTH);
}

/** The keyed hash stored for a secret: HMAC-SHA-256 under the hashing key, hex. */
export function hashSecret(secret: string, hashingKey: Uint8Array): string {
  return createHmac("sha256", hashingKey).update(secret).digest("hex");
}

/** Constant-time comparison of two hex hashes. */
export function hashesEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  return timingSafeEqual(new TextEncoder().encode(a), new TextEncoder().encode(b));
}

function randomBase62(length: number): string {
  let out = "";
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      // 248 = 4 * 62: rejection sampling keeps every character equally likely.
      if (byte < 248 && out.length < length) out += ALPHABET[byte % 62];
    }
  }
  return out;
}

function checksum(body: string): string {
  let n = crc32(new TextEncoder().encode(body));
  let out = "";
  for (let i = 0; i < CHECKSUM_LENGTH; i++) {
    out = ALPHABET[n % 62] + out;
    n = Math.floor(n / 62);
  }
  return out;
}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[i] = c >>> 0;
  }
  return table;
})();

function crc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) crc = CRC_TABLE[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}
