/**
 * Password hashing with scrypt (node:crypto), stored as a PHC string:
 * `$scrypt$ln=15,r=8,p=3$<salt>$<hash>` (base64 without padding).
 *
 * Parameters: N = 2^15, r = 8, p = 3, a 16-byte random salt, a 32-byte
 * hash. That is one of OWASP's equivalent scrypt settings (the same work as
 * N = 2^17, p = 1) at 32 MiB of memory per hash, which bounds what a burst
 * of sign-ins can take. The parameters are read back from each stored
 * string, so raising them later leaves older hashes verifiable, and
 * needsRehash tells a sign-in to upgrade them.
 */
import { Buffer } from "node:buffer";
import { randomBytes, scrypt, timingSafeEqual } from "node:crypto";

interface ScryptParams {
  /** log2 of N, the CPU and memory cost. */
  ln: number;
  r: number;
  p: number;
}

const CURRENT: ScryptParams = { ln: 15, r: 8, p: 3 };
const SALT_BYTES = 16;
const HASH_BYTES = 32;
/** Bounds on stored parameters, so a corrupt row cannot make us allocate gigabytes. */
const MAX_LN = 20;
const MAX_RP = 64;

/** Passwords are 10 to 1024 characters (no composition rules, as NIST SP 800-63B advises). */
export const MIN_PASSWORD_LENGTH = 10;
export const MAX_PASSWORD_LENGTH = 1024;

/** Hashes a password with a fresh salt under the current parameters. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const hash = await derive(password, salt, CURRENT, HASH_BYTES);
  return `$scrypt$ln=${CURRENT.ln},r=${CURRENT.r},p=${CURRENT.p}$${b64(salt)}$${b64(hash)}`;
}

/**
 * True when `password` matches `stored`. With no stored hash (an unknown
 * email, a user without a password) it still does the same scrypt work
 * against a dummy hash and returns false, so the time taken does not tell
 * whether an account exists.
 */
export async function verifyPassword(password: string, stored: string | null): Promise<boolean> {
  const parsed = stored ? parsePhc(stored) : null;
  if (!parsed) {
    await derive(password, DUMMY_SALT, CURRENT, HASH_BYTES);
    return false;
  }
  const candidate = await derive(password, parsed.salt, parsed.params, parsed.hash.length);
  return timingSafeEqual(candidate, parsed.hash);
}

/** True when `stored` was made with other parameters than the current ones. */
export function needsRehash(stored: string): boolean {
  const parsed = parsePhc(stored);
  return !parsed || parsed.params.ln !== CURRENT.ln || parsed.params.r !== CURRENT.r ||
    parsed.params.p !== CURRENT.p || parsed.hash.length !== HASH_BYTES;
}

const DUMMY_SALT = randomBytes(SALT_BYTES);

const PHC = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,3}),p=(\d{1,3})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/;

function parsePhc(stored: string): { params: ScryptParams; salt: Buffer; hash: Buffer } | null {
  const match = PHC.exec(stored);
  if (!match) return null;
  const [, ln, r, p, salt, hash] = match;
  const params = { ln: Number(ln), r: Number(r), p: Number(p) };
  if (params.ln < 1 || params.ln > MAX_LN || params.r < 1 || params.r > MAX_RP) return null;
  if (params.p < 1 || params.p > MAX_RP) return null;
  const hashBytes = Buffer.from(hash!, "base64");
  if (hashBytes.length < 16) return null;
  return { params, salt: Buffer.from(salt!, "base64"), hash: hashBytes };
}

function derive(
  password: string,
  salt: Uint8Array,
  { ln, r, p }: ScryptParams,
  length: number,
): Promise<Buffer> {
  const N = 2 ** ln;
  // scrypt needs 128 * N * r bytes; node's default cap (32 MiB) is just below that.
  const maxmem = 128 * N * r + 16 * 1024 * 1024;
  return new Promise((resolve, reject) => {
    scrypt(password.normalize("NFC"), salt, length, { N, r, p, maxmem }, (error, key) => {
      if (error) reject(error);
      else resolve(key);
    });
  });
}

function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("base64").replace(/=+$/, "");
}
