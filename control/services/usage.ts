/** Usage events as the gateway metered them, newest first. */
import type { Kysely } from "kysely";
import { z } from "zod";
import type { Database, UsageEvent } from "../../schema/database.ts";
import { isUuid, parseInput } from "../errors.ts";

const latestUsageInput = z.object({
  limit: z.number().int().min(1, "must be at least 1").max(500, "must be at most 500").nullish()
    .transform((limit) => limit ?? 50),
  accountId: z.string().nullish(),
});

/** The latest `limit` (1..500, default 50) events, only one account's when `accountId` is given. */
export async function latestUsage(
  db: Kysely<Database>,
  options: { limit?: number | null; accountId?: string | null } = {},
): Promise<UsageEvent[]> {
  const { limit, accountId } = parseInput(latestUsageInput, options);
  if (accountId != null && !isUuid(accountId)) return [];
  let query = db.selectFrom("usage_events").selectAll();
  if (accountId != null) query = query.where("account_id", "=", accountId);
  return await query.orderBy("created_at", "desc").orderBy("request_id", "desc").limit(limit)
    .execute();
}
