/**
 * A fresh database for one test stack: in-memory PGlite by default, or a new
 * Postgres database (dropped afterwards) on the server in DATABASE_URL (or
 * `serverUrl`).
 */
import postgres from "postgres";
import { createDb, type Db } from "../../schema/db.ts";
import { migrateToLatest } from "../../migrations/mod.ts";

export const POSTGRES_URL = Deno.env.get("DATABASE_URL") || undefined;

export interface TestDatabase {
  db: Db;
  /** The URL of this test's own database (Postgres only). */
  url?: string;
  drop(): Promise<void>;
}

export async function freshDatabase(
  options: { migrate?: boolean; serverUrl?: string } = {},
): Promise<TestDatabase> {
  const server = options.serverUrl ?? POSTGRES_URL;
  if (!server) {
    const db = await createDb({ dataDir: "memory://" });
    if (options.migrate !== false) await migrateToLatest(db.db);
    return { db, drop: () => db.close() };
  }
  const name = `tollgate_test_${crypto.randomUUID().replaceAll("-", "").slice(0, 16)}`;
  const admin = postgres(server, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`);
  const url = new URL(server);
  url.pathname = `/${name}`;
  const db = await createDb({ databaseUrl: url.href, dataDir: "memory://", maxConnections: 5 });
  if (options.migrate !== false) await migrateToLatest(db.db);
  return {
    db,
    url: url.href,
    async drop() {
      await db.close();
      await admin.unsafe(`drop database if exists ${name} with (force)`);
      await admin.end();
    },
  };
}
