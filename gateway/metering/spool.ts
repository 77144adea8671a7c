/**
 * The usage spool: an append-only local log of every request this process
 * sends upstream, so that no usage is lost through a database outage, a
 * crash (kill -9) or a shutdown. See spool_record.ts for the line format and
 * spool_replay.ts for what a starting gateway does with a dead one's spool.
 *
 * What is billed, and when:
 * - Before a request goes upstream, its *intent* is appended: the row to bill
 *   if it never completes (error_code 'interrupted', estimated, the prompt
 *   estimate, no completion tokens, priced like any usage event). The route
 *   waits for its write() (not its fsync): a request the upstream received,
 *   and may charge for, always has a record that survives a crash.
 * - When the request is answered, its *completion* (the usage event) is
 *   appended and queued for the database; from then on the intent is moot.
 *   The server waits for that write() before it sends a non-streamed answer,
 *   so an answer a client received is billed at its real usage, not at the
 *   estimate.
 * - Replay at start bills every completion, and every intent without one as
 *   interrupted: the upstream may have done the work, and an estimate of the
 *   prompt is the least of what it charges. A request killed before its
 *   intent was written never reached the upstream and is not billed.
 *   Inserts are idempotent on the request id, so replaying twice is harmless.
 *
 * Records are group-committed: appends fill a buffer that is written with one
 * write() at the end of the event-loop turn (setImmediate), then fdatasync'd
 * in the background ("always") or at most every `fsync` ms. A process crash
 * loses nothing written; only a power loss can lose what was not yet synced.
 *
 * Segments: `<replica>.<seq>.log`, one writer each, next to `<replica>.lock`
 * which this process holds locked while it lives (a starting gateway replays
 * only the replicas whose lock it can take). A segment past `segmentBytes` is
 * closed and a new one begun, carrying over the intents still open; a closed
 * segment is deleted once every completion in it is in the database, and
 * the current one is truncated when everything in it is committed.
 */
import { clearImmediate, setImmediate } from "node:timers";
import type { NewUsageEvent } from "../../schema/database.ts";
import {
  decodeLines,
  maxRecordBytes,
  type RecordKind,
  recordText,
  writeRecord,
} from "./spool_record.ts";

export interface SpoolOptions {
  dir: string;
  /** "always": fdatasync after each group write; a number: at most every that many ms. */
  fsync: "always" | number;
  /** A segment past this size is closed and a new one begun; default 8 MiB. */
  segmentBytes?: number;
  /** Names this process's files; by default its start time, pid and a random suffix. */
  replica?: string;
  log?: (message: string, error?: unknown) => void;
}

/** A segment file, as the queue refers to it when its events are committed. */
export interface SpoolSegment {
  readonly path: string;
}

export interface SpoolPosition {
  segment: SpoolSegment;
  /** Byte offset of a record in the segment. */
  offset: number;
}

export interface Spool {
  readonly replica: string;
  /** Records the row to bill if this request never completes; resolves once written. */
  intent(event: NewUsageEvent): Promise<void>;
  /**
   * Records a request's usage event (its intent is then moot); returns where,
   * or null if it could not be recorded (logged; the queue keeps it in memory).
   */
  complete(event: NewUsageEvent): SpoolPosition | null;
  /** Resolves once every record appended so far is written. */
  written(): Promise<void>;
  /** One completion in `segment` is in the database. */
  committed(segment: SpoolSegment): void;
  /** The completions from `from` on, at most `limit`; `next` is null once all are read. */
  readCompletions(from: SpoolPosition, limit: number): {
    entries: { event: NewUsageEvent; segment: SpoolSegment }[];
    next: SpoolPosition | null;
  };
  /** Writes what is buffered; deletes the spool if everything in it is committed. */
  close(): Promise<void>;
}

interface Segment extends SpoolSegment {
  file: Deno.FsFile;
  /** Bytes written or buffered. */
  bytes: number;
  /** Completions in it not yet committed. */
  outstanding: number;
  syncing: Promise<void> | null;
  dirty: boolean;
}

const DEFAULT_SEGMENT_BYTES = 8 * 1024 * 1024;
const READ_CHUNK_BYTES = 1024 * 1024;

export async function openSpool(options: SpoolOptions): Promise<Spool> {
  const log = options.log ?? ((message, error) => console.error(message, error ?? ""));
  const segmentBytes = options.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
  const { dir } = options;
  await Deno.mkdir(dir, { recursive: true });
  const replica = options.replica ??
    `${Date.now().toString(36)}-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  if (!/^[\w-]+$/.test(replica)) {
    throw new Error(`Cannot name a usage spool "${replica}": use letters, digits, _ and -`);
  }
  const lock = lockReplica(dir, replica);

  let seq = 0;
  const segments: Segment[] = [];
  let current = openSegment();
  /** Intent records of requests not yet complete, carried over to each new segment. */
  const open = new Map<string, Uint8Array>();
  let buffer = new Uint8Array(64 * 1024);
  let buffered = 0;
  let group: PromiseWithResolvers<void> | null = null;
  let groupTimer: ReturnType<typeof setImmediate> | undefined;
  let closed = false;
  const syncTimer = options.fsync === "always" ? undefined : setInterval(() => {
    if (current.dirty) sync(current);
  }, options.fsync);
  if (syncTimer !== undefined) Deno.unrefTimer(syncTimer);

  function openSegment(): Segment {
    const path = `${dir}/${replica}.${String(++seq).padStart(6, "0")}.log`;
    const file = Deno.openSync(path, { createNew: true, write: true, append: true });
    const segment = { path, file, bytes: 0, outstanding: 0, syncing: null, dirty: false };
    segments.push(segment);
    return segment;
  }

  /** Room for `bytes` more in the buffer. */
  function reserve(bytes: number): void {
    if (buffer.length - buffered >= bytes) return;
    const bigger = new Uint8Array(Math.max(buffer.length * 2, buffered + bytes));
    bigger.set(buffer.subarray(0, buffered));
    buffer = bigger;
  }

  /** Buffers a record for the current segment and the next group write. */
  function append(kind: RecordKind, event: NewUsageEvent): { bytes: Uint8Array; offset: number } {
    const text = recordText(kind, event);
    reserve(maxRecordBytes(text));
    const offset = current.bytes;
    const start = buffered;
    const written = writeRecord(text, buffer.subarray(start));
    buffered += written;
    current.bytes += written;
    if (!group) {
      group = Promise.withResolvers();
      groupTimer = setImmediate(writeGroup);
    }
    return { bytes: buffer.subarray(start, start + written), offset };
  }

  function writeGroup(): void {
    const done = group;
    group = null;
    if (buffered > 0) writeBuffer();
    if (current.bytes >= segmentBytes) {
      try {
        rotate();
      } catch (error) {
        log(`Cannot begin a new usage spool segment after ${current.path}`, error);
      }
    }
    done?.resolve();
  }

  function writeBuffer(): void {
    try {
      writeAll(current.file, buffer.subarray(0, buffered));
      current.dirty = true;
      if (options.fsync === "always") sync(current);
    } catch (error) {
      // A torn record would take the next one's line with it: go on in a new segment.
      log(`Cannot write the usage spool ${current.path}`, error);
      current.bytes = Infinity;
    }
    buffered = 0;
  }

  /** Begins a new segment with the open intents, written before the old one can go. */
  function rotate(): void {
    const old = current;
    current = openSegment();
    for (const line of open.values()) {
      reserve(line.length);
      buffer.set(line, buffered);
      buffered += line.length;
      current.bytes += line.length;
    }
    if (buffered > 0) writeBuffer();
    if (old.outstanding === 0) void retire(old);
  }

  /** Truncates the current segment once nothing in it is needed any more. */
  function truncateIfDone(): void {
    if (current.outstanding > 0 || open.size > 0 || buffered > 0 || current.bytes === 0) return;
    try {
      current.file.truncateSync(0);
      current.bytes = 0;
    } catch (error) {
      log(`Cannot truncate the usage spool ${current.path}`, error);
    }
  }

  function sync(segment: Segment): void {
    if (segment.syncing) return;
    segment.dirty = false;
    segment.syncing = segment.file.syncData().catch((error) => {
      log(`Cannot sync the usage spool ${segment.path}`, error);
    }).finally(() => {
      segment.syncing = null;
      if (segment.dirty && options.fsync === "always") sync(segment);
    });
  }

  async function retire(segment: Segment): Promise<void> {
    segments.splice(segments.indexOf(segment), 1);
    await settled(segment);
    try {
      segment.file.close();
      await Deno.remove(segment.path);
    } catch (error) {
      log(`Cannot delete the usage spool segment ${segment.path}`, error);
    }
  }

  /** Records a line; null (logged) if the event cannot be encoded or the spool is closed. */
  function tryAppend(kind: RecordKind, event: NewUsageEvent): ReturnType<typeof append> | null {
    if (closed) {
      log(`Usage event ${event.request_id} arrived after the spool closed`);
      return null;
    }
    try {
      return append(kind, event);
    } catch (error) {
      log(`Cannot record usage event ${event.request_id} in the spool`, error);
      return null;
    }
  }

  return {
    replica,
    intent(event) {
      const record = tryAppend("i", event);
      if (!record) return Promise.resolve();
      open.set(event.request_id, record.bytes.slice());
      return group!.promise;
    },
    complete(event) {
      const segment = current;
      const record = tryAppend("c", event);
      if (!record) return null;
      open.delete(event.request_id);
      segment.outstanding++;
      return { segment, offset: record.offset };
    },
    written() {
      return group?.promise ?? Promise.resolve();
    },
    committed(ref) {
      const segment = ref as Segment;
      if (--segment.outstanding > 0) return;
      if (segment === current) truncateIfDone();
      else if (segments.includes(segment)) void retire(segment);
    },
    readCompletions(from, limit) {
      if (buffered > 0) writeGroup();
      const entries: { event: NewUsageEvent; segment: SpoolSegment }[] = [];
      let segment = from.segment as Segment;
      let offset = from.offset;
      while (entries.length < limit) {
        const bytes = readFrom(segment, offset);
        const read = decodeLines(bytes, { limit: limit - entries.length, kind: "c" });
        if (read.damaged > 0) log(`Skipped ${read.damaged} damaged records in ${segment.path}`);
        for (const { event } of read.records) entries.push({ event, segment });
        offset += read.end;
        if (read.end === 0 || offset >= segment.bytes) {
          if (segment === current) return { entries, next: null };
          segment = segments[segments.indexOf(segment) + 1]!;
          offset = 0;
        }
      }
      return { entries, next: { segment, offset } };
    },
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(syncTimer);
      clearImmediate(groupTimer);
      writeGroup();
      const done = open.size === 0 && segments.every((s) => s.outstanding === 0);
      for (const segment of [...segments]) {
        await settled(segment);
        await segment.file.syncData();
        segment.file.close();
        if (done) await Deno.remove(segment.path);
      }
      if (done) await Deno.remove(`${dir}/${replica}.lock`);
      lock.close();
      if (!done) log(`The usage spool keeps ${dir}/${replica}.* for the next start to replay`);
    },
  };
}

/**
 * Creates and locks `<replica>.lock` under a temporary name first, so no
 * other gateway can see it unlocked and take this live replica for dead.
 */
function lockReplica(dir: string, replica: string): Deno.FsFile {
  const path = `${dir}/${replica}.lock`;
  const file = Deno.openSync(`${path}.tmp`, { createNew: true, write: true });
  file.lockSync(true);
  Deno.renameSync(`${path}.tmp`, path);
  return file;
}

/** Waits for a segment's syncs, including one that a sync in flight starts when it ends. */
async function settled(segment: Segment): Promise<void> {
  while (segment.syncing) await segment.syncing;
}

function writeAll(file: Deno.FsFile, bytes: Uint8Array): void {
  let at = 0;
  while (at < bytes.length) at += file.writeSync(bytes.subarray(at));
}

/** Up to READ_CHUNK_BYTES of a segment from `offset` (whole records are cut by the reader). */
function readFrom(segment: Segment, offset: number): Uint8Array {
  const file = Deno.openSync(segment.path, { read: true });
  try {
    file.seekSync(offset, Deno.SeekMode.Start);
    const chunk = new Uint8Array(Math.min(READ_CHUNK_BYTES, Math.max(0, segment.bytes - offset)));
    let at = 0;
    while (at < chunk.length) {
      const n = file.readSync(chunk.subarray(at));
      if (n === null) break;
      at += n;
    }
    return chunk.subarray(0, at);
  } finally {
    file.close();
  }
}
