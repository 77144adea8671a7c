import assert from "node:assert/strict";
import { sql } from "kysely";
import { migrateDown, migrateToLatest } from "../../migrations/mod.ts";
import { freshDatabase } from "../helpers/database.ts";
import { waitFor } from "../helpers/stack.ts";

Deno.test("migrations apply once, are idempotent, and revert cleanly", async () => {
  const { db, drop } = await freshDatabase({ migrate: false });
  try {
    const all = [
      "2026_11_22_0001_init",
      "2026_11_22_0002_agents",
      "2026_11_22_0003_routing",
      "2026_11_22_0004_byok",
      "2026_11_22_0005_ledger",
      "2026_11_22_0006_allowances",
      "2026_11_22_0007_identity",
      "2026_11_22_0008_key_lifecycle",
      "2026_11_22_0009_byok_billing",
      "2026_11_22_0010_views_audit",
      "2026_12_07_0011_usage_ledger_link",
    ];
    assert.deepEqual(await migrateToLatest(db.db), all);
    assert.deepEqual(await migrateToLatest(db.db), []);
    assert.deepEqual(await migrateDown(db.db), ["2026_12_07_0011_usage_ledger_link"]);
    // A request charged before 0011 (its own customer entry, referenced by its
    // request id) is linked to that entry's transaction.
    const { rows } = await sql<{ tx: string }>`
      with account as (insert into accounts (name, balance) values ('a', -106) returning id),
      usage as (
        insert into usage_events (request_id, account_id, api_key_id, endpoint, model, status,
          stream, cost, fee, estimated, latency_ms, created_at)
        select 'req_old', id, gen_random_uuid(), '/v1/chat/completions', 'm', 200, false, 100, 6,
          false, 1, now() from account
      )
      insert into ledger_entries (transaction_id, book, account_id, kind, amount, reference)
      select gen_random_uuid(), 'customer:' || id, id, 'charge', -106, 'req_old' from account
      returning transaction_id as tx
    `.execute(db.db);
    assert.deepEqual(await migrateToLatest(db.db), ["2026_12_07_0011_usage_ledger_link"]);
    const linked = await db.db.selectFrom("usage_events").select("ledger_transaction_id")
      .where("request_id", "=", "req_old").executeTakeFirstOrThrow();
    assert.equal(linked.ledger_transaction_id, rows[0]!.tx);
    assert.deepEqual(await migrateDown(db.db), ["2026_12_07_0011_usage_ledger_link"]);
    assert.deepEqual(await migrateDown(db.db), ["2026_11_22_0010_views_audit"]);
    assert.deepEqual(await migrateDown(db.db), ["2026_11_22_0009_byok_billing"]);
    assert.deepEqual(await migrateDown(db.db), ["2026_11_22_0008_key_lifecycle"]);
    assert.deepEqual(await migrateDown(db.db), ["2026_11_22_0007_identity"]);
    assert.deepEqual(await migrateDown(db.db), ["2026_11_22_0006_allowances"]);
    assert.deepEqual(await migrateDown(db.db), ["2026_11_22_0005_ledger"]);
    assert.deepEqual(await migrateDown(db.db), ["2026_11_22_0004_byok"]);
    assert.deepEqual(await migrateDown(db.db), ["2026_11_22_0003_routing"]);
    assert.deepEqual(await migrateDown(db.db), ["2026_11_22_0002_agents"]);
    assert.deepEqual(await migrateDown(db.db), ["2026_11_22_0001_init"]);
    assert.deepEqual(await migrateToLatest(db.db), all);
  } finally {
    await drop();
  }
});

Deno.test("int8 columns come back as bigint", async () => {
  const { db, drop } = await freshDatabase();
  try {
    const account = await db.db.insertInto("accounts").values({
      name: "a",
      balance: 9_007_199_254_740_993n,
    })
      .returningAll().executeTakeFirstOrThrow();
    assert.equal(account.balance, 9_007_199_254_740_993n);
    const small = await db.db.insertInto("accounts").values({ name: "b" }).returning("balance")
      .executeTakeFirstOrThrow();
    assert.equal(small.balance, 0n);
  } finally {
    await drop();
  }
});

Deno.test("policy tables notify on every write, but not when only last_used_at changes", async () => {
  const { db, drop } = await freshDatabase();
  const seen: { table: string; op: string }[] = [];
  const unlisten = await db.listen("tollgate_policy", (payload) => seen.push(JSON.parse(payload)));
  try {
    const account = await db.db.insertInto("accounts").values({ name: "a" }).returning("id")
      .executeTakeFirstOrThrow();
    const key = await db.db.insertInto("api_keys")
      .values({ account_id: account.id, name: "k", key_hash: "h", prefix: "tg_x", last4: "abcd" })
      .returning("id").executeTakeFirstOrThrow();
    await waitFor(() => seen.length === 2);
    await db.db.updateTable("api_keys").set({ last_used_at: new Date() }).where("id", "=", key.id)
      .execute();
    await db.db.updateTable("api_keys").set({ status: "revoked" }).where("id", "=", key.id)
      .execute();
    await waitFor(() => seen.length === 3);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.deepEqual(seen.map((s) => `${s.table} ${s.op}`), [
      "accounts INSERT",
      "api_keys INSERT",
      "api_keys UPDATE",
    ]);
  } finally {
    await unlisten();
    await drop();
  }
});

Deno.test("the ledger and the audit log are append-only", async () => {
  const { db, drop } = await freshDatabase();
  try {
    await db.db.insertInto("ledger_entries")
      .values({
        transaction_id: crypto.randomUUID(),
        book: "system:test",
        kind: "adjustment",
        amount: 5n,
      }).execute();
    await assert.rejects(sql`update ledger_entries set amount = 6`.execute(db.db), /append-only/);
    await assert.rejects(sql`delete from ledger_entries`.execute(db.db), /append-only/);
    await db.db.insertInto("audit_log").values({
      actor: "t",
      action: "test",
      hash: "h",
      diff: "{}",
    }).execute();
    await assert.rejects(sql`delete from audit_log`.execute(db.db), /append-only/);
  } finally {
    await drop();
  }
});
