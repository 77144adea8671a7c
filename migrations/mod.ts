/**
 * The list of migrations, in order, and the functions that apply them with
 * Kysely's Migrator. Its lock table makes concurrent starts safe: the second
 * process waits, then finds nothing left to do.
 */
import type { Kysely } from "kysely";
import { type Migration, type MigrationResultSet, Migrator } from "kysely/migration";
import * as init from "./2026_11_22_0001_init.ts";
import * as agents from "./2026_11_22_0002_agents.ts";
import * as routing from "./2026_11_22_0003_routing.ts";
import * as byok from "./2026_11_22_0004_byok.ts";
import * as ledger from "./2026_11_22_0005_ledger.ts";
import * as allowances from "./2026_11_22_0006_allowances.ts";
import * as identity from "./2026_11_22_0007_identity.ts";
import * as keyLifecycle from "./2026_11_22_0008_key_lifecycle.ts";
import * as byokBilling from "./2026_11_22_0009_byok_billing.ts";
import * as viewsAudit from "./2026_11_22_0010_views_audit.ts";
import * as usageLedgerLink from "./2026_12_07_0011_usage_ledger_link.ts";

export const migrations: Record<string, Migration> = {
  "2026_11_22_0001_init": init,
  "2026_11_22_0002_agents": agents,
  "2026_11_22_0003_routing": routing,
  "2026_11_22_0004_byok": byok,
  "2026_11_22_0005_ledger": ledger,
  "2026_11_22_0006_allowances": allowances,
  "2026_11_22_0007_identity": identity,
  "2026_11_22_0008_key_lifecycle": keyLifecycle,
  "2026_11_22_0009_byok_billing": byokBilling,
  "2026_11_22_0010_views_audit": viewsAudit,
  "2026_12_07_0011_usage_ledger_link": usageLedgerLink,
};

// deno-lint-ignore no-explicit-any
function migrator(db: Kysely<any>): Migrator {
  return new Migrator({ db, provider: { getMigrations: () => Promise.resolve(migrations) } });
}

/** Applies every pending migration; throws with the failing migration's name. */
// deno-lint-ignore no-explicit-any
export async function migrateToLatest(db: Kysely<any>): Promise<string[]> {
  return unwrap(await migrator(db).migrateToLatest());
}

/** Reverts the latest migration. */
// deno-lint-ignore no-explicit-any
export async function migrateDown(db: Kysely<any>): Promise<string[]> {
  return unwrap(await migrator(db).migrateDown());
}

function unwrap({ error, results = [] }: MigrationResultSet): string[] {
  const failed = results.find((r) => r.status === "Error");
  if (error) {
    const name = failed ? ` in ${failed.migrationName}` : "";
    throw new Error(`Migration failed${name}: ${error instanceof Error ? error.message : error}`, {
      cause: error,
    });
  }
  return results.filter((r) => r.status === "Success").map((r) => r.migrationName);
}
