/** Usage aggregates: an account's traffic and spend per day, model, key or agent, for charts. */
import { toGraphQLError } from "../../errors.ts";
import {
  MAX_AGGREGATE_DAYS,
  MAX_BUCKETS,
  USAGE_GROUPINGS,
  type UsageAggregates,
  usageAggregates,
  type UsageBucket,
} from "../../services/usage.ts";
import { builder } from "../builder.ts";

export const UsageGroupByEnum = builder.enumType("UsageGroupBy", {
  description: "DAY: UTC calendar days, every day of the range (zero when idle); MODEL: the " +
    "model asked for; KEY: the API key; AGENT: the agent's name.",
  values: USAGE_GROUPINGS,
});

/** Counts are sums that can pass Int's 2^31; as Float they stay exact up to 2^53. */
const count = (value: bigint) => Number(value);

const UsageBucketRef = builder.objectRef<UsageBucket>("UsageBucket").implement({
  description: "Usage summed over one bucket. Counts are integers, typed Float because a " +
    "sum can pass Int's 2^31.",
  fields: (t) => ({
    group: t.exposeString("group", {
      nullable: true,
      description: 'What the bucket groups: DAY: "2027-01-31"; MODEL: the model; KEY: the API ' +
        "key's id; AGENT: the agent's name, or null for requests without one. Null for the total.",
    }),
    start: t.expose("start", {
      type: "DateTime",
      nullable: true,
      description: "DAY: the day's first instant (UTC).",
    }),
    requests: t.float({ resolve: (b) => count(b.requests) }),
    errors: t.float({
      description: "Requests answered with a status of 400 or more.",
      resolve: (b) => count(b.errors),
    }),
    promptTokens: t.float({ resolve: (b) => count(b.promptTokens) }),
    completionTokens: t.float({ resolve: (b) => count(b.completionTokens) }),
    cachedTokens: t.float({ resolve: (b) => count(b.cachedTokens) }),
    cost: t.expose("cost", { type: "Money" }),
    fee: t.expose("fee", { type: "Money" }),
  }),
});

const UsageAggregatesRef = builder.objectRef<UsageAggregates>("UsageAggregates").implement({
  fields: (t) => ({
    accountId: t.exposeID("accountId"),
    from: t.expose("from", { type: "DateTime" }),
    to: t.expose("to", { type: "DateTime" }),
    groupBy: t.expose("groupBy", { type: UsageGroupByEnum }),
    buckets: t.field({
      type: [UsageBucketRef],
      description: `DAY: oldest first. Others: by cost, largest first, at most ${MAX_BUCKETS}.`,
      resolve: (a) => a.buckets,
    }),
    total: t.field({ type: UsageBucketRef, resolve: (a) => a.total }),
    truncated: t.exposeBoolean("truncated", {
      description: `True when there were more than ${MAX_BUCKETS} buckets.`,
    }),
  }),
});

builder.queryField("usageAggregates", (t) =>
  t.field({
    type: UsageAggregatesRef,
    description: "An account's usage from `from` (inclusive) to `to` (exclusive, at most " +
      `${MAX_AGGREGATE_DAYS} days later), per bucket and in total; for its viewers and up.`,
    args: {
      accountId: t.arg.id({ required: true }),
      from: t.arg({ type: "DateTime", required: true }),
      to: t.arg({ type: "DateTime", required: true }),
      groupBy: t.arg({ type: UsageGroupByEnum, required: true }),
    },
    resolve: async (_root, args, ctx) => {
      try {
        return await usageAggregates(ctx.db, args, { actor: ctx.actor });
      } catch (error) {
        throw toGraphQLError(error);
      }
    },
  }));
