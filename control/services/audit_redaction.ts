/**
 * The guard that keeps secrets out of audit diffs. A diff is made plain JSON
 * (bigint as a decimal string, Date as ISO 8601) and, at every depth:
 *
 * - a field named like a secret has its value replaced by "[redacted]": a
 *   name with the word secret, password, passwd, passphrase, token, hash,
 *   ciphertext or plaintext in it (camelCase, snake_case or kebab-case), or
 *   one that is or ends in apiKey, privateKey, accessKey, credential(s),
 *   keyMaterial, or is key, kek, dek, authorization or cookie. So `keyHash`,
 *   `refreshToken` and `upstreamApiKey` are redacted, while `maxOutputTokens`,
 *   `credentialLast4` and `kekId` are kept. A null or boolean value is kept
 *   under any name: it can say that a secret is set, never what it is;
 * - a string that is itself a Tollgate API key or admin token (checked by its
 *   checksum) or a JWT is redacted wherever it appears.
 *
 * Redacting rather than refusing: the change has already been made in the
 * same transaction, and an audit row saying "this field was set" is worth
 * more than a failed mutation; the secret itself never reaches the log.
 */
import { ADMIN_TOKEN_PREFIX, API_KEY_PREFIX, isWellFormedSecret } from "../../schema/keys.ts";

export const REDACTED = "[redacted]";

const SECRET_WORDS = new Set([
  "secret",
  "secrets",
  "password",
  "passwords",
  "passwd",
  "passphrase",
  "token",
  "hash",
  "hashes",
  "ciphertext",
  "plaintext",
]);

const SECRET_SUFFIXES = [
  "apikey",
  "privatekey",
  "accesskey",
  "credential",
  "credentials",
  "keymaterial",
];

const SECRET_NAMES = new Set(["key", "kek", "dek", "authorization", "cookie"]);

const JWT = /^eyJ[\w-]{2,}\.[\w-]{2,}\.[\w-]+$/;

/** True when a field called `name` may hold a secret. */
export function isSecretFieldName(name: string): boolean {
  const words = name.replace(/([a-z0-9])([A-Z])/g, "$1 $2").toLowerCase().split(/[^a-z0-9]+/)
    .filter((word) => word.length > 0);
  if (words.some((word) => SECRET_WORDS.has(word))) return true;
  const joined = words.join("");
  return SECRET_NAMES.has(joined) || SECRET_SUFFIXES.some((suffix) => joined.endsWith(suffix));
}

/** True when `text` is itself a credential, whatever field holds it. */
export function looksLikeSecret(text: string): boolean {
  return isWellFormedSecret(text, API_KEY_PREFIX) ||
    isWellFormedSecret(text, ADMIN_TOKEN_PREFIX) || JWT.test(text);
}

/** The diff as plain JSON with every secret-looking field and value redacted. */
export function redactDiff(diff: Record<string, unknown>): Record<string, unknown> {
  return toJson(diff) as Record<string, unknown>;
}

function toJson(value: unknown): unknown {
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Date) return value.toISOString();
  if (typeof value === "string") return looksLikeSecret(value) ? REDACTED : value;
  if (Array.isArray(value)) return value.map(toJson);
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [key, inner] of Object.entries(value)) {
      if (inner === undefined) continue;
      // null (cleared) and booleans (hasCredential: true) say a secret is set, never what it is.
      const keep = inner === null || typeof inner === "boolean";
      out[key] = isSecretFieldName(key) && !keep ? REDACTED : toJson(inner);
    }
    return out;
  }
  if (typeof value === "number" && !Number.isFinite(value)) return null;
  return value;
}
