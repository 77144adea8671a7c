/**
 * The usage queue: answered requests are pushed here and written to the
 * database in batches (usage_batch.ts), off the response path. A failed or
 * hung write keeps the batch and retries with backoff; inserts are
 * idempotent on the request id.
 *
 * With a spool (spool.ts), every event is also appended to a local file
 * before it is queued, and the queue tells the spool what is committed. Past
 * `maxPending` events in memory (a long database outage), newer events are
 * kept in the spool only and read back from it, oldest first, as the
 * database catches up: memory stays bounded and no event is dropped. Without
 * a spool, the oldest events past `maxPending` are dropped (and logged).
 */
import type { Kysely } from "kysely";
import type { Database, NewUsageEvent } from "../../schema/database.ts";
import type { Spool, SpoolPosition, SpoolSegment } from "./spool.ts";
import type { LeaseCharges } from "../billing/settlement.ts";
import { jsonFields, type Refused, writeUsageEvents } from "./usage_batch.ts";

export interface UsageSink {
  push(event: NewUsageEvent): void;
  /**
   * Records, before a request is sent upstream, the row to bill if the
   * process dies before push() records its answer: the request's usage event
   * with INTERRUPTED_OUTCOME, the prompt estimate and no completion tokens.
   * Resolves once it is written (end of the event-loop turn). Absent without
   * a spool.
   */
  intent?(event: NewUsageEvent): Promise<void>;
}

/**
 * How an intent's row is billed if its request never completes: no HTTP
 * status is known (status 0), and its usage is an estimate.
 */
export const INTERRUPTED_OUTCOME = {
  status: 0,
  errorCode: "interrupted",
  estimated: true,
} as const;

export interface UsageQueue extends UsageSink {
  /** Writes everything queued so far; rejects if the database refused it. */
  flush(): Promise<void>;
  /** Resolves once every event pushed so far is in the spool file (at once without one). */
  written(): Promise<void>;
  /** Number of events not yet written, in memory or only in the spool. */
  readonly pending: number;
  /** Of those, the events kept only in the spool (memory was full). */
  readonly spilled: number;
  close(): Promise<void>;
}

export interface UsageQueueOptions {
  flushMs: number;
  batchSize: number;
  /** Events kept in memory at most; beyond it they wait in the spool (or, without one, are dropped). */
  maxPending?: number;
  spool?: Spool;
  /**
   * A write not settled by then counts as failed and is retried (an insert is
   * idempotent); a connection lost without a reset can hang a query for
   * minutes. Default 10 s: a batch is a few hundred rows in one transaction.
   */
  writeTimeoutMs?: number;
  /** Events the database refuses for their content; by default each is logged whole. */
  onRefused?: (refused: Refused[]) => void;
  /** Hears what each written batch's charges took from each allowance. */
  onSettled?: (charges: LeaseCharges[]) => void;
  log?: (message: string, error?: unknown) => void;
}

interface Pending {
  event: NewUsageEvent;
  segment?: SpoolSegment;
}

const MAX_BACKOFF_MS = 5_000;
const DEFAULT_WRITE_TIMEOUT_MS = 10_000;

export function createUsageQueue(db: Kysely<Database>, options: UsageQueueOptions): UsageQueue {
  const log = options.log ?? ((message, error) => console.error(message, error ?? ""));
  const maxPending = options.maxPending ?? 1_000_000;
  const { spool } = options;
  const onRefused = options.onRefused ?? ((refused: Refused[]) => {
    for (const { event, error } of refused) {
      log(`The database refused usage event ${JSON.stringify(jsonFields(event))}`, error);
    }
  });
  let queue: Pending[] = [];
  /** Events only in the spool, from `spilledFrom` on. */
  let spilled = 0;
  let spilledFrom: SpoolPosition | null = null;
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

  /** Reads spilled events back into memory while there is room. */
  function refill(): void {
    if (!spool || !spilledFrom || queue.length >= options.batchSize) return;
    const read = spool.readCompletions(spilledFrom, Math.max(1, maxPending - queue.length));
    for (const entry of read.entries) queue.push(entry);
    spilled -= read.entries.length;
    spilledFrom = read.next;
    if (!spilledFrom && spilled !== 0) {
      log(`The usage spool gave back ${-spilled} events more or less than it was given`);
      spilled = 0;
    }
  }

  // Writes full batches as they fill; a partial batch waits for the timer (or
  // an explicit flush), so a busy gateway writes few large transactions
  // rather than one small one per database round trip.
  function drain(all: boolean): Promise<void> {
    if (writing) return writing;
    writing = (async () => {
      // Events that arrive while writing wait for the next round, or this
      // loop would chase them one small batch per round trip.
      let owed = all ? queue.length + spilled : 0;
      for (
        refill();
        queue.length >= options.batchSize || (owed > 0 && queue.length > 0);
        refill()
      ) {
        const batch = queue.slice(0, options.batchSize);
        try {
          const refused = await settleWithin(
            writeUsageEvents(db, batch.map((entry) => entry.event), options.onSettled),
            options.writeTimeoutMs ?? DEFAULT_WRITE_TIMEOUT_MS,
          );
          if (refused.length > 0) onRefused(refused);
        } catch (error) {
          failures++;
          lastError = error;
          log(`Cannot write ${batch.length} usage events (attempt ${failures}); will retry`, error);
          schedule(Math.min(MAX_BACKOFF_MS, options.flushMs * 2 ** failures));
          return;
        }
        queue = queue.slice(batch.length);
        owed -= batch.length;
        failures = 0;
        lastError = null;
        for (const entry of batch) if (entry.segment) spool!.committed(entry.segment);
      }
      if (queue.length > 0) schedule(options.flushMs);
    })().finally(() => {
      writing = null;
    });
    return writing;
  }

  function keep(event: NewUsageEvent): void {
    if (!spool) {
      queue.push({ event });
      if (queue.length > maxPending) {
        const dropped = queue.splice(0, queue.length - maxPending);
        log(`Usage queue over ${maxPending} events: dropped ${dropped.length}`);
      }
      return;
    }
    const at = spool.complete(event);
    if (!at || (!spilledFrom && queue.length < maxPending)) {
      queue.push({ event, segment: at?.segment });
      return;
    }
    if (!spilledFrom) {
      log(`Usage queue over ${maxPending} events in memory: keeping newer ones in the spool only`);
      spilledFrom = at;
    }
    spilled++;
  }

  async function writeAll(): Promise<void> {
    // A drain in progress may have started before the newest pushes.
    await drain(true);
    if (queue.length + spilled > 0 && failures === 0) await drain(true);
  }

  const usage: UsageQueue = {
    push(event) {
      keep(event);
      // After a failed write the retry timer decides when to try again: a
      // full batch must not turn every answer into another attempt.
      if (queue.length + spilled >= options.batchSize && failures === 0) void drain(false);
      else schedule(options.flushMs);
    },
    async flush() {
      await writeAll();
      if (queue.length + spilled > 0 && lastError) {
        throw new Error(`${queue.length + spilled} usage events are not written yet`, {
          cause: lastError,
        });
      }
    },
    written() {
      return spool ? spool.written() : Promise.resolve();
    },
    get pending() {
      return queue.length + spilled;
    },
    get spilled() {
      return spilled;
    },
    async close() {
      closed = true;
      clearTimeout(timer);
      await writeAll();
      const left = queue.length + spilled;
      if (left > 0) {
        log(
          `${left} usage events could not be written before close` +
            (spool ? "; the spool keeps them" : ""),
        );
      }
      await spool?.close();
    },
  };
  if (spool) usage.intent = (event) => spool.intent(event);
  return usage;
}

/** `work`'s result, or a rejection once `ms` pass first (`work` is then left to itself). */
function settleWithin<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`The database did not answer within ${ms} ms`)), ms);
  });
  work.catch(() => {}); // a write given up on may still fail later
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}
