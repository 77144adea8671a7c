/**
 * The server secret and the keys derived from it. Both planes must derive the
 * same keys: from TOLLGATE_SECRET when set, otherwise from a file created on
 * first start in the data folder (mode 0600), shared by processes on one host.
 */
import { Buffer } from "node:buffer";
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";

export interface ServerKeys {
  /** HMAC key for API-key and admin-token hashes. */
  hashing: Uint8Array;
  /** AES-256-GCM key for provider credentials. */
  credentials: Uint8Array;
}

const SECRET_FILE = "secret";

/** Derives the server keys from `secret`, or from the data folder's secret file. */
export async function loadServerKeys(
  options: { secret?: string; dataDir: string },
): Promise<ServerKeys> {
  const secret = options.secret ?? await readOrCreateSecretFile(options.dataDir);
  return deriveServerKeys(secret);
}

export function deriveServerKeys(secret: string): ServerKeys {
  const ikm = new TextEncoder().encode(secret);
  const derive = (info: string) => new Uint8Array(hkdfSync("sha256", ikm, "tollgate", info, 32));
  return { hashing: derive("api-key-hash"), credentials: derive("provider-credentials") };
}

async function readOrCreateSecretFile(dataDir: string): Promise<string> {
  if (dataDir === "memory://") {
    throw new Error("Cannot keep a server secret in memory://: set TOLLGATE_SECRET");
  }
  const path = `${dataDir}/${SECRET_FILE}`;
  try {
    return (await Deno.readTextFile(path)).trim();
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  await Deno.mkdir(dataDir, { recursive: true });
  const secret = randomBytes(32).toString("base64url");
  try {
    await Deno.writeTextFile(path, secret + "\n", { createNew: true, mode: 0o600 });
    return secret;
  } catch (error) {
    // Another process on this host created it first: use theirs.
    if (error instanceof Deno.errors.AlreadyExists) return (await Deno.readTextFile(path)).trim();
    throw error;
  }
}

const SEALED_VERSION = "v1";

/**
 * Seals a credential with AES-256-GCM. The AAD binds the ciphertext to its
 * owner (for example "provider:<id>"): moved to another row, it won't open.
 */
export function sealCredential(plaintext: string, key: Uint8Array, aad: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", key, iv);
  cipher.setAAD(new TextEncoder().encode(aad));
  const body = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
  const sealed = Buffer.concat([iv, body, cipher.getAuthTag()]);
  return `${SEALED_VERSION}:${sealed.toString("base64")}`;
}

/** Opens a credential sealed by sealCredential; throws if it was tampered with. */
export function openCredential(sealed: string, key: Uint8Array, aad: string): string {
  const [version, payload] = sealed.split(":", 2);
  if (version !== SEALED_VERSION || !payload) {
    throw new Error(`Cannot open credential: unknown format "${version}"`);
  }
  const bytes = Buffer.from(payload, "base64");
  const decipher = createDecipheriv("aes-256-gcm", key, bytes.subarray(0, 12));
  decipher.setAAD(new TextEncoder().encode(aad));
  decipher.setAuthTag(bytes.subarray(bytes.length - 16));
  return Buffer.concat([decipher.update(bytes.subarray(12, bytes.length - 16)), decipher.final()])
    .toString("utf8");
}
