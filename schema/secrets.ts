/**
 * The server secret and the keys derived from it. Both planes must derive the
 * same keys: from TOLLGATE_SECRET when set, otherwise from a file created on
 * first start in the data folder (mode 0600), shared by processes on one host.
 * The KEK keyring for customer secrets comes from TOLLGATE_KEK* when set,
 * otherwise from a KEK derived from the server secret (id "derived").
 */
import { Buffer } from "node:buffer";
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";
import { z } from "zod";
import { parseEnv } from "./config.ts";
import { type Kek, KEK_ID_PATTERN, type Keyring } from "./envelope.ts";

export interface ServerKeys {
  /** HMAC key for API-key and admin-token hashes. */
  hashing: Uint8Array;
  /** AES-256-GCM key for provider credentials. */
  credentials: Uint8Array;
  /**
   * The 32-byte Ed25519 seed of the control plane's access-token signing key,
   * so every replica signs with the same key (control/credentials/jwt.ts).
   */
  signingSeed: Uint8Array;
  /** Key-encryption keys for envelope-sealed customer secrets (schema/envelope.ts). */
  keyring: Keyring;
}

/** The KEK variables as the environment has them; unset or blank: none. */
export interface KekEnv {
  /** Base64 of 32 bytes: the current KEK. Unset: the KEK derived from the server secret. */
  TOLLGATE_KEK?: string;
  /** The current KEK's id (default "k1"); envelopes name their KEK by it. */
  TOLLGATE_KEK_ID?: string;
  /** Older KEKs that still open envelopes: "id:base64,id:base64". */
  TOLLGATE_KEK_PREVIOUS?: string;
}

/** The id of the KEK derived from the server secret. */
export const DERIVED_KEK_ID = "derived";

const SECRET_FILE = "secret";

/** Derives the server keys from `secret`, or from the data folder's secret file. */
export async function loadServerKeys(
  options: { secret?: string; dataDir: string; kek?: KekEnv },
): Promise<ServerKeys> {
  const secret = options.secret ?? await readOrCreateSecretFile(options.dataDir);
  return deriveServerKeys(secret, options.kek);
}

/** The server keys; throws a ConfigError naming each bad TOLLGATE_KEK* variable. */
export function deriveServerKeys(secret: string, kek: KekEnv = {}): ServerKeys {
  const ikm = new TextEncoder().encode(secret);
  const derive = (info: string) => new Uint8Array(hkdfSync("sha256", ikm, "tollgate", info, 32));
  return {
    hashing: derive("api-key-hash"),
    credentials: derive("provider-credentials"),
    signingSeed: derive("jwt-ed25519-seed"),
    keyring: loadKeyring(kek, { id: DERIVED_KEK_ID, key: derive("byok-kek") }),
  };
}

/**
 * The keyring from the TOLLGATE_KEK* variables. Without TOLLGATE_KEK the
 * derived KEK is current; with it, the derived KEK stays readable as the
 * oldest previous one, so secrets sealed before a KEK was configured still
 * open until they are re-wrapped.
 */
export function loadKeyring(env: KekEnv, derived: Kek): Keyring {
  const parsed = parseEnv(kekEnvSchema, { ...env });
  const current = parsed.TOLLGATE_KEK
    ? { id: parsed.TOLLGATE_KEK_ID ?? "k1", key: parsed.TOLLGATE_KEK }
    : derived;
  const previous = parsed.TOLLGATE_KEK_PREVIOUS ?? [];
  return { current, previous: current === derived ? previous : [...previous, derived] };
}

const kekIdField = z.string().regex(KEK_ID_PATTERN, "must be 1 to 32 of A-Z a-z 0-9 _ -")
  .refine((id) => id !== DERIVED_KEK_ID, `"${DERIVED_KEK_ID}" is reserved for the derived KEK`);

const kekEnvSchema = z.object({
  TOLLGATE_KEK: z.string().transform((text, ctx) => decodeKek(text) ?? invalid(ctx, KEK_FORMAT))
    .optional(),
  TOLLGATE_KEK_ID: kekIdField.optional(),
  TOLLGATE_KEK_PREVIOUS: z.string().transform(parsePreviousKeks).optional(),
}).superRefine((env, ctx) => {
  if (env.TOLLGATE_KEK_ID && !env.TOLLGATE_KEK) {
    ctx.addIssue({ code: "custom", path: ["TOLLGATE_KEK_ID"], message: "needs TOLLGATE_KEK" });
  }
  const currentId = env.TOLLGATE_KEK ? env.TOLLGATE_KEK_ID ?? "k1" : DERIVED_KEK_ID;
  if (env.TOLLGATE_KEK_PREVIOUS?.some((kek) => kek.id === currentId)) {
    ctx.addIssue({
      code: "custom",
      path: ["TOLLGATE_KEK_PREVIOUS"],
      message: `names the current KEK id "${currentId}"`,
    });
  }
});

const KEK_FORMAT = "must be the base64 of 32 bytes (e.g. `openssl rand -base64 32`)";
const BASE64_OF_32_BYTES = /^[A-Za-z0-9+/_-]{43}=?$/;

function decodeKek(text: string): Uint8Array | null {
  return BASE64_OF_32_BYTES.test(text) ? new Uint8Array(Buffer.from(text, "base64")) : null;
}

/** "id:base64,id:base64" to KEKs; problems name the entry, never its key. */
function parsePreviousKeks(text: string, ctx: z.RefinementCtx): Kek[] {
  const keks: Kek[] = [];
  for (const [index, entry] of text.split(",").map((e) => e.trim()).entries()) {
    const match = /^([^:]*):([^:]*)$/.exec(entry);
    if (!match) return invalid(ctx, `entry ${index + 1} must be id:base64`);
    const [, id = "", base64 = ""] = match;
    const idProblem = kekIdField.safeParse(id).error?.issues[0]?.message;
    if (idProblem) return invalid(ctx, `entry ${index + 1}: the id ${idProblem}`);
    const key = decodeKek(base64);
    if (!key) return invalid(ctx, `entry ${index + 1}: the key ${KEK_FORMAT}`);
    if (keks.some((kek) => kek.id === id)) return invalid(ctx, `names "${id}" twice`);
    keks.push({ id, key });
  }
  return keks;
}

function invalid(ctx: z.RefinementCtx, message: string): never {
  ctx.addIssue({ code: "custom", message });
  return z.NEVER;
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
