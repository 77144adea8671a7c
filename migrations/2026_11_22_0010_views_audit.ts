// Frozen in time: imports no app code. Money, usage and audit views.
//
// Audit rows name the account they concern (null for gateway-wide changes
// such as providers and models), so an account's owners and admins can read
// their own entries; the log also refuses TRUNCATE (0001's append-only
// trigger is per row, which TRUNCATE skips).
//
// Request logs page newest first by (created_at, request_id), within an
// account, within a key, or across every account (operators). Those indexes
// replace 0001's (account_id, created_at) and (created_at), which they cover.
// Filters by agent, model, status or billing mode scan within one of them:
// each index more is paid by every usage batch the gateways write.
import { type Kysely, sql } from "kysely";

// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  // No foreign key: an audit row outlives anything it names, and may not be
  // touched by a cascade (the append-only trigger would refuse it anyway).
  await db.schema.alterTable("audit_log").addColumn("account_id", "uuid").execute();
  await db.schema.createIndex("audit_log_account_idx").on("audit_log")
    .columns(["account_id", "id"]).where(sql.ref("account_id"), "is not", null).execute();
  await db.schema.createIndex("audit_log_actor_idx").on("audit_log").columns(["actor", "id"])
    .execute();
  await db.schema.createIndex("audit_log_action_idx").on("audit_log").columns(["action", "id"])
    .execute();
  await db.schema.createIndex("audit_log_target_idx").on("audit_log")
    .columns(["target_type", "target_id", "id"]).execute();
  await db.schema.createIndex("audit_log_created_idx").on("audit_log").column("created_at")
    .execute();
  await sql`
    create trigger audit_log_no_truncate before truncate on audit_log
    for each statement execute function tollgate_append_only()`.execute(db);

  await db.schema.createIndex("usage_events_account_recent_idx").on("usage_events")
    .columns(["account_id", "created_at", "request_id"]).execute();
  await db.schema.createIndex("usage_events_key_recent_idx").on("usage_events")
    .columns(["api_key_id", "created_at", "request_id"]).execute();
  await db.schema.createIndex("usage_events_recent_idx").on("usage_events")
    .columns(["created_at", "request_id"]).execute();
  await db.schema.dropIndex("usage_events_account_time_idx").ifExists().execute();
  await db.schema.dropIndex("usage_events_time_idx").ifExists().execute();
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.createIndex("usage_events_time_idx").ifNotExists().on("usage_events")
    .column("created_at").execute();
  await db.schema.createIndex("usage_events_account_time_idx").ifNotExists().on("usage_events")
    .columns(["account_id", "created_at"]).execute();
  for (
    const name of [
      "usage_events_recent_idx",
      "usage_events_key_recent_idx",
      "usage_events_account_recent_idx",
    ]
  ) {
    await db.schema.dropIndex(name).ifExists().execute();
  }
  await sql`drop trigger if exists audit_log_no_truncate on audit_log`.execute(db);
  for (
    const name of [
      "audit_log_created_idx",
      "audit_log_target_idx",
      "audit_log_action_idx",
      "audit_log_actor_idx",
      "audit_log_account_idx",
    ]
  ) {
    await db.schema.dropIndex(name).ifExists().execute();
  }
  await db.schema.alterTable("audit_log").dropColumn("account_id").execute();
}
