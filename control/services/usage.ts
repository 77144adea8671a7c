/**
 * Usage aggregates for an account's charts: requests, errors, tokens, cost
 * and fee per UTC day, per model, per key or per agent over a bounded range,
 * with the range's total, each in one GROUP BY query (grouping sets give the
 * buckets and the total together). Days without traffic are zero buckets, so
 * a chart needs no gap filling. Readable by the account's viewers and up.
 */
import { type Kysely, sql } from "kysely";
import { z } from "zod";
import type { Database } from "../../schema/database.ts";
import type { Actor } from "../access.ts";
import { parseInput } from "../errors.ts";
import { requireAccount } from "./account_scope.ts";

export const USAGE_GROUPINGS = ["DAY", "MODEL", "KEY", "AGENT"] as const;
export type UsageGrouping = (typeof USAGE_GROUPINGS)[number];

/** The longest range one query may aggregate. */
export const MAX_AGGREGATE_DAYS = 400;
/** The most buckets a MODEL, KEY or AGENT grouping returns (the largest by cost). */
export const MAX_BUCKETS = 1000;

const DAY_MS = 86_400_000;

export interface UsageBucket {
  /** DAY: "2027-01-31"; MODEL: the model asked for; KEY: the key's id; AGENT: its name or null. */
  group: string | null;
  /** DAY only: the day's first instant (UTC). */
  start: Date | null;
  requests: bigint;
  /** Requests answered with a status of 400 or more. */
  errors: bigint;
  promptTokens: bigint;
  completionTokens: bigint;
  cachedTokens: bigint;
  /** Units of 1e-8 USD. */
  cost: bigint;
  fee: bigint;
}

export interface UsageAggregates {
  accountId: string;
  from: Date;
  to: Date;
  groupBy: UsageGrouping;
  buckets: UsageBucket[];
  total: UsageBucket;
  /** True when a MODEL, KEY or AGENT grouping had more than MAX_BUCKETS buckets. */
  truncated: boolean;
}

export interface UsageAggregatesInput {
  accountId: string;
  /** Inclusive. */
  from: Date;
  /** Exclusive. */
  to: Date;
  groupBy: string;
}

const usageAggregatesInput = z.object({
  accountId: z.string(),
  from: z.date(),
  to: z.date(),
  groupBy: z.enum(USAGE_GROUPINGS, `must be one of ${USAGE_GROUPINGS.join(", ")}`),
}).refine((i) => i.from < i.to, { message: "must be after from", path: ["to"] })
  .refine((i) => i.to.getTime() - i.from.getTime() <= MAX_AGGREGATE_DAYS * DAY_MS, {
    message: `must be at most ${MAX_AGGREGATE_DAYS} days after from`,
    path: ["to"],
  });

interface BucketRow {
  key: string | null;
  start: Date | null;
  total: boolean;
  requests: bigint;
  errors: bigint;
  prompt_tokens: bigint;
  completion_tokens: bigint;
  cached_tokens: bigint;
  cost: bigint;
  fee: bigint;
}

const GROUP_COLUMNS = { MODEL: "model", KEY: "api_key_id", AGENT: "agent_name" } as const;

/** The account's usage between `from` and `to`, bucketed by `groupBy`, with the total. */
export async function usageAggregates(
  db: Kysely<Database>,
  input: UsageAggregatesInput,
  options: { actor: Actor },
): Promise<UsageAggregates> {
  const { accountId, from, to, groupBy } = parseInput(usageAggregatesInput, input);
  await requireAccount(db, options.actor, accountId, "viewer");
  const { rows } = groupBy === "DAY"
    ? await byDay(db, accountId, from, to)
    : await byColumn(db, accountId, from, to, GROUP_COLUMNS[groupBy]);
  const total = rows.find((row) => row.total)!;
  const buckets = rows.filter((row) => !row.total);
  return {
    accountId,
    from,
    to,
    groupBy,
    buckets: buckets.slice(0, MAX_BUCKETS).map(bucketOf),
    total: bucketOf(total),
    truncated: buckets.length > MAX_BUCKETS,
  };
}

/** Sums every bucket takes, over the rows of `events` (none for an empty day). */
const SUMS = sql`
  count(e.created_at) as requests,
  count(e.created_at) filter (where e.status >= 400) as errors,
  coalesce(sum(e.prompt_tokens), 0)::int8 as prompt_tokens,
  coalesce(sum(e.completion_tokens), 0)::int8 as completion_tokens,
  coalesce(sum(e.cached_tokens), 0)::int8 as cached_tokens,
  coalesce(sum(e.cost), 0)::int8 as cost,
  coalesce(sum(e.fee), 0)::int8 as fee`;

function byDay(db: Kysely<Database>, accountId: string, from: Date, to: Date) {
  // Days are UTC calendar days: timestamps are taken to UTC wall-clock time
  // before truncating, whatever the session's time zone.
  return sql<BucketRow>`
    with e as (
      select date_trunc('day', created_at at time zone 'UTC') as day, created_at, status,
        prompt_tokens, completion_tokens, cached_tokens, cost, fee
      from usage_events
      where account_id = ${accountId}
        and created_at >= ${from}::timestamptz and created_at < ${to}::timestamptz
    ), days as (
      select generate_series(
        date_trunc('day', ${from}::timestamptz at time zone 'UTC'),
        (${to}::timestamptz at time zone 'UTC') - interval '1 microsecond',
        interval '1 day') as day
    )
    select to_char(days.day, 'YYYY-MM-DD') as key, days.day at time zone 'UTC' as start,
      grouping(days.day) = 1 as total, ${SUMS}
    from days left join e on e.day = days.day
    group by grouping sets ((days.day), ())
    order by total desc, days.day`.execute(db);
}

function byColumn(
  db: Kysely<Database>,
  accountId: string,
  from: Date,
  to: Date,
  column: (typeof GROUP_COLUMNS)[keyof typeof GROUP_COLUMNS],
) {
  const group = sql.ref(`e.${column}`);
  return sql<BucketRow>`
    select ${group}::text as key, null::timestamptz as start, grouping(${group}) = 1 as total,
      ${SUMS}
    from usage_events e
    where e.account_id = ${accountId}
      and e.created_at >= ${from}::timestamptz and e.created_at < ${to}::timestamptz
    group by grouping sets ((${group}), ())
    order by total desc, cost desc, key nulls last
    limit ${MAX_BUCKETS + 2}`.execute(db);
}

function bucketOf(row: BucketRow): UsageBucket {
  return {
    group: row.key,
    start: row.start,
    requests: BigInt(row.requests),
    errors: BigInt(row.errors),
    promptTokens: BigInt(row.prompt_tokens),
    completionTokens: BigInt(row.completion_tokens),
    cachedTokens: BigInt(row.cached_tokens),
    cost: BigInt(row.cost),
    fee: BigInt(row.fee),
  };
}
