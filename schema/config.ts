/**
 * The environment both planes share (database, data folder, server secret)
 * and the one way configuration problems are reported: all at once.
 */
import { z } from "zod";

/** Shared settings; each plane's config.ts extends this shape. */
export const sharedEnvShape = {
  DATABASE_URL: z.string().url().regex(/^postgres(ql)?:\/\//, "must be a postgres:// URL")
    .optional(),
  TOLLGATE_DATA_DIR: z.string().min(1).default(".tollgate"),
  TOLLGATE_SECRET: z.string().min(32, "must be at least 32 characters").optional(),
  // The key-encryption key for BYOK secrets; checked when the keys load (schema/secrets.ts).
  TOLLGATE_KEK: z.string().optional(),
  TOLLGATE_KEK_ID: z.string().optional(),
  TOLLGATE_KEK_PREVIOUS: z.string().optional(),
} as const;

export interface SharedConfig {
  databaseUrl?: string;
  /** The data folder (server secret file, PGlite's pgdata, spool). */
  dataDir: string;
  /** The embedded database's folder: `<dataDir>/pgdata`, or memory://. */
  pgliteDir: string;
  secret?: string;
  /** TOLLGATE_KEK, _ID and _PREVIOUS as given: loadServerKeys checks and loads them. */
  kek: { TOLLGATE_KEK?: string; TOLLGATE_KEK_ID?: string; TOLLGATE_KEK_PREVIOUS?: string };
}

export function sharedConfig(env: z.infer<z.ZodObject<typeof sharedEnvShape>>): SharedConfig {
  return {
    databaseUrl: env.DATABASE_URL,
    dataDir: env.TOLLGATE_DATA_DIR,
    pgliteDir: env.TOLLGATE_DATA_DIR === "memory://"
      ? "memory://"
      : `${env.TOLLGATE_DATA_DIR}/pgdata`,
    secret: env.TOLLGATE_SECRET,
    kek: {
      TOLLGATE_KEK: env.TOLLGATE_KEK,
      TOLLGATE_KEK_ID: env.TOLLGATE_KEK_ID,
      TOLLGATE_KEK_PREVIOUS: env.TOLLGATE_KEK_PREVIOUS,
    },
  };
}

/** Thrown by loadConfig; its message lists every problem, one a line. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

const PORT_MESSAGE = "must be a port number from 0 to 65535 (0 picks a free port)";

/** A TCP port in decimal digits (not "0x50", not "1e3"), with a default. */
export function portSetting(fallback: number) {
  return z.string().regex(/^\d{1,5}$/, PORT_MESSAGE).transform(Number)
    .pipe(z.number().max(65535, PORT_MESSAGE)).default(fallback);
}

/** Parses `env` with `schema`, or throws a ConfigError naming every bad variable. */
export function parseEnv<T extends z.ZodType>(
  schema: T,
  env: Record<string, string | undefined>,
): z.infer<T> {
  // Empty or blank variables count as unset, as a shell user expects; values are trimmed.
  const cleaned = Object.fromEntries(
    Object.entries(env).flatMap(([k, v]) =>
      v === undefined || v.trim() === "" ? [] : [[k, v.trim()]]
    ),
  );
  const result = schema.safeParse(cleaned);
  if (result.success) return result.data;
  throw new ConfigError(
    result.error.issues.map((i) => `${i.path.join(".") || "env"}: ${i.message}`),
  );
}

const BASIS_POINTS_MESSAGE = "must be basis points from 0 to 10000 (550 is 5.5%)";
const COUNT_MESSAGE = "must be a whole number, 0 or more";

/** A rate in basis points (1/100 of a percent) in decimal digits, with a default. */
export function basisPointsSetting(fallback: number) {
  return z.string().regex(/^\d{1,5}$/, BASIS_POINTS_MESSAGE).transform(Number)
    .pipe(z.number().max(10_000, BASIS_POINTS_MESSAGE)).default(fallback);
}

/** A non-negative count in decimal digits (not "1e6"), with a default. */
export function countSetting(fallback: number) {
  return z.string().regex(/^\d{1,15}$/, COUNT_MESSAGE).transform(Number).default(fallback);
}

/** Billing settings both planes read; each plane's config.ts spreads this shape in. */
export const billingEnvShape = {
  TOLLGATE_STANDARD_FEE_BPS: basisPointsSetting(550),
  TOLLGATE_BYOK_FEE_BPS: basisPointsSetting(500),
  TOLLGATE_BYOK_FREE_REQUESTS: countSetting(1_000_000),
} as const;

export interface BillingConfig {
  /** The operator's fee on a Standard-mode request's provider cost, in basis points. */
  standardFeeBps: number;
  /** The BYOK routing fee past the free requests, in basis points of the would-be cost. */
  byokFeeBps: number;
  /** BYOK requests per account and calendar month (UTC) that carry no routing fee. */
  byokFreeRequests: number;
}

export function billingConfig(
  env: z.infer<z.ZodObject<typeof billingEnvShape>>,
): Readonly<BillingConfig> {
  return Object.freeze({
    standardFeeBps: env.TOLLGATE_STANDARD_FEE_BPS,
    byokFeeBps: env.TOLLGATE_BYOK_FEE_BPS,
    byokFreeRequests: env.TOLLGATE_BYOK_FREE_REQUESTS,
  });
}
