/**
 * Envelope encryption for customer secrets (BYOK provider keys). Each secret
 * gets a fresh random 256-bit data key (DEK) and is encrypted with
 * AES-256-GCM under it; the DEK is wrapped with AES-256-GCM under a
 * key-encryption key (KEK) from the keyring. Rotating the KEK re-wraps DEKs
 * only (rewrapEnvelope); the secrets' ciphertexts never change.
 *
 * A sealed envelope is one self-describing string:
 *
 *     v1.<kekId>.<wrapped>.<iv>.<ciphertext>
 *
 * each part base64url: wrapped = wrap iv (12) + encrypted DEK (32) + wrap tag
 * (16); iv = the data iv (12); ciphertext = encrypted secret + data tag (16).
 *
 * The caller's AAD (e.g. "byok:<accountId>:<providerId>") binds both layers
 * to their context. The wrap's AAD also names the KEK id and the data's the
 * format version; the data layer leaves the KEK id out so that re-wrapping
 * leaves it untouched: its DEK comes only from a wrap that names the KEK id.
 */
import { Buffer } from "node:buffer";
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";

/** A key-encryption key: 32 bytes and the id envelopes name it by. */
export interface Kek {
  id: string;
  key: Uint8Array;
}

/** The KEK new envelopes are sealed under, and the older ones that still open. */
export interface Keyring {
  current: Kek;
  previous: Kek[];
}

/** Thrown when an envelope is malformed, tampered with, out of context, or its KEK is unknown. */
export class EnvelopeError extends Error {
  override readonly name = "EnvelopeError";
}

const VERSION = "v1";
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;
const WRAPPED_BYTES = IV_BYTES + KEY_BYTES + TAG_BYTES;

/** What a KEK id may look like: it sits between the envelope's dots. */
export const KEK_ID_PATTERN = /^[A-Za-z0-9_-]{1,32}$/;

const BASE64URL = /^[A-Za-z0-9_-]+$/;

interface Parts {
  kekId: string;
  wrapped: Buffer;
  iv: Buffer;
  ciphertext: Buffer;
}

/** The AAD of a customer's provider key (BYOK): both planes must build it alike. */
export function providerKeyAad(accountId: string, providerId: string): string {
  return `byok:${accountId}:${providerId}`;
}

/** Encrypts `plaintext` under a fresh DEK, wrapped under the keyring's current KEK. */
export function sealEnvelope(plaintext: string, keyring: Keyring, aad: string): string {
  const dek = randomBytes(KEY_BYTES);
  try {
    const iv = randomBytes(IV_BYTES);
    const ciphertext = gcmEncrypt(dek, iv, dataAad(aad), Buffer.from(plaintext, "utf8"));
    return format({ ...wrapDek(dek, keyring.current, aad), iv, ciphertext });
  } finally {
    dek.fill(0);
  }
}

/** Decrypts an envelope sealed for `aad`; throws an EnvelopeError on any mismatch. */
export function openEnvelope(sealed: string, keyring: Keyring, aad: string): string {
  const parts = parse(sealed);
  const dek = unwrapDek(parts, keyring, aad);
  try {
    return decryptData(parts, dek, aad).toString("utf8");
  } finally {
    dek.fill(0);
  }
}

/**
 * Re-wraps the envelope's DEK under the keyring's current KEK, after checking
 * that the whole envelope opens. The data part is kept byte for byte; an
 * envelope already under the current KEK is returned as it is.
 */
export function rewrapEnvelope(sealed: string, keyring: Keyring, aad: string): string {
  const parts = parse(sealed);
  const dek = unwrapDek(parts, keyring, aad);
  try {
    decryptData(parts, dek, aad).fill(0);
    if (parts.kekId === keyring.current.id) return sealed;
    return format({ ...parts, ...wrapDek(dek, keyring.current, aad) });
  } finally {
    dek.fill(0);
  }
}

/** The id of the KEK an envelope's DEK is wrapped under. */
export function kekIdOf(sealed: string): string {
  return parse(sealed).kekId;
}

function wrapDek(dek: Buffer, kek: Kek, aad: string): { kekId: string; wrapped: Buffer } {
  if (!KEK_ID_PATTERN.test(kek.id)) {
    throw new EnvelopeError(
      `Cannot seal envelope: KEK id "${kek.id}" must match ${KEK_ID_PATTERN}`,
    );
  }
  const iv = randomBytes(IV_BYTES);
  const body = gcmEncrypt(checkedKey(kek), iv, wrapAad(kek.id, aad), dek);
  return { kekId: kek.id, wrapped: Buffer.concat([iv, body]) };
}

function unwrapDek(parts: Parts, keyring: Keyring, aad: string): Buffer {
  const kek = [keyring.current, ...keyring.previous].find((k) => k.id === parts.kekId);
  if (!kek) {
    const known = [keyring.current, ...keyring.previous].map((k) => k.id).join(", ");
    throw new EnvelopeError(
      `Cannot open envelope: unknown KEK id "${parts.kekId}" (the keyring holds ${known})`,
    );
  }
  const iv = parts.wrapped.subarray(0, IV_BYTES);
  const body = parts.wrapped.subarray(IV_BYTES);
  const dek = gcmDecrypt(checkedKey(kek), iv, wrapAad(kek.id, aad), body);
  if (!dek) {
    throw new EnvelopeError(
      `Cannot open envelope: its data key does not authenticate under KEK "${kek.id}" ` +
        "(tampered with, or sealed for another context)",
    );
  }
  return dek;
}

function decryptData(parts: Parts, dek: Buffer, aad: string): Buffer {
  const plaintext = gcmDecrypt(dek, parts.iv, dataAad(aad), parts.ciphertext);
  if (!plaintext) {
    throw new EnvelopeError(
      "Cannot open envelope: its ciphertext does not authenticate " +
        "(tampered with, or sealed for another context)",
    );
  }
  return plaintext;
}

function wrapAad(kekId: string, aad: string): Buffer {
  return Buffer.from(`tollgate-envelope/${VERSION}/dek\0${kekId}\0${aad}`, "utf8");
}

function dataAad(aad: string): Buffer {
  return Buffer.from(`tollgate-envelope/${VERSION}/data\0${aad}`, "utf8");
}

function checkedKey(kek: Kek): Uint8Array {
  if (kek.key.length !== KEY_BYTES) {
    throw new EnvelopeError(`KEK "${kek.id}" must be ${KEY_BYTES} bytes, not ${kek.key.length}`);
  }
  return kek.key;
}

/** Ciphertext followed by its tag. */
function gcmEncrypt(key: Uint8Array, iv: Uint8Array, aad: Buffer, plaintext: Uint8Array): Buffer {
  const cipher = createCipheriv("aes-256-gcm", key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad);
  return Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

/** The plaintext, or null when the ciphertext, tag, iv, key or AAD do not match. */
function gcmDecrypt(key: Uint8Array, iv: Uint8Array, aad: Buffer, sealed: Buffer): Buffer | null {
  const decipher = createDecipheriv("aes-256-gcm", key, iv, { authTagLength: TAG_BYTES });
  decipher.setAAD(aad);
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
  try {
    return Buffer.concat([decipher.update(sealed.subarray(0, -TAG_BYTES)), decipher.final()]);
  } catch {
    return null;
  }
}

function format(parts: Parts): string {
  const { kekId, wrapped, iv, ciphertext } = parts;
  return [VERSION, kekId, ...[wrapped, iv, ciphertext].map((b) => b.toString("base64url"))]
    .join(".");
}

function parse(sealed: string): Parts {
  const fields = sealed.split(".");
  if (fields.length !== 5 || fields[0] !== VERSION) {
    throw new EnvelopeError(`Cannot open envelope: not a ${VERSION} envelope`);
  }
  const [, kekId, wrapped, iv, ciphertext] = fields as [string, string, string, string, string];
  if (!KEK_ID_PATTERN.test(kekId)) {
    throw new EnvelopeError("Cannot open envelope: malformed KEK id");
  }
  return {
    kekId,
    wrapped: decodePart("wrapped data key", wrapped, (n) => n === WRAPPED_BYTES),
    iv: decodePart("iv", iv, (n) => n === IV_BYTES),
    ciphertext: decodePart("ciphertext", ciphertext, (n) => n >= TAG_BYTES),
  };
}

function decodePart(name: string, text: string, lengthOk: (bytes: number) => boolean): Buffer {
  const bytes = BASE64URL.test(text) ? Buffer.from(text, "base64url") : null;
  // Re-encoding catches stray trailing bits that a lenient decoder drops.
  if (!bytes || !lengthOk(bytes.length) || bytes.toString("base64url") !== text) {
    throw new EnvelopeError(`Cannot open envelope: malformed ${name}`);
  }
  return bytes;
}
