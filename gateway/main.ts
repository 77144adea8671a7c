// `deno task gateway`: the data plane alone, on DATABASE_URL (or the embedded
// database when nothing else uses it). Only wires and serves; SIGINT and
// SIGTERM drain open streams and flush the usage queue before exiting.
import { ConfigError } from "../schema/config.ts";
import { createDb } from "../schema/db.ts";
import { loadServerKeys } from "../schema/secrets.ts";
import { stopOnSignals } from "../schema/shutdown.ts";
import { migrateToLatest } from "../migrations/mod.ts";
import { loadConfig } from "./config.ts";
import { seedMockProvider } from "./providers/mock_seed.ts";
import { startGateway } from "./server.ts";

let config;
try {
  config = loadConfig(Deno.env.toObject());
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  console.error(error.message);
  Deno.exit(1);
}
const db = await createDb({ databaseUrl: config.databaseUrl, dataDir: config.pgliteDir });
await migrateToLatest(db.db);
if (config.seedMockProvider) await seedMockProvider(db.db);
// With the KEK keyring: BYOK keys the control plane sealed are opened here.
const keys = await loadServerKeys({
  secret: config.secret,
  dataDir: config.dataDir,
  kek: config.kek,
});
const gateway = await startGateway({ db, keys, config });
console.log(`Tollgate gateway listening on ${gateway.url}/v1`);

/** How long flushing and closing may take after the drain; the spool keeps what is left. */
const CLOSE_GRACE_MS = 15_000;
stopOnSignals(async () => {
  await gateway.shutdown();
  await db.close();
}, config.drainTimeoutMs + CLOSE_GRACE_MS);
