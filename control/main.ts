// `deno task control`: the control plane on its own. Only wires and serves.
import { createDb } from "../schema/db.ts";
import { ConfigError } from "../schema/config.ts";
import { loadServerKeys } from "../schema/secrets.ts";
import { stopOnSignals } from "../schema/shutdown.ts";
import { migrateToLatest } from "../migrations/mod.ts";
import { ensureAdminToken } from "./auth.ts";
import { loadConfig } from "./config.ts";
import { startControl } from "./server.ts";

function loadConfigOrExit() {
  try {
    return loadConfig(Deno.env.toObject());
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(error.message);
    Deno.exit(1);
  }
}

const config = loadConfigOrExit();
const database = await createDb({ databaseUrl: config.databaseUrl, dataDir: config.pgliteDir });
await migrateToLatest(database.db);
const keys = await loadServerKeys({
  secret: config.secret,
  dataDir: config.dataDir,
  kek: config.kek,
}).catch((error) => {
  if (!(error instanceof ConfigError)) throw error;
  console.error(error.message);
  Deno.exit(1);
});
const { generated } = await ensureAdminToken(database.db, keys, config.adminToken);
if (generated) {
  console.log(
    "\nGenerated the first admin token. It is shown only this once; store it now:\n\n" +
      `    ${generated}\n\nSend it as "Authorization: Bearer <token>".\n`,
  );
}
const control = await startControl({ db: database.db, keys, config });
console.log(`Tollgate control plane: ${control.url}/graphql`);

/** How long closing may take; a stuck database does not keep the process up. */
const CLOSE_DEADLINE_MS = 15_000;
stopOnSignals(async () => {
  await control.shutdown();
  await database.close();
}, CLOSE_DEADLINE_MS);
