/**
 * The audit log: secrets never reach a diff, rows name their account, the
 * hash chain holds under concurrent writers and names the first broken link,
 * and the auditLog connection shows each reader what its role allows (and
 * records that it looked).
 */
import assert from "node:assert/strict";
import { type Kysely, sql } from "kysely";
import type { Actor } from "../../control/access.ts";
import { recordAudit, verifyAuditChain } from "../../control/services/audit.ts";
import { isSecretFieldName, redactDiff, REDACTED } from "../../control/services/audit_redaction.ts";
import { adjustBalance } from "../../control/services/ledger.ts";
import type { Database } from "../../schema/database.ts";
import { ADMIN_TOKEN_PREFIX, generateSecret } from "../../schema/keys.ts";
import { executeAs, OPERATOR, userWith } from "../helpers/as_actor.ts";
import { freshDatabase } from "../helpers/database.ts";

const META = { actor: "admin:configured", ip: "127.0.0.1", requestId: "req-1" };

async function withDb(test: (db: Kysely<Database>) => Promise<void>): Promise<void> {
  const database = await freshDatabase();
  try {
    await test(database.db.db);
  } finally {
    await database.drop();
  }
}

async function createAccount(db: Kysely<Database>, name: string): Promise<string> {
  const row = await db.insertInto("accounts").values({ name }).returning("id")
    .executeTakeFirstOrThrow();
  return row.id;
}

async function audit(
  db: Kysely<Database>,
  record: { action: string; accountId?: string | null; actor?: string; target?: string },
) {
  return await db.transaction().execute((trx) =>
    recordAudit(trx, {
      ...META,
      actor: record.actor ?? META.actor,
      action: record.action,
      targetType: record.target ? "thing" : null,
      targetId: record.target ?? null,
      accountId: record.accountId,
      diff: { n: 1 },
    })
  );
}

/** Runs `change` with the append-only trigger off, as someone with table ownership could. */
async function tamper(db: Kysely<Database>, change: (trx: Kysely<Database>) => Promise<unknown>) {
  await db.transaction().execute(async (trx) => {
    await sql`alter table audit_log disable trigger audit_log_append_only`.execute(trx);
    await change(trx);
    await sql`alter table audit_log enable trigger audit_log_append_only`.execute(trx);
  });
}

Deno.test("secret-looking field names are recognised, without catching counts and ids", () => {
  for (
    const name of [
      "secret",
      "apiKey",
      "api_key",
      "upstreamApiKey",
      "keyHash",
      "previous_key_hash",
      "password",
      "newPassword",
      "refreshToken",
      "token",
      "credential",
      "providerCredentials",
      "credential_ciphertext",
      "privateKey",
      "kek",
      "Authorization",
      "webhook-signing-secret",
    ]
  ) assert.ok(isSecretFieldName(name), name);
  for (
    const name of [
      "maxOutputTokens",
      "promptTokens",
      "credentialLast4",
      "credentialChange",
      "kekId",
      "keyId",
      "prefix",
      "last4",
      "name",
      "monkey",
    ]
  ) assert.ok(!isSecretFieldName(name), name);
});

Deno.test("a diff is redacted at every depth, by field name and by value, before it is stored", async () => {
  const apiKey = generateSecret().secret;
  const adminToken = generateSecret(ADMIN_TOKEN_PREFIX).secret;
  const jwt = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJl";
  const diff = {
    name: "acme",
    apiKey: "sk-upstream-plaintext",
    nested: { keyHash: "abc123", list: [{ password: "hunter2" }, { note: apiKey }] },
    value: adminToken,
    session: jwt,
    password: null,
    hasCredential: true,
    amount: 12n,
    at: new Date("2027-01-31T00:00:00Z"),
    skipped: undefined,
  };
  const expected = {
    name: "acme",
    apiKey: REDACTED,
    nested: { keyHash: REDACTED, list: [{ password: REDACTED }, { note: REDACTED }] },
    value: REDACTED,
    session: REDACTED,
    password: null,
    hasCredential: true,
    amount: "12",
    at: "2027-01-31T00:00:00.000Z",
  };
  assert.deepEqual(redactDiff(diff), expected);

  await withDb(async (db) => {
    const row = await db.transaction().execute((trx) =>
      recordAudit(trx, { ...META, action: "test.secret", targetType: null, targetId: null, diff })
    );
    assert.deepEqual(row.diff, expected);
    const stored = JSON.stringify(
      await db.selectFrom("audit_log").selectAll().execute(),
      (_k, v) => typeof v === "bigint" ? v.toString() : v,
    );
    for (const secret of ["sk-upstream-plaintext", "abc123", "hunter2", apiKey, adminToken, jwt]) {
      assert.ok(!stored.includes(secret), secret);
    }
    assert.deepEqual(await verifyAuditChain(db), { ok: true, rows: 1 });
  });
});

Deno.test("a row names its account, and the chain covers it", async () => {
  await withDb(async (db) => {
    const acme = await createAccount(db, "Acme");
    const globex = await createAccount(db, "Globex");
    await adjustBalance(db, { accountId: acme, amount: "5", reason: "credit" }, {
      actor: OPERATOR,
      audit: META,
    });
    const gatewayWide = await audit(db, { action: "provider.update" });
    const rows = await db.selectFrom("audit_log").selectAll().orderBy("id").execute();
    assert.deepEqual(rows.map((r) => [r.action, r.account_id]), [
      ["account.adjust_balance", acme],
      ["provider.update", null],
    ]);
    assert.deepEqual(await verifyAuditChain(db), { ok: true, rows: 2 });

    // Moving a row to another account, or out of every account, breaks it.
    await tamper(
      db,
      (trx) =>
        trx.updateTable("audit_log").set({ account_id: globex }).where("id", "=", rows[0]!.id)
          .execute(),
    );
    const moved = await verifyAuditChain(db);
    assert.deepEqual(moved, {
      ok: false,
      brokenAt: rows[0]!.id,
      problem: `row ${rows[0]!.id}'s contents do not match its hash: the row was altered`,
    });
    await tamper(
      db,
      (trx) =>
        trx.updateTable("audit_log").set({ account_id: acme }).where("id", "=", rows[0]!.id)
          .execute(),
    );
    assert.equal((await verifyAuditChain(db)).ok, true, "put back, it verifies again");
    await tamper(
      db,
      (trx) =>
        trx.updateTable("audit_log").set({ account_id: acme }).where("id", "=", gatewayWide.id)
          .execute(),
    );
    assert.equal((await verifyAuditChain(db)).ok, false, "a null account_id is covered too");
  });
});

Deno.test("concurrent mutations never fork the chain: each row links to the one before it", async () => {
  await withDb(async (db) => {
    const accounts = await Promise.all(
      Array.from({ length: 6 }, (_, i) => createAccount(db, `A${i}`)),
    );
    // Balance adjustments through GraphQL and bare audit appends, all at once.
    const adjust = `mutation ($id: ID!) {
      adjustBalance(input: { accountId: $id, amount: "1", reason: "race" }) { __typename } }`;
    const results = await Promise.all([
      ...accounts.flatMap((id) =>
        Array.from({ length: 4 }, () => executeAs(db, OPERATOR, adjust, { id }))
      ),
      ...Array.from({ length: 16 }, (_, i) => audit(db, { action: `test.concurrent_${i}` })),
    ]);
    for (const result of results.slice(0, 24)) {
      assert.deepEqual(
        (result as { data?: unknown }).data,
        { adjustBalance: { __typename: "BalanceAdjustment" } },
      );
    }
    const rows = await db.selectFrom("audit_log").selectAll().orderBy("id").execute();
    assert.equal(rows.length, 40);
    assert.equal(new Set(rows.map((r) => r.prev_hash)).size, 40, "no two rows share a link");
    rows.forEach((row, i) => assert.equal(row.prev_hash, i === 0 ? null : rows[i - 1]!.hash));
    assert.deepEqual(await verifyAuditChain(db), { ok: true, rows: 40 });
  });
});

Deno.test("the log refuses UPDATE, DELETE and TRUNCATE", async () => {
  await withDb(async (db) => {
    const row = await audit(db, { action: "test.one" });
    await assert.rejects(
      db.updateTable("audit_log").set({ actor: "someone" }).where("id", "=", row.id).execute(),
      /append-only/,
    );
    await assert.rejects(db.deleteFrom("audit_log").execute(), /append-only/);
    await assert.rejects(sql`truncate audit_log`.execute(db), /append-only/);
    assert.equal((await db.selectFrom("audit_log").select("id").execute()).length, 1);
  });
});

interface Chain {
  auditChain: {
    ok: boolean;
    rows: number | null;
    broken: { id: string; problem: string } | null;
    head: { id: string; hash: string } | null;
  };
}

const CHAIN = "{ auditChain { ok rows broken { id problem } head { id hash } } }";

async function chain(db: Kysely<Database>): Promise<Chain["auditChain"]> {
  const result = await executeAs<Chain>(db, OPERATOR, CHAIN);
  assert.equal(result.errors, undefined, JSON.stringify(result.errors));
  return result.data!.auditChain;
}

Deno.test("auditChain verifies the chain and names its head, then the first broken link", async () => {
  await withDb(async (db) => {
    assert.deepEqual(await chain(db), { ok: true, rows: 0, broken: null, head: null });
    const rows = [];
    for (let i = 0; i < 5; i++) rows.push(await audit(db, { action: `test.step_${i}` }));
    const [r1, r2, r3, r4, r5] = rows.map((r) => r!);
    assert.deepEqual(await chain(db), {
      ok: true,
      rows: 5,
      broken: null,
      head: { id: r5!.id.toString(), hash: r5!.hash },
    });

    // A removed row in the middle: the next row no longer links.
    await tamper(db, (trx) => trx.deleteFrom("audit_log").where("id", "=", r3!.id).execute());
    assert.deepEqual((await chain(db)).broken, {
      id: r4!.id.toString(),
      problem: `row ${r4!.id} does not link to row ${r2!.id} before it: a row between them was ` +
        `removed, or row ${r2!.id} was rewritten with a recomputed hash`,
    });

    // An earlier edit is reported first: the first broken link.
    const forged = JSON.stringify({ n: 2 });
    await tamper(
      db,
      (trx) =>
        trx.updateTable("audit_log").set({ diff: sql<string>`${forged}::text::jsonb` })
          .where("id", "=", r2!.id).execute(),
    );
    assert.deepEqual((await chain(db)).broken, {
      id: r2!.id.toString(),
      problem: `row ${r2!.id}'s contents do not match its hash: the row was altered`,
    });

    // The oldest rows removed: the new oldest links to nothing there.
    await tamper(db, (trx) => trx.deleteFrom("audit_log").where("id", "<=", r2!.id).execute());
    assert.deepEqual((await chain(db)).broken, {
      id: r4!.id.toString(),
      problem: `row ${r4!.id} is the oldest row but links to an earlier one: the rows before ` +
        "it were removed",
    });
    assert.ok(r1);
  });
});

Deno.test("auditChain is for operators only", async () => {
  await withDb(async (db) => {
    const acme = await createAccount(db, "Acme");
    const result = await executeAs(db, userWith({ [acme]: "owner" }), CHAIN);
    assert.equal(result.data, null);
    assert.equal(result.errors?.[0]?.extensions?.code, "FORBIDDEN");
  });
});

interface AuditPage {
  auditLog: {
    edges: { cursor: string; node: { id: string; action: string; accountId: string | null } }[];
    pageInfo: { hasNextPage: boolean; endCursor: string | null };
  };
}

const AUDIT_LOG = `query ($filter: AuditLogFilter, $first: Int, $after: String) {
  auditLog(filter: $filter, first: $first, after: $after) {
    edges { cursor node { id action accountId actor targetType targetId diff ip createdAt hash
      prevHash } }
    pageInfo { hasNextPage endCursor } } }`;

/** The actions the actor reads, newest first, leaving out audit_log.read rows unless `reads`. */
async function actionsFor(
  db: Kysely<Database>,
  actor: Actor,
  filter: Record<string, unknown> | null,
  options: { reads?: boolean } = {},
): Promise<string[]> {
  const result = await executeAs<AuditPage>(db, actor, AUDIT_LOG, { filter, first: 100 });
  assert.equal(result.errors, undefined, JSON.stringify(result.errors));
  const actions = result.data!.auditLog.edges.map((e) => e.node.action);
  return options.reads ? actions : actions.filter((a) => a !== "audit_log.read");
}

Deno.test("auditLog: operators read every row, filtered by actor, action, target and time, newest first", async () => {
  await withDb(async (db) => {
    const acme = await createAccount(db, "Acme");
    await audit(db, { action: "api_key.create", accountId: acme, actor: "user:1", target: "k1" });
    await audit(db, { action: "api_key.revoke", accountId: acme, actor: "user:2", target: "k1" });
    await audit(db, { action: "provider.update", target: "p1" });
    // Rows carry microseconds, a Date only milliseconds: step clear of the
    // millisecond on each side of the cut, or a row can land inside it.
    await new Promise((resolve) => setTimeout(resolve, 5));
    const cut = new Date();
    await new Promise((resolve) => setTimeout(resolve, 5));
    await audit(db, { action: "apikey.other", accountId: acme, actor: "user:1", target: "k2" });

    const all = ["apikey.other", "provider.update", "api_key.revoke", "api_key.create"];
    assert.deepEqual(await actionsFor(db, OPERATOR, null), all);
    assert.deepEqual(await actionsFor(db, OPERATOR, { actor: "user:1" }), [
      "apikey.other",
      "api_key.create",
    ]);
    assert.deepEqual(await actionsFor(db, OPERATOR, { action: "api_key.revoke" }), [
      "api_key.revoke",
    ]);
    // "_" is not a wildcard in a prefix: api_key.* does not match apikey.other.
    assert.deepEqual(await actionsFor(db, OPERATOR, { action: "api_key.*" }), [
      "api_key.revoke",
      "api_key.create",
    ]);
    assert.deepEqual(await actionsFor(db, OPERATOR, { targetType: "thing", targetId: "k1" }), [
      "api_key.revoke",
      "api_key.create",
    ]);
    assert.deepEqual(await actionsFor(db, OPERATOR, { to: cut.toISOString() }), all.slice(1));
    // Each read above was itself audited; from `cut` on, those show too.
    const since = await actionsFor(db, OPERATOR, { from: cut.toISOString() }, { reads: true });
    assert.deepEqual(since.filter((a) => a !== "audit_log.read"), ["apikey.other"]);
    assert.equal(since.filter((a) => a === "audit_log.read").length, 7, "this read included");

    // Pages of 2 through the whole log, following endCursor, repeat and skip nothing.
    const seen: string[] = [];
    let after: string | null = null;
    for (;;) {
      const result: { data?: AuditPage | null } = await executeAs<AuditPage>(
        db,
        OPERATOR,
        AUDIT_LOG,
        { filter: { to: cut.toISOString() }, first: 2, after },
      );
      seen.push(...result.data!.auditLog.edges.map((e) => e.node.action));
      if (!result.data!.auditLog.pageInfo.hasNextPage) break;
      after = result.data!.auditLog.pageInfo.endCursor;
    }
    assert.deepEqual(seen, all.slice(1));

    const refused = await executeAs(db, OPERATOR, AUDIT_LOG, {
      filter: { action: "api key" },
      first: 1,
      after: "bm90IGEgY3Vyc29y",
    });
    assert.equal(refused.errors?.[0]?.extensions?.code, "BAD_USER_INPUT");
    for (const first of [0, 201]) {
      const tooMany = await executeAs(db, OPERATOR, AUDIT_LOG, { first });
      assert.equal(tooMany.errors?.[0]?.extensions?.field, "first", `first: ${first}`);
    }
  });
});

Deno.test("auditLog: an account's owners and admins read its rows only; others are refused", async () => {
  await withDb(async (db) => {
    const acme = await createAccount(db, "Acme");
    const globex = await createAccount(db, "Globex");
    await audit(db, { action: "api_key.create", accountId: acme, actor: "user:1" });
    await audit(db, { action: "api_key.create", accountId: globex, actor: "user:9" });
    await audit(db, { action: "provider.update" });

    for (const role of ["owner", "admin"] as const) {
      const actor = userWith({ [acme]: role, [globex]: "viewer" });
      assert.deepEqual(await actionsFor(db, actor, { accountId: acme }), ["api_key.create"], role);
    }
    const result = await executeAs<AuditPage>(db, userWith({ [acme]: "owner" }), AUDIT_LOG, {
      filter: { accountId: acme },
    });
    const nodes = result.data!.auditLog.edges.map((e) => e.node);
    assert.ok(nodes.every((n) => n.accountId === acme), "nothing of Globex, nothing gateway-wide");

    const refusals: [Actor, Record<string, unknown> | null, string][] = [
      [userWith({ [acme]: "member" }), { accountId: acme }, "FORBIDDEN"],
      [userWith({ [acme]: "viewer" }), { accountId: acme }, "FORBIDDEN"],
      [userWith({ [acme]: "owner" }), { accountId: globex }, "NOT_FOUND"],
      [userWith({ [acme]: "owner" }), null, "BAD_USER_INPUT"],
      [OPERATOR, { accountId: "00000000-0000-4000-8000-000000000000" }, "NOT_FOUND"],
    ];
    const before = await db.selectFrom("audit_log").select("id").execute();
    for (const [actor, filter, code] of refusals) {
      const refused = await executeAs(db, actor, AUDIT_LOG, { filter });
      assert.equal(refused.errors?.[0]?.extensions?.code, code, JSON.stringify(filter));
      assert.equal(refused.data, null);
    }
    const after = await db.selectFrom("audit_log").select("id").execute();
    assert.equal(after.length, before.length, "a refused read is not recorded");
  });
});

Deno.test("reading the audit log is audited in the account read, with the filters used", async () => {
  await withDb(async (db) => {
    const acme = await createAccount(db, "Acme");
    const admin = userWith({ [acme]: "admin" });
    await actionsFor(db, admin, { accountId: acme, action: "api_key.*" });
    await actionsFor(db, OPERATOR, null);
    const rows = await db.selectFrom("audit_log").selectAll().orderBy("id").execute();
    assert.deepEqual(
      rows.map((r) => [r.action, r.actor, r.account_id, r.target_type, r.target_id, r.diff]),
      [
        ["audit_log.read", admin.id, acme, "account", acme, { filter: { action: "api_key.*" } }],
        ["audit_log.read", OPERATOR.id, null, null, null, { filter: {} }],
      ],
    );
    // The operator's own address is not shown to a tenant; its users' are.
    const result = await executeAs<{ auditLog: { edges: { node: { ip: string | null } }[] } }>(
      db,
      admin,
      `query ($id: ID!) { auditLog(filter: { accountId: $id }) { edges { node { ip } } } }`,
      { id: acme },
    );
    assert.deepEqual(result.data!.auditLog.edges.map((e) => e.node.ip), ["192.0.2.7", "192.0.2.7"]);
    await audit(db, { action: "account.adjust_balance", accountId: acme });
    const withOperator = await executeAs<
      { auditLog: { edges: { node: { ip: string | null } }[] } }
    >(
      db,
      admin,
      `query ($id: ID!) { auditLog(filter: { accountId: $id }, first: 2) { edges { node { ip } } } }`,
      { id: acme },
    );
    assert.deepEqual(withOperator.data!.auditLog.edges.map((e) => e.node.ip), [
      "192.0.2.7",
      null,
    ]);
  });
});
