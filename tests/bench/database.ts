/**
 * The bench's database: a fresh Postgres database (dropped at the end), or an
 * embedded PGlite folder that the gateway process opens after us. Seeded
 * before the gateway starts with one openai_compat provider pointing at the
 * fake upstream, one priced model, one account and one API key.
 */
import { customerBook, postTransaction } from "../../schema/ledger.ts";
import postgres from "postgres";
import type { Kysely } from "kysely";
import { migrateToLatest } from "../../migrations/mod.ts";
import type { Database } from "../../schema/database.ts";
import { createDb } from "../../schema/db.ts";
import { generateSecret, hashSecret } from "../../schema/keys.ts";
import { parseUsd } from "../../schema/money.ts";
import { deriveServerKeys, sealCredential, type ServerKeys } from "../../schema/secrets.ts";

/** 1,000,000 USD: the balance never limits a run. */
const BENCH_CREDIT = parseUsd("1000000");

export const BENCH_SECRET = "tollgate-bench-secret-".padEnd(48, "x");

export interface BenchDatabase {
  /** Environment for the gateway process (database, secret, data folder). */
  env: Record<string, string>;
  /** The inference key the load generators send. */
  apiKey: string;
  /** Rows in usage_events, or null when the gateway owns the database (PGlite). */
  usageEvents(): Promise<number | null>;
  /** Drops the Postgres database or removes the PGlite folder. */
  drop(): Promise<void>;
}

export interface DatabaseOptions {
  pglite: boolean;
  /** A postgres:// URL on the server where the bench database is created. */
  adminUrl: string;
  /** The fake upstream's base URL (ending in /v1). */
  upstreamUrl: string;
  model: string;
}

export async function prepareDatabase(options: DatabaseOptions): Promise<BenchDatabase> {
  const dataDir = await Deno.makeTempDir({ prefix: "tollgate-bench-" });
  const keys = deriveServerKeys(BENCH_SECRET);
  const env = { TOLLGATE_SECRET: BENCH_SECRET, TOLLGATE_DATA_DIR: dataDir };
  const removeDir = () => Deno.remove(dataDir, { recursive: true }).catch(() => {});
  if (options.pglite) {
    try {
      const db = await createDb({ dataDir: `${dataDir}/pgdata` });
      try {
        await migrateToLatest(db.db);
        const apiKey = await seed(db.db, keys, options);
        return { env, apiKey, usageEvents: () => Promise.resolve(null), drop: removeDir };
      } finally {
        await db.close();
      }
    } catch (error) {
      await removeDir();
      throw error;
    }
  }
  const name = `tollgate_bench_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
  const admin = postgres(options.adminUrl, { max: 1, onnotice: () => {} });
  const url = new URL(options.adminUrl);
  url.pathname = `/${name}`;
  const drop = async () => {
    await admin.unsafe(`drop database if exists ${name} with (force)`);
    await admin.end();
    await removeDir();
  };
  try {
    await admin.unsafe(`create database ${name}`);
  } catch (error) {
    await admin.end();
    await removeDir();
    throw new Error(
      `Cannot create a database on ${redact(options.adminUrl)}: ${(error as Error).message}`,
      { cause: error },
    );
  }
  try {
    const db = await createDb({ databaseUrl: url.href, dataDir: "memory://", maxConnections: 1 });
    const apiKey = await (async () => {
      try {
        await migrateToLatest(db.db);
        return await seed(db.db, keys, options);
      } catch (error) {
        await db.close();
        throw error;
      }
    })();
    return {
      env: { ...env, DATABASE_URL: url.href },
      apiKey,
      async usageEvents() {
        const row = await db.db.selectFrom("usage_events")
          .select((eb) => eb.fn.countAll<bigint>().as("n")).executeTakeFirstOrThrow();
        return Number(row.n);
      },
      async drop() {
        await db.close();
        await drop();
      },
    };
  } catch (error) {
    await drop();
    throw error;
  }
}

async function seed(
  db: Kysely<Database>,
  keys: ServerKeys,
  options: DatabaseOptions,
): Promise<string> {
  const providerId = crypto.randomUUID();
  await db.insertInto("providers").values({
    id: providerId,
    name: "bench-fake",
    kind: "openai_compat",
    base_url: options.upstreamUrl,
    credential_ciphertext: sealCredential(
      "sk-upstream",
      keys.credentials,
      `provider:${providerId}`,
    ),
    credential_last4: "ream",
  }).execute();
  // Priced like a small hosted model, so every answer is costed.
  await db.insertInto("models").values({
    name: options.model,
    provider_id: providerId,
    upstream_name: options.model,
    input_price: parseUsd("0.15"),
    output_price: parseUsd("0.60"),
    cached_input_price: parseUsd("0.075"),
  }).execute();
  const account = await db.insertInto("accounts").values({ name: "bench" })
    .returning("id").executeTakeFirstOrThrow();
  // Prepaid, as every account is: enough for any run, through the ledger like a real credit.
  await postTransaction(db, {
    kind: "adjustment",
    entries: [
      { book: customerBook(account.id), amount: BENCH_CREDIT },
      { book: "system:adjustments", accountId: account.id, amount: -BENCH_CREDIT },
    ],
    memo: "bench credit",
  });
  const issued = generateSecret();
  await db.insertInto("api_keys").values({
    account_id: account.id,
    name: "bench",
    key_hash: hashSecret(issued.secret, keys.hashing),
    prefix: issued.prefix,
    last4: issued.last4,
  }).execute();
  return issued.secret;
}

function redact(url: string): string {
  const u = new URL(url);
  if (u.password) u.password = "***";
  return u.href;
}
