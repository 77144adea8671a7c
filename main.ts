// `deno task start`: Tollgate in one process, both planes on one database.
// Without DATABASE_URL that is the embedded PGlite in TOLLGATE_DATA_DIR, which
// only one process may open, so this is how the embedded default runs. Only
// wires: each plane's config, the database, migrations, then both servers.
import { loadConfig as loadControlConfig } from "./control/config.ts";
import { ensureAdminToken } from "./control/auth.ts";
import { startControl } from "./control/server.ts";
import { loadConfig as loadGatewayConfig } from "./gateway/config.ts";
import { seedMockProvider } from "./gateway/providers/mock_seed.ts";
import { startGateway } from "./gateway/server.ts";
import { migrateToLatest } from "./migrations/mod.ts";
import { ConfigError } from "./schema/config.ts";
import { createDb } from "./schema/db.ts";
import { loadServerKeys } from "./schema/secrets.ts";
import { stopOnSignals } from "./schema/shutdown.ts";

const env = Deno.env.toObject();
const problems: string[] = [];
const load = <T>(loader: (e: typeof env) => T): T | undefined => {
  try {
    return loader(env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    problems.push(...error.problems);
    return undefined;
  }
};
const gatewayConfig = load(loadGatewayConfig);
const controlConfig = load(loadControlConfig);
if (!gatewayConfig || !controlConfig) {
  console.error(
    `Invalid configuration:\n${[...new Set(problems)].map((p) => `  - ${p}`).join("\n")}`,
  );
  Deno.exit(1);
}

const db = await createDb({
  databaseUrl: gatewayConfig.databaseUrl,
  dataDir: gatewayConfig.pgliteDir,
});
await migrateToLatest(db.db);
if (gatewayConfig.seedMockProvider) await seedMockProvider(db.db);
const keys = await loadServerKeys({
  secret: gatewayConfig.secret,
  dataDir: gatewayConfig.dataDir,
  kek: gatewayConfig.kek,
}).catch((error) => {
  if (!(error instanceof ConfigError)) throw error;
  console.error(error.message);
  Deno.exit(1);
});
const { generated } = await ensureAdminToken(db.db, keys, controlConfig.adminToken);
const control = await startControl({ db: db.db, keys, config: controlConfig });
const gateway = await startGateway({ db, keys, config: gatewayConfig });

console.log(
  `Tollgate is running (${
    db.kind === "pglite" ? `embedded database in ${gatewayConfig.pgliteDir}` : "Postgres"
  }).
  Gateway (OpenAI-compatible):  ${gateway.url}/v1
  Control plane (GraphQL):      ${control.url}/graphql`,
);
if (generated) {
  console.log(`
  Admin token (shown once; it is stored hashed): ${generated}
  Use it as 'Authorization: Bearer <token>' on the control plane.`);
}

/** How long flushing and closing may take after the drain; the spool keeps what is left. */
const CLOSE_GRACE_MS = 15_000;
stopOnSignals(async () => {
  await gateway.shutdown();
  await control.shutdown();
  await db.close();
}, gatewayConfig.drainTimeoutMs + CLOSE_GRACE_MS);
