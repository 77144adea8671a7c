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
} as const;

export interface SharedConfig {
  databaseUrl?: string;
  /** The data folder (server secret file, PGlite's pgdata, spool). */
  dataDir: string;
  /** The embedded database's folder: `<dataDir>/pgdata`, or memory://. */
  pgliteDir: string;
  secret?: string;
}

export function sharedConfig(env: z.infer<z.ZodObject<typeof sharedEnvShape>>): SharedConfig {
  return {
    databaseUrl: env.DATABASE_URL,
    dataDir: env.TOLLGATE_DATA_DIR,
    pgliteDir: env.TOLLGATE_DATA_DIR === "memory://"
      ? "memory://"
      : `${env.TOLLGATE_DATA_DIR}/pgdata`,
    secret: env.TOLLGATE_SECRET,
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
