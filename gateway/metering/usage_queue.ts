/**
 * The usage queue: answered requests are pushed here and written to
 * usage_events in batches, off the response path. A failed write keeps the
 * batch and retries with backoff; inserts are idempotent on the request id.
 * The same flush bumps api_keys.last_used_at (which does not notify) and
 * records each agent the first time its account's requests name it.
 */
import { type Kysely, sql } from "kysely";
import type { Database, NewUsageEvent } from "../../schema/database.ts";

export interface UsageSink {
  push(event: NewUsageEvent): void;
}

export interface UsageQueue extends UsageSink {
  /** Writes everything queued so far; rejects if the database refused it. */
  flush(): Promise<void>;
  /** Number of events not yet written. */
  readonly pending: number;
  close(): Promise<void>;
}

export interface UsageQueueOptions {
  flushMs: number;
  batchSize: number;
  /** Beyond this many unwritten events, the oldest are dropped (and logged). */
  maxPending?: number;
  log?: (message: string, error?: unknown) => void;
}

const MAX_BACKOFF_MS = 30_000;

export function createUsageQueue(db: Kysely<Database>, options: UsageQueueOptions): UsageQueue {
  const log = options.log ?? ((message, error) => console.error(message, error ?? ""));
  const maxPending = options.maxPending ?? 1_000_000;
  let queue: NewUsageEvent[] = [];
  let writing: Promise<void> | null = null;
  let failures = 0;
  let lastError: unknown = null;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let closed = false;

  const schedule = (delay: number) => {
    if (timer !== undefined || closed) return;
    timer = setTimeout(() => {
      timer = undefined;
      void drain(true);
    }, delay);
  };

  // Writes full batches as they fill; a partial batch waits for the timer (or
  // an explicit flush), so a busy gateway writes few large transactions
  // rather than one small one per database round trip.
  function drain(all: boolean): Promise<void> {
    if (writing) return writing;
    writing = (async () => {
      // Events that arrive while writing wait for the next round, or this
      // loop would chase them one small batch per round trip.
      let owed = all ? queue.length : 0;
      while (queue.length >= options.batchSize || (owed > 0 && queue.length > 0)) {
        const batch = queue.slice(0, options.batchSize);
        try {
          await writeBatch(db, batch);
          queue = queue.slice(batch.length);
          owed -= batch.length;
          failures = 0;
          lastError = null;
        } catch (error) {
          failures++;
          lastError = error;
          log(`Cannot write ${batch.length} usage events (attempt ${failures}); will retry`, error);
          schedule(Math.min(MAX_BACKOFF_MS, options.flushMs * 2 ** failures));
          return;
        }
      }
      if (queue.length > 0) schedule(options.flushMs);
    })().finally(() => {
      writing = null;
    });
    return writing;
  }

  return {
    push(event) {
      queue.push(event);
      if (queue.length > maxPending) {
        const dropped = queue.splice(0, queue.length - maxPending);
        log(`Usage queue over ${maxPending} events: dropped ${dropped.length}`);
      }
      if (queue.length >= options.batchSize) void drain(false);
      else schedule(options.flushMs);
    },
    async flush() {
      // A drain in progress may have started before the newest pushes.
      await drain(true);
      if (queue.length > 0 && failures === 0) await drain(true);
      if (queue.length > 0 && lastError) {
        throw new Error(`${queue.length} usage events are not written yet`, { cause: lastError });
      }
    },
    get pending() {
      return queue.length;
    },
    async close() {
      closed = true;
      clearTimeout(timer);
      await drain(true);
      if (queue.length > 0 && failures === 0) await drain(true);
      if (queue.length > 0) log(`${queue.length} usage events could not be written before close`);
    },
  };
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
  "estimated",
  "latency_ms",
  "ttfb_ms",
  "created_at",
].join(", ");

async function writeBatch(db: Kysely<Database>, batch: NewUsageEvent[]): Promise<void> {
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
    const at = new Date(event.created_at).toISOString();
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
  await db.transaction().execute(async (trx) => {
    // One parameter, one query text whatever the batch size: the statement is
    // prepared once, not re-parsed for every count of rows (and 25 columns a row).
    // JSON has no bigint: the cost goes as a string. (A replacer function would
    // run for every field of every row; this touches one field a row.)
    const json = JSON.stringify(batch.map((event) => ({ ...event, cost: String(event.cost) })));
    await sql`
      insert into usage_events (${sql.raw(COLUMNS)})
      select ${
      sql.raw(COLUMNS)
    } from jsonb_populate_recordset(null::usage_events, ${json}::text::jsonb)
      on conflict (request_id) do nothing
    `.execute(trx);
    const rows = JSON.stringify([...lastUsed].map(([id, at]) => ({ id, at })));
    await sql`
      update api_keys set last_used_at = x.at
      from jsonb_to_recordset(${rows}::text::jsonb) as x(id uuid, at timestamptz)
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
  });
}
