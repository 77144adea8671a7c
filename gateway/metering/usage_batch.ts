/**
 * Writing usage events to the database: one transaction per batch inserts
 * the rows (those already there are left as they are: a request id is
 * written once), bumps api_keys.last_used_at (which does not notify) and
 * records each agent the first time its account's requests name it.
 *
 * A batch the database refuses for its content rather than its availability
 * (a data or constraint error) is written one event at a time, and the
 * events refused on their own are handed back: one bad event must not block
 * every other one behind it forever, at start (replay) or later.
 */
import { type Kysely, sql } from "kysely";
import type { Database, NewUsageEvent } from "../../schema/database.ts";
import {
  assignTransactions,
  type LeaseCharges,
  lockForSettlement,
  requestCharge,
  settleCharges,
} from "../billing/settlement.ts";
import { isoTime } from "./usage_event.ts";

export interface Refused {
  event: NewUsageEvent;
  error: unknown;
}

/**
 * Writes `batch`; returns the events the database refused (throws if it is
 * unavailable). `onSettled` hears, after each commit, what the batch's
 * charges took from each allowance (billing/settlement.ts).
 */
export async function writeUsageEvents(
  db: Kysely<Database>,
  batch: readonly NewUsageEvent[],
  onSettled?: (charges: LeaseCharges[]) => void,
): Promise<Refused[]> {
  try {
    const settled = await writeUsageBatch(db, batch);
    if (settled.length > 0) onSettled?.(settled);
    return [];
  } catch (error) {
    if (!refusesContent(error)) throw error;
    if (batch.length === 1) return [{ event: batch[0]!, error }];
  }
  const refused: Refused[] = [];
  for (const event of batch) refused.push(...await writeUsageEvents(db, [event], onSettled));
  return refused;
}

/**
 * An event as JSON can carry it: its int8 columns (cost, fee) as strings, and
 * the columns it may leave out (an insert lists them all) at their defaults.
 */
export function jsonFields(event: NewUsageEvent): Record<string, unknown> {
  return {
    ...event,
    cost: String(event.cost),
    fee: String(event.fee ?? 0),
    billing_mode: event.billing_mode ?? "standard",
    // A Date left for JSON.stringify to convert would take it off its fast path.
    created_at: isoTime(event.created_at),
  };
}

const jsonOf = new WeakMap<NewUsageEvent, string>();

/**
 * An event as the JSON text of jsonFields(), made once per event: the spool
 * record of a completion and the database batch that inserts it share it.
 * A usage event is not changed once it is pushed to the queue.
 */
export function eventJson(event: NewUsageEvent): string {
  let json = jsonOf.get(event);
  if (json === undefined) {
    json = JSON.stringify(jsonFields(event));
    jsonOf.set(event, json);
  }
  return json;
}

/** SQLSTATE classes 22 (data exception) and 23 (integrity constraint violation). */
function refusesContent(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && /^2[23]/.test(code);
}

/** Every column usageEvent() fills, in one fixed order. */
const COLUMNS = [
  "request_id",
  "account_id",
  "api_key_id",
  "agent_name",
  "agent_purpose",
  "agent_owner",
  "endpoint",
  "model",
  "provider_id",
  "provider_name",
  "upstream_model",
  "status",
  "error_code",
  "stream",
  "prompt_tokens",
  "completion_tokens",
  "cached_tokens",
  "total_tokens",
  "cost",
  "billing_mode",
  "fee",
  "estimated",
  "latency_ms",
  "ttfb_ms",
  "created_at",
  "ledger_transaction_id",
].join(", ");

/** Inserts usage events and what they imply (charges included), in one transaction. */
async function writeUsageBatch(
  db: Kysely<Database>,
  events: readonly NewUsageEvent[],
): Promise<LeaseCharges[]> {
  // A request once: the first of its events is the one the insert keeps.
  const ids = new Set<string>();
  const batch = events.filter((e) => !ids.has(e.request_id) && ids.add(e.request_id));
  const lastUsed = new Map<string, string>();
  const agents = new Map<
    string,
    {
      account_id: string;
      name: string;
      purpose: string | null;
      owner: string | null;
      first: string;
      last: string;
    }
  >();
  for (const event of batch) {
    const at = isoTime(event.created_at);
    const seen = lastUsed.get(event.api_key_id);
    if (!seen || seen < at) lastUsed.set(event.api_key_id, at);
    if (event.agent_name) {
      const id = `${event.account_id}\u0000${event.agent_name}`;
      const agent = agents.get(id);
      if (!agent) {
        agents.set(id, {
          account_id: event.account_id,
          name: event.agent_name,
          purpose: event.agent_purpose ?? null,
          owner: event.agent_owner ?? null,
          first: at,
          last: at,
        });
      } else {
        if (at < agent.first) agent.first = at;
        if (at > agent.last) agent.last = at;
      }
    }
  }
  // Charges post with the rows that justify them: a request's row is written
  // once (its id is the primary key), and only the rows inserted now are charged.
  const charges = batch.map(requestCharge);
  const billed = charges.filter((c) => c !== null);
  assignTransactions(billed);
  return await db.transaction().execute(async (trx) => {
    // The rows this transaction updates are locked first, in one order
    // (settlement.ts). Taking keys (last_used_at, row by row) before accounts
    // deadlocked with other batches and with leases growing: 203 times in a
    // few minutes of tests/bench/money_run.ts with three gateways, a few of
    // them failing requests with a 500.
    await lockForSettlement(trx, billed, [...lastUsed.keys()]);
    // One parameter, one query text whatever the batch size: the statement is
    // prepared once, not re-parsed for every count of rows (and 26 columns a row).
    // JSON has no bigint: the int8 columns go as strings. (A replacer function
    // would run for every field of every row; this touches two fields a row.)
    // A spooled event's JSON was made for its spool record already; a charged
    // row's ledger transaction goes in front of it. json, not jsonb: Postgres
    // reads the text once instead of building jsonb first, which took a batch
    // of 500 rows from about 20 ms of its CPU to 12.
    const json = `[${
      batch.map((event, i) => {
        const tx = charges[i]?.transactionId;
        const text = eventJson(event);
        return tx === undefined ? text : `{"ledger_transaction_id":"${tx}",${text.slice(1)}`;
      }).join(",")
    }]`;
    const { rows: inserted } = await sql<{ request_id: string }>`
      insert into usage_events (${sql.raw(COLUMNS)})
      select ${
      sql.raw(COLUMNS)
    } from json_populate_recordset(null::usage_events, ${json}::text::json)
      on conflict (request_id) do nothing
      returning request_id
    `.execute(trx);
    const rows = JSON.stringify([...lastUsed].map(([id, at]) => ({ id, at })));
    await sql`
      update api_keys set last_used_at = x.at
      from json_to_recordset(${rows}::text::json) as x(id uuid, at timestamptz)
      where api_keys.id = x.id and (api_keys.last_used_at is null or api_keys.last_used_at < x.at)
    `.execute(trx);
    if (agents.size > 0) {
      await trx.insertInto("agents").values([...agents.values()].map((a) => ({
        account_id: a.account_id,
        name: a.name,
        purpose: a.purpose,
        owner: a.owner,
        first_seen_at: a.first,
        last_seen_at: a.last,
      }))).onConflict((oc) =>
        oc.columns(["account_id", "name"]).doUpdateSet({
          last_seen_at: sql`greatest(agents.last_seen_at, excluded.last_seen_at)`,
          purpose: sql`coalesce(excluded.purpose, agents.purpose)`,
          owner: sql`coalesce(excluded.owner, agents.owner)`,
        })
      ).execute();
    }
    const fresh = new Set(inserted.map((row) => row.request_id));
    return await settleCharges(trx, billed.filter((c) => fresh.has(c.requestId)));
  });
}
