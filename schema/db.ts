/**
 * The database factory: Postgres.js when a DATABASE_URL is given, otherwise
 * embedded PGlite in a data folder. Both return int8 as bigint, and both can
 * LISTEN, so the planes never care which one they run on.
 */
import { Kysely } from "kysely";
import { PGliteDialect } from "kysely-pglite-dialect";
import { PostgresJSDialect } from "kysely-postgres-js";
import postgres from "postgres";
import type { PGlite } from "@electric-sql/pglite";
import type { Database } from "./database.ts";

export interface DbConfig {
  /** A postgres:// URL; without it the embedded PGlite is used. */
  databaseUrl?: string;
  /** PGlite's data folder, or "memory://" for a throwaway in-memory database. */
  dataDir: string;
  /** Postgres.js pool size. */
  maxConnections?: number;
}

export type Listener = (payload: string) => void;

export interface Db {
  readonly db: Kysely<Database>;
  readonly kind: "postgres" | "pglite";
  /**
   * Subscribes to a NOTIFY channel. `onConnect` runs each time the listening
   * connection is (re)established, when notifications may have been missed.
   */
  listen(
    channel: string,
    onMessage: Listener,
    onConnect?: () => void,
  ): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

const INT8_OID = 20;

export async function createDb(config: DbConfig): Promise<Db> {
  return config.databaseUrl
    ? createPostgresDb(config.databaseUrl, config.maxConnections ?? 10)
    : await createPgliteDb(config.dataDir);
}

function createPostgresDb(url: string, max: number): Db {
  const sql = postgres(url, {
    max,
    types: { bigint: postgres.BigInt },
    onnotice: () => {},
    connection: { application_name: "tollgate" },
  });
  const db = new Kysely<Database>({ dialect: new PostgresJSDialect({ postgres: sql }) });
  return {
    db,
    kind: "postgres",
    async listen(channel, onMessage, onConnect) {
      const sub = await sql.listen(channel, onMessage, onConnect);
      return () => sub.unlisten();
    },
    async close() {
      await db.destroy();
    },
  };
}

async function createPgliteDb(dataDir: string): Promise<Db> {
  const { PGlite } = await import("@electric-sql/pglite");
  if (dataDir !== "memory://") await Deno.mkdir(dataDir, { recursive: true });
  const pg: PGlite = await PGlite.create({
    dataDir,
    parsers: { [INT8_OID]: (value: string) => BigInt(value) },
  });
  const db = new Kysely<Database>({ dialect: new PGliteDialect(pg) });
  return {
    db,
    kind: "pglite",
    async listen(channel, onMessage, onConnect) {
      const unlisten = await pg.listen(channel, onMessage);
      onConnect?.();
      return unlisten;
    },
    async close() {
      await db.destroy();
    },
  };
}
