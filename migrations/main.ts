// `deno task migrate`: applies pending migrations to DATABASE_URL, or to the
// embedded database in TOLLGATE_DATA_DIR (default .tollgate). `--down` reverts one.
import { parseArgs } from "node:util";
import { createDb } from "../schema/db.ts";
import { migrateDown, migrateToLatest } from "./mod.ts";

const { values } = parseArgs({ args: Deno.args, options: { down: { type: "boolean" } } });
const env = Deno.env.toObject();
const { db, close } = await createDb({
  databaseUrl: env.DATABASE_URL || undefined,
  dataDir: `${env.TOLLGATE_DATA_DIR || ".tollgate"}/pgdata`,
  maxConnections: 1,
});
try {
  const applied = values.down ? await migrateDown(db) : await migrateToLatest(db);
  console.log(
    applied.length
      ? `${values.down ? "Reverted" : "Applied"}: ${applied.join(", ")}`
      : "Nothing to do: the database is up to date.",
  );
} finally {
  await close();
}
