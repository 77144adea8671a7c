/**
 * The database factory: Postgres.js when a DATABASE_URL is given, otherwise
 * embedded PGlite in a data folder. Both return int8 as bigint, and both can
 * LISTEN, so the planes never care which one they run on.
 */
import { CompiledQuery, type DatabaseConnection, type Driver, Kysely } from "kysely";
import { PGliteDialect } from "kysely-pglite-dialect";
import { PostgresJSDialect, PostgresJSDriver } from "kysely-postgres-js";
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
    // Seconds before a closed connection may reconnect. The default grows
    // with every failed attempt across the pool up to 20 s, so a
    // Postgres that was away for a few seconds stayed unused for that long
    // after it came back. The writers retry on their own schedule.
    backoff: (retries) => Math.min(0.05 * 2 ** retries, 1),
  });
  const db = new Kysely<Database>({ dialect: new PostgresJSDbDialect({ postgres: sql }) });
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

/**
 * Kysely 0.29's Postgres driver marks a connection whose ROLLBACK failed for
 * discard through a method only its own `pg` connections have, so with
 * Postgres.js a rollback on a lost connection threw a TypeError that hid the
 * real error. Postgres.js retires a lost connection by itself.
 */
class PostgresJSDbDriver extends PostgresJSDriver {
  override async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw("rollback"));
  }
}

class PostgresJSDbDialect extends PostgresJSDialect {
  readonly #config: ConstructorParameters<typeof PostgresJSDialect>[0];
  constructor(config: ConstructorParameters<typeof PostgresJSDialect>[0]) {
    super(config);
    this.#config = config;
  }
  override createDriver(): Driver {
    return new PostgresJSDbDriver(this.#config);
  }
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
