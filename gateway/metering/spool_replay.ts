/**
 * Replay at start: the spool segments of every gateway that is no longer
 * running (its `<replica>.lock` can be locked, or is gone) are read, their
 * usage is inserted (idempotently, on the request id), and they are deleted.
 * A completion is inserted as recorded; an intent without a completion is
 * inserted as it was recorded too: the interrupted row (see spool.ts).
 *
 * Events the database refuses for their content (usage_batch.ts) are set
 * aside in `<dir>/refused.jsonl`, by replay and by the queue alike, so that
 * neither a start nor the queue is blocked by them, and nothing is lost.
 */
import type { Kysely } from "kysely";
import type { Database, NewUsageEvent } from "../../schema/database.ts";
import { decodeLines } from "./spool_record.ts";
import { jsonFields, type Refused, writeUsageEvents } from "./usage_batch.ts";

export interface ReplayOptions {
  dir: string;
  batchSize: number;
  log?: (message: string, error?: unknown) => void;
}

export interface ReplayResult {
  /** Dead gateways whose spool was replayed. */
  replicas: number;
  completed: number;
  interrupted: number;
  /** Events the database refused, set aside in refused.jsonl. */
  refused: number;
  /** Damaged or torn records skipped. */
  skipped: number;
}

const SEGMENT = /^(.+)\.(\d+)\.log$/;
const LOCK = /^(.+)\.lock$/;

export async function replaySpool(
  db: Kysely<Database>,
  options: ReplayOptions,
): Promise<ReplayResult> {
  const log = options.log ?? ((message, error) => console.error(message, error ?? ""));
  const result: ReplayResult = {
    replicas: 0,
    completed: 0,
    interrupted: 0,
    refused: 0,
    skipped: 0,
  };
  const segments = new Map<string, string[]>();
  const locks = new Set<string>();
  try {
    for await (const entry of Deno.readDir(options.dir)) {
      const segment = SEGMENT.exec(entry.name);
      if (segment) segments.set(segment[1]!, [...segments.get(segment[1]!) ?? [], entry.name]);
      const lock = LOCK.exec(entry.name);
      if (lock) locks.add(lock[1]!);
    }
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return result;
    throw error;
  }
  for (const replica of new Set([...locks, ...segments.keys()])) {
    const lock = locks.has(replica) ? tryLock(`${options.dir}/${replica}.lock`) : null;
    if (locks.has(replica) && !lock) continue; // alive
    try {
      const names = (segments.get(replica) ?? []).sort();
      const paths = names.map((name) => `${options.dir}/${name}`);
      const read = await readReplica(paths);
      if (read.skipped > 0) log(`Skipped ${read.skipped} damaged usage records of ${replica}`);
      for (let i = 0; i < read.rows.length; i += options.batchSize) {
        const refused = await writeUsageEvents(db, read.rows.slice(i, i + options.batchSize));
        if (refused.length > 0) setAside(options.dir, refused, log);
        result.refused += refused.length;
      }
      for (const path of paths) await Deno.remove(path);
      if (lock) await Deno.remove(`${options.dir}/${replica}.lock`).catch(() => {});
      result.replicas++;
      result.completed += read.completed;
      result.interrupted += read.rows.length - read.completed;
      result.skipped += read.skipped;
    } finally {
      lock?.close();
    }
  }
  return result;
}

/** Appends refused events to `<dir>/refused.jsonl`, one JSON object a line, and logs it. */
export function setAside(
  dir: string,
  refused: readonly Refused[],
  log: (message: string, error?: unknown) => void,
): void {
  const at = new Date().toISOString();
  const lines = refused.map(({ event, error }) =>
    JSON.stringify({
      refused_at: at,
      error: error instanceof Error ? error.message : String(error),
      event: jsonFields(event),
    }) + "\n"
  );
  Deno.writeTextFileSync(`${dir}/refused.jsonl`, lines.join(""), { append: true });
  log(
    `The database refused ${refused.length} usage events; they are kept in ${dir}/refused.jsonl`,
    refused[0]?.error,
  );
}

/** The lock file locked by this process, or null if a live gateway holds it (or it is gone). */
function tryLock(path: string): Deno.FsFile | null {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { read: true, write: true });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
  if (file.tryLockSync(true)) return file;
  file.close();
  return null;
}

/** Every completion, then every intent that has none, across one replica's segments. */
async function readReplica(paths: string[]) {
  const completions = new Map<string, NewUsageEvent>();
  const intents = new Map<string, NewUsageEvent>();
  let skipped = 0;
  for (const path of paths) {
    const read = decodeLines(await Deno.readFile(path));
    skipped += read.damaged + (read.tail > 0 ? 1 : 0);
    for (const { kind, event } of read.records) {
      (kind === "c" ? completions : intents).set(event.request_id, event);
    }
  }
  const rows = [...completions.values()];
  for (const [id, event] of intents) if (!completions.has(id)) rows.push(event);
  return { rows, completed: completions.size, skipped };
}
