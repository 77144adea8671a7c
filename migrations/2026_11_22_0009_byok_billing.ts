// Frozen in time: imports no app code. BYOK billing and key spend limits,
// both through the allowance mechanism of 0006:
// - api_keys.spent is what a key has cost its account (lifetime, charges
//   settled), api_keys.reserved what gateway replicas have leased against its
//   spend_limit (0008): a lease is granted only while
//   spent + reserved + lease <= spend_limit.
// - byok_monthly_usage counts each account's BYOK requests per calendar month
//   (UTC), the free ones among them, and the free requests leased to replicas:
//   free_requests + reserved never exceeds the operator's free tier.
// - allowances gains a kind: 'balance' (an account's balance, as before),
//   'key_limit' (a key's spend limit) or 'byok_free' (a month's free requests).
import { type Kysely, sql } from "kysely";

// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("api_keys")
    .addColumn("spent", "int8", (c) => c.notNull().defaultTo(0).check(sql`spent >= 0`))
    .addColumn("reserved", "int8", (c) => c.notNull().defaultTo(0).check(sql`reserved >= 0`))
    .execute();
  // A lifetime limit counts what the key cost before it was set: what the
  // ledger charged for each of the key's requests so far.
  await sql`
    update api_keys set spent = charged.amount
    from (
      select u.api_key_id, -sum(l.amount)::int8 as amount
      from ledger_entries l join usage_events u on u.request_id = l.reference
      where l.kind in ('charge', 'byok_fee') and l.book = 'customer:' || u.account_id::text
      group by u.api_key_id
    ) charged
    where api_keys.id = charged.api_key_id and charged.amount > 0`.execute(db);
  // Spending moves with every settled batch: money, not policy, so no NOTIFY.
  await sql`drop trigger api_keys_notify_policy on api_keys`.execute(db);
  await sql`
    create trigger api_keys_notify_policy after insert or update or delete on api_keys
    for each row execute function tollgate_notify_policy('last_used_at', 'spent', 'reserved')`
    .execute(db);

  await db.schema.alterTable("allowances")
    .addColumn(
      "kind",
      "text",
      (c) =>
        c.notNull().defaultTo("balance").check(sql`kind in ('balance', 'key_limit', 'byok_free')`),
    )
    // The key a 'key_limit' lease is leased against (account_id is its account).
    .addColumn("api_key_id", "uuid", (c) => c.references("api_keys.id").onDelete("cascade"))
    // The month (its first day, UTC) a 'byok_free' lease's free requests belong to.
    .addColumn("period", "date")
    .execute();
  await db.schema.alterTable("allowances")
    .addCheckConstraint(
      "allowances_kind_subject_check",
      sql`(kind = 'key_limit') = (api_key_id is not null) and (kind = 'byok_free') = (period is not null)`,
    )
    .execute();
  await db.schema.createIndex("allowances_api_key_idx").on("allowances").column("api_key_id")
    .where(sql.ref("api_key_id"), "is not", null).execute();

  await db.schema
    .createTable("byok_monthly_usage")
    .addColumn(
      "account_id",
      "uuid",
      (c) => c.notNull().references("accounts.id").onDelete("cascade"),
    )
    .addColumn("month", "date", (c) => c.notNull().check(sql`extract(day from month) = 1`))
    // BYOK requests counted this month (answered, cut or interrupted; not failures).
    .addColumn("requests", "int8", (c) => c.notNull().defaultTo(0).check(sql`requests >= 0`))
    // Of those, the ones that carried no routing fee.
    .addColumn(
      "free_requests",
      "int8",
      (c) => c.notNull().defaultTo(0).check(sql`free_requests >= 0`),
    )
    // Free requests leased to replicas and not yet used: the sum of the month's leases.
    .addColumn("reserved", "int8", (c) => c.notNull().defaultTo(0).check(sql`reserved >= 0`))
    .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint("byok_monthly_usage_pkey", ["account_id", "month"])
    .execute();
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("byok_monthly_usage").ifExists().execute();
  // Leases of the new kinds mean nothing to 0006's schema: give them up.
  await sql`delete from allowances where kind <> 'balance'`.execute(db);
  await db.schema.dropIndex("allowances_api_key_idx").ifExists().execute();
  await db.schema.alterTable("allowances").dropConstraint("allowances_kind_subject_check")
    .execute();
  await db.schema.alterTable("allowances")
    .dropColumn("period").dropColumn("api_key_id").dropColumn("kind").execute();
  await sql`drop trigger api_keys_notify_policy on api_keys`.execute(db);
  await sql`
    create trigger api_keys_notify_policy after insert or update or delete on api_keys
    for each row execute function tollgate_notify_policy('last_used_at')`.execute(db);
  await db.schema.alterTable("api_keys").dropColumn("reserved").dropColumn("spent").execute();
}
