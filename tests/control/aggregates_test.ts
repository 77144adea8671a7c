/**
 * Usage aggregates for charts: per UTC day (every day of the range, zero when
 * idle), per model, key or agent, with the range's total; bounded ranges;
 * readable by an account's viewers and up.
 */
import assert from "node:assert/strict";
import { type Kysely, sql } from "kysely";
import type { Actor } from "../../control/access.ts";
import { usageAggregates } from "../../control/services/usage.ts";
import type { Database, NewUsageEvent } from "../../schema/database.ts";
import { executeAs, OPERATOR, userWith } from "../helpers/as_actor.ts";
import { freshDatabase } from "../helpers/database.ts";

interface Setup {
  db: Kysely<Database>;
  acme: string;
  globex: string;
  k1: string;
  k2: string;
}

async function withUsage(test: (setup: Setup) => Promise<void>): Promise<void> {
  const database = await freshDatabase();
  const db = database.db.db;
  try {
    const ids = [];
    for (const name of ["Acme", "Globex"]) {
      ids.push(
        (await db.insertInto("accounts").values({ name }).returning("id")
          .executeTakeFirstOrThrow()).id,
      );
    }
    const [acme, globex] = ids as [string, string];
    const [k1, k2] = [crypto.randomUUID(), crypto.randomUUID()];
    let n = 0;
    const event = (
      accountId: string,
      at: string,
      extra: Partial<NewUsageEvent> = {},
    ): NewUsageEvent => ({
      request_id: `r${n++}`,
      account_id: accountId,
      api_key_id: k1,
      endpoint: "/v1/chat/completions",
      model: "gpt-x",
      status: 200,
      stream: false,
      prompt_tokens: 100,
      completion_tokens: 10,
      cached_tokens: 0,
      total_tokens: 110,
      cost: 1_000n,
      fee: 55n,
      estimated: false,
      latency_ms: 5,
      created_at: at,
      ...extra,
    });
    await db.insertInto("usage_events").values([
      // The last millisecond of the 1st and the first of the 2nd are different UTC days.
      event(acme, "2027-03-01T00:00:00Z", { agent_name: "triage" }),
      event(acme, "2027-03-01T23:59:59.999Z", { model: "claude", cost: 3_000n, fee: 165n }),
      event(acme, "2027-03-02T00:00:00Z", { status: 429, prompt_tokens: 0, cost: 0n, fee: 0n }),
      // Nothing on the 3rd.
      event(acme, "2027-03-04T12:00:00Z", {
        api_key_id: k2,
        agent_name: "writer",
        model: "claude",
        status: 502,
        cached_tokens: 40,
        cost: 2_000n,
        fee: 110n,
      }),
      event(acme, "2027-03-06T00:00:00Z"), // after the range
      event(globex, "2027-03-01T10:00:00Z", { cost: 99_999n }),
    ]).execute();
    await test({ db, acme, globex, k1, k2 });
  } finally {
    await database.drop();
  }
}

const RANGE = { from: new Date("2027-03-01T00:00:00Z"), to: new Date("2027-03-05T00:00:00Z") };

function summary(b: {
  group: string | null;
  requests: bigint;
  errors: bigint;
  promptTokens: bigint;
  completionTokens: bigint;
  cachedTokens: bigint;
  cost: bigint;
  fee: bigint;
}) {
  return [
    b.group,
    Number(b.requests),
    Number(b.errors),
    Number(b.promptTokens),
    Number(b.completionTokens),
    Number(b.cachedTokens),
    b.cost,
    b.fee,
  ];
}

Deno.test("DAY buckets are UTC calendar days, every day of the range, zero when idle, with the total", async () => {
  await withUsage(async ({ db, acme }) => {
    const run = (trx: Kysely<Database>) =>
      usageAggregates(trx, { accountId: acme, ...RANGE, groupBy: "DAY" }, { actor: OPERATOR });
    const result = await run(db);
    assert.deepEqual(result.buckets.map(summary), [
      ["2027-03-01", 2, 0, 200, 20, 0, 4_000n, 220n],
      ["2027-03-02", 1, 1, 0, 10, 0, 0n, 0n],
      ["2027-03-03", 0, 0, 0, 0, 0, 0n, 0n],
      ["2027-03-04", 1, 1, 100, 10, 40, 2_000n, 110n],
    ]);
    assert.deepEqual(result.buckets.map((b) => b.start?.toISOString()), [
      "2027-03-01T00:00:00.000Z",
      "2027-03-02T00:00:00.000Z",
      "2027-03-03T00:00:00.000Z",
      "2027-03-04T00:00:00.000Z",
    ]);
    assert.deepEqual(summary(result.total), [null, 4, 2, 300, 40, 40, 6_000n, 330n]);
    assert.equal(result.truncated, false);

    // The same days whatever the session's time zone.
    const elsewhere = await db.transaction().execute(async (trx) => {
      await sql`set local timezone = 'Pacific/Kiritimati'`.execute(trx);
      return await run(trx);
    });
    assert.deepEqual(elsewhere.buckets.map(summary), result.buckets.map(summary));

    // A range starting mid-day: its first bucket is that day, counting from `from`.
    const partial = await usageAggregates(db, {
      accountId: acme,
      from: new Date("2027-03-01T12:00:00Z"),
      to: new Date("2027-03-02T00:00:00.001Z"),
      groupBy: "DAY",
    }, { actor: OPERATOR });
    assert.deepEqual(partial.buckets.map((b) => [b.group, Number(b.requests)]), [
      ["2027-03-01", 1],
      ["2027-03-02", 1],
    ]);
  });
});

Deno.test("MODEL, KEY and AGENT buckets are ordered by cost, requests without an agent under null", async () => {
  await withUsage(async ({ db, acme, k1, k2 }) => {
    const by = async (
      groupBy: string,
    ) => (await usageAggregates(db, { accountId: acme, ...RANGE, groupBy }, { actor: OPERATOR }));
    const models = await by("MODEL");
    assert.deepEqual(models.buckets.map(summary), [
      ["claude", 2, 1, 200, 20, 40, 5_000n, 275n],
      ["gpt-x", 2, 1, 100, 20, 0, 1_000n, 55n],
    ]);
    assert.deepEqual(summary(models.total), [null, 4, 2, 300, 40, 40, 6_000n, 330n]);
    assert.deepEqual((await by("KEY")).buckets.map((b) => [b.group, b.cost]), [
      [k1, 4_000n],
      [k2, 2_000n],
    ]);
    assert.deepEqual(
      (await by("AGENT")).buckets.map((b) => [b.group, Number(b.requests), b.cost]),
      [
        [null, 2, 3_000n],
        ["writer", 1, 2_000n],
        ["triage", 1, 1_000n],
      ],
    );
  });
});

Deno.test("usageAggregates over GraphQL: Money as decimals, counts as numbers; bounded ranges", async () => {
  await withUsage(async ({ db, acme }) => {
    const query = `query ($id: ID!, $from: DateTime!, $to: DateTime!, $groupBy: UsageGroupBy!) {
      usageAggregates(accountId: $id, from: $from, to: $to, groupBy: $groupBy) {
        groupBy truncated buckets { group start requests errors promptTokens cost fee }
        total { group requests cachedTokens cost fee } } }`;
    const ok = await executeAs<{
      usageAggregates: {
        groupBy: string;
        truncated: boolean;
        buckets: Record<string, unknown>[];
        total: Record<string, unknown>;
      };
    }>(db, userWith({ [acme]: "viewer" }), query, {
      id: acme,
      from: RANGE.from.toISOString(),
      to: RANGE.to.toISOString(),
      groupBy: "MODEL",
    });
    assert.equal(ok.errors, undefined, JSON.stringify(ok.errors));
    assert.deepEqual(ok.data!.usageAggregates, {
      groupBy: "MODEL",
      truncated: false,
      buckets: [
        {
          group: "claude",
          start: null,
          requests: 2,
          errors: 1,
          promptTokens: 200,
          cost: "0.00005000",
          fee: "0.00000275",
        },
        {
          group: "gpt-x",
          start: null,
          requests: 2,
          errors: 1,
          promptTokens: 100,
          cost: "0.00001000",
          fee: "0.00000055",
        },
      ],
      total: { group: null, requests: 4, cachedTokens: 40, cost: "0.00006000", fee: "0.00000330" },
    });

    const days = (n: number) => new Date(RANGE.from.getTime() + n * 86_400_000).toISOString();
    const refusals: [Actor, Record<string, unknown>, string, string | undefined][] = [
      [OPERATOR, { to: days(400.0001) }, "BAD_USER_INPUT", "to"],
      [OPERATOR, { to: RANGE.from.toISOString() }, "BAD_USER_INPUT", "to"],
      [userWith({ [acme]: "owner" }), { id: crypto.randomUUID() }, "NOT_FOUND", undefined],
      [userWith({}), {}, "NOT_FOUND", undefined],
      [OPERATOR, { id: "not-a-uuid" }, "NOT_FOUND", undefined],
    ];
    for (const [actor, change, code, field] of refusals) {
      const result = await executeAs(db, actor, query, {
        id: acme,
        from: RANGE.from.toISOString(),
        to: RANGE.to.toISOString(),
        groupBy: "DAY",
        ...change,
      });
      assert.equal(result.errors?.[0]?.extensions?.code, code, JSON.stringify(change));
      assert.equal(result.errors?.[0]?.extensions?.field, field, JSON.stringify(change));
    }
    const longest = await executeAs<{ usageAggregates: { buckets: unknown[] } }>(
      db,
      OPERATOR,
      query,
      {
        id: acme,
        from: RANGE.from.toISOString(),
        to: days(400),
        groupBy: "DAY",
      },
    );
    assert.equal(longest.data?.usageAggregates.buckets.length, 400, "400 days is the bound");
  });
});
