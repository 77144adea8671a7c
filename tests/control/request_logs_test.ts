/**
 * Request logs: usage events newest first in keyset pages, filtered by key,
 * agent, model, status, billing mode and time; each reader sees what its role
 * allows, and each read is audited.
 */
import assert from "node:assert/strict";
import { type Kysely, sql } from "kysely";
import type { Actor } from "../../control/access.ts";
import type { Database, NewUsageEvent } from "../../schema/database.ts";
import { executeAs, OPERATOR, userWith } from "../helpers/as_actor.ts";
import { freshDatabase } from "../helpers/database.ts";

const NO_SUCH_ID = "00000000-0000-4000-8000-000000000000";

interface Setup {
  db: Kysely<Database>;
  acme: string;
  globex: string;
  /** Acme's two keys and Globex's one. */
  keys: { a1: string; a2: string; g1: string };
}

async function withLogs(test: (setup: Setup) => Promise<void>): Promise<void> {
  const database = await freshDatabase();
  const db = database.db.db;
  try {
    const [acme, globex] = await Promise.all(
      ["Acme", "Globex"].map(async (name) =>
        (await db.insertInto("accounts").values({ name }).returning("id").executeTakeFirstOrThrow())
          .id
      ),
    );
    const keys = { a1: crypto.randomUUID(), a2: crypto.randomUUID(), g1: crypto.randomUUID() };
    await test({ db, acme: acme!, globex: globex!, keys });
  } finally {
    await database.drop();
  }
}

function event(
  accountId: string,
  apiKeyId: string,
  requestId: string,
  createdAt: string,
  extra: Partial<NewUsageEvent> = {},
): NewUsageEvent {
  return {
    request_id: requestId,
    account_id: accountId,
    api_key_id: apiKeyId,
    endpoint: "/v1/chat/completions",
    model: "gpt-x",
    status: 200,
    stream: false,
    prompt_tokens: 10,
    completion_tokens: 5,
    cached_tokens: 0,
    total_tokens: 15,
    cost: 100n,
    estimated: false,
    latency_ms: 12,
    created_at: createdAt,
    ...extra,
  };
}

/**
 * Inserts events with their instants to the microsecond: Postgres.js would
 * pass a string bound to a timestamptz through a Date, keeping milliseconds.
 */
async function insertEvents(db: Kysely<Database>, events: NewUsageEvent[]): Promise<void> {
  await db.insertInto("usage_events").values(events.map((e) => ({
    ...e,
    created_at: sql<string>`${String(e.created_at)}::text::timestamptz`,
  }))).execute();
}

const LOGS = `query ($filter: RequestLogFilter, $first: Int, $after: String, $last: Int,
  $before: String) {
  requestLogs(filter: $filter, first: $first, after: $after, last: $last, before: $before) {
    edges { cursor node { requestId accountId apiKeyId agentName model status billingMode cost
      fee createdAt } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }`;

interface LogsPage {
  requestLogs: {
    edges: { cursor: string; node: { requestId: string; fee: string; billingMode: string } }[];
    pageInfo: {
      hasNextPage: boolean;
      hasPreviousPage: boolean;
      startCursor: string;
      endCursor: string;
    };
  };
}

async function page(db: Kysely<Database>, actor: Actor, variables: Record<string, unknown>) {
  const result = await executeAs<LogsPage>(db, actor, LOGS, variables);
  assert.equal(result.errors, undefined, JSON.stringify(result.errors));
  return result.data!.requestLogs;
}

async function ids(db: Kysely<Database>, actor: Actor, filter: Record<string, unknown>) {
  return (await page(db, actor, { filter, first: 500 })).edges.map((e) => e.node.requestId);
}

Deno.test("requestLogs pages newest first; rows sharing an instant, even a microsecond, are neither skipped nor repeated", async () => {
  await withLogs(async ({ db, acme, keys }) => {
    // Three rows in one microsecond and two more in the same millisecond:
    // a cursor rounded to JavaScript's milliseconds would lose some of them.
    const at = (micros: string) => `2027-01-31T10:00:00.${micros}Z`;
    await insertEvents(db, [
      event(acme, keys.a1, "r-a", at("000100")),
      event(acme, keys.a1, "r-b", at("000100")),
      event(acme, keys.a1, "r-c", at("000100")),
      event(acme, keys.a1, "r-d", at("000101")),
      event(acme, keys.a1, "r-e", at("000900")),
      event(acme, keys.a1, "r-f", at("001000")),
      event(acme, keys.a1, "r-g", "2027-01-31T09:59:59Z"),
    ]);
    const newestFirst = ["r-f", "r-e", "r-d", "r-c", "r-b", "r-a", "r-g"];

    const forward: string[] = [];
    const pages: boolean[] = [];
    let after: string | null = null;
    for (;;) {
      const current: LogsPage["requestLogs"] = await page(db, OPERATOR, {
        filter: { accountId: acme },
        first: 2,
        after,
      });
      forward.push(...current.edges.map((e) => e.node.requestId));
      pages.push(current.pageInfo.hasNextPage);
      if (!current.pageInfo.hasNextPage) break;
      after = current.pageInfo.endCursor;
    }
    assert.deepEqual(forward, newestFirst);
    assert.deepEqual(pages, [true, true, true, false]);

    // Backwards from the end, with last and before.
    const backward: string[] = [];
    let before: string | null = null;
    for (;;) {
      const current: LogsPage["requestLogs"] = await page(db, OPERATOR, {
        filter: { accountId: acme },
        last: 3,
        before,
      });
      backward.unshift(...current.edges.map((e) => e.node.requestId));
      if (!current.pageInfo.hasPreviousPage) break;
      before = current.pageInfo.startCursor;
    }
    assert.deepEqual(backward, newestFirst);

    // A row that arrives later (a replayed spool) lands in its place; pages already read hold.
    const first = await page(db, OPERATOR, { filter: { accountId: acme }, first: 3 });
    await insertEvents(db, [event(acme, keys.a1, "r-late", at("000050"))]);
    const rest = await page(db, OPERATOR, {
      filter: { accountId: acme },
      first: 10,
      after: first.pageInfo.endCursor,
    });
    assert.deepEqual(rest.edges.map((e) => e.node.requestId), [
      "r-c",
      "r-b",
      "r-a",
      "r-late",
      "r-g",
    ]);
  });
});

Deno.test("requestLogs filters by key, agent, model, status or its class, billing mode and time", async () => {
  await withLogs(async ({ db, acme, globex, keys }) => {
    const t = (minute: number) => `2027-01-31T10:${String(minute).padStart(2, "0")}:00Z`;
    await insertEvents(db, [
      event(acme, keys.a1, "r1", t(1), { agent_name: "triage", model: "gpt-x" }),
      event(acme, keys.a1, "r2", t(2), { agent_name: "triage", model: "claude", status: 429 }),
      event(acme, keys.a2, "r3", t(3), { model: "claude", status: 502, error_code: "upstream" }),
      event(acme, keys.a2, "r4", t(4), { billing_mode: "byok", fee: 7n, cost: 0n }),
      event(acme, keys.a1, "r5", t(5), { status: 404, agent_name: "writer" }),
      event(globex, keys.g1, "g1", t(3)),
    ]);
    const filter = (more: Record<string, unknown>) => ({ accountId: acme, ...more });
    const cases: [Record<string, unknown>, string[]][] = [
      [{}, ["r5", "r4", "r3", "r2", "r1"]],
      [{ apiKeyId: keys.a2 }, ["r4", "r3"]],
      [{ agentName: "triage" }, ["r2", "r1"]],
      [{ model: "claude" }, ["r3", "r2"]],
      [{ status: "429" }, ["r2"]],
      [{ status: "4xx" }, ["r5", "r2"]],
      [{ status: "5XX" }, ["r3"]],
      [{ status: "2xx" }, ["r4", "r1"]],
      [{ billingMode: "byok" }, ["r4"]],
      [{ billingMode: "standard", status: "2xx" }, ["r1"]],
      [{ from: t(2), to: t(4) }, ["r3", "r2"]],
      [{ apiKeyId: keys.g1 }, []],
      [{ model: "nothing-like-it" }, []],
    ];
    for (const [more, expected] of cases) {
      assert.deepEqual(await ids(db, OPERATOR, filter(more)), expected, JSON.stringify(more));
    }
    const byok = await page(db, OPERATOR, { filter: filter({ billingMode: "byok" }) });
    assert.deepEqual(
      byok.edges.map((e) => [e.node.billingMode, e.node.fee]),
      [["byok", "0.00000007"]],
    );
    // Without accountId an operator reads every account's.
    assert.deepEqual(await ids(db, OPERATOR, { status: "2xx", from: t(3) }), ["r4", "g1"]);

    const refusals: [Record<string, unknown>, string][] = [
      [filter({ status: "42" }), "status"],
      [filter({ status: "6xx" }), "status"],
      [filter({ apiKeyId: "not-a-key" }), "apiKeyId"],
      [filter({ from: t(4), to: t(4) }), "to"],
      [filter({ model: "  " }), "model"],
    ];
    for (const [bad, field] of refusals) {
      const result = await executeAs(db, OPERATOR, LOGS, { filter: bad });
      assert.equal(result.errors?.[0]?.extensions?.code, "BAD_USER_INPUT", JSON.stringify(bad));
      assert.equal(result.errors?.[0]?.extensions?.field, field, JSON.stringify(bad));
    }
    const badEnum = await executeAs(db, OPERATOR, LOGS, {
      filter: filter({ billingMode: "free" }),
    });
    assert.ok(badEnum.errors?.[0]?.message.includes("BillingMode"), JSON.stringify(badEnum));
    for (
      const [variables, field] of [[{ first: 0 }, "first"], [{ last: 501 }, "last"], [{
        after: "cmVxdWVzdF9sb2c6WyJ4Il0",
      }, "after"]] as const
    ) {
      const result = await executeAs(db, OPERATOR, LOGS, { filter: filter({}), ...variables });
      assert.equal(result.errors?.[0]?.extensions?.field, field, JSON.stringify(variables));
    }
  });
});

Deno.test("requestLogs: an account's viewers read its logs; other accounts look missing; others must name one", async () => {
  await withLogs(async ({ db, acme, globex, keys }) => {
    await insertEvents(db, [
      event(acme, keys.a1, "a-1", "2027-01-31T10:00:00Z"),
      event(globex, keys.g1, "g-1", "2027-01-31T10:00:00Z"),
    ]);
    for (const role of ["viewer", "member", "admin", "owner"] as const) {
      assert.deepEqual(await ids(db, userWith({ [acme]: role }), { accountId: acme }), ["a-1"]);
    }
    const managementKey: Actor = {
      kind: "api_key",
      id: "key:tg_AbCd1234",
      keyId: crypto.randomUUID(),
      accountId: globex,
      role: "admin",
    };
    assert.deepEqual(await ids(db, managementKey, { accountId: globex }), ["g-1"]);

    const refusals: [Actor, Record<string, unknown>, string][] = [
      [userWith({ [acme]: "owner" }), { accountId: globex }, "NOT_FOUND"],
      [managementKey, { accountId: acme }, "NOT_FOUND"],
      [userWith({ [acme]: "owner" }), {}, "BAD_USER_INPUT"],
      [OPERATOR, { accountId: NO_SUCH_ID }, "NOT_FOUND"],
      [OPERATOR, { accountId: "not-a-uuid" }, "NOT_FOUND"],
    ];
    for (const [actor, filter, code] of refusals) {
      const result = await executeAs(db, actor, LOGS, { filter });
      assert.equal(
        result.errors?.[0]?.extensions?.code,
        code,
        `${actor.id} ${JSON.stringify(filter)}`,
      );
      assert.equal(result.data, null);
    }
    // A tenant's NOT_FOUND says no more than a missing account's would.
    const hidden = await executeAs(db, userWith({ [acme]: "owner" }), LOGS, {
      filter: { accountId: globex },
    });
    assert.equal(hidden.errors?.[0]?.message, `account "${globex}" not found`);
  });
});

Deno.test("every request log read is audited, in the account read, with its filters", async () => {
  await withLogs(async ({ db, acme, keys }) => {
    const viewer = userWith({ [acme]: "viewer" });
    await ids(db, viewer, { accountId: acme, status: "5xx", apiKeyId: keys.a1 });
    await ids(db, OPERATOR, { model: "gpt-x" });
    await executeAs(db, userWith({}), LOGS, { filter: { accountId: acme } });
    const rows = await db.selectFrom("audit_log").selectAll().orderBy("id").execute();
    assert.deepEqual(
      rows.map((r) => [r.action, r.actor, r.account_id, r.target_id, r.diff]),
      [
        [
          "request_logs.read",
          viewer.id,
          acme,
          acme,
          { filter: { status: "5xx", apiKeyId: keys.a1 } },
        ],
        ["request_logs.read", OPERATOR.id, null, null, { filter: { model: "gpt-x" } }],
      ],
      "the refused read left no row",
    );
  });
});
