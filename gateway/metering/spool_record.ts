/**
 * One record of the usage spool, one line each: `<crc32> <kind> <json>\n`.
 * The kind is `i` (intent: the row billed if the request never completes)
 * or `c` (completion: the request's usage event); the checksum, 8 hex
 * digits, is the CRC-32 of the UTF-8 bytes of `<kind> <json>`. A line that
 * does not end in a newline (a write torn by a crash) or whose checksum does
 * not match is skipped.
 */
import { crc32 } from "node:zlib";
import type { NewUsageEvent } from "../../schema/database.ts";
import { eventJson, jsonFields } from "./usage_batch.ts";

export type RecordKind = "i" | "c";

export interface SpoolRecord {
  kind: RecordKind;
  event: NewUsageEvent;
}

const NEWLINE = 10;
const SPACE = 32;
/** `<crc32> `: 8 hex digits and a space. */
const PREFIX = 9;
const HEX = new TextEncoder().encode("0123456789abcdef");
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The text of a record after its checksum, newline included. */
export function recordText(kind: RecordKind, event: NewUsageEvent): string {
  // JSON has no bigint: the int8 columns go as strings, as in the database
  // batch, which reuses a completion's JSON (an intent's is not needed again).
  const json = kind === "c" ? eventJson(event) : JSON.stringify(jsonFields(event));
  return `${kind} ${json}\n`;
}

/** The most bytes a record of `text` takes (a UTF-16 unit is at most 3 bytes of UTF-8). */
export function maxRecordBytes(text: string): number {
  return PREFIX + text.length * 3;
}

/** Writes a record at the start of `target` (at least maxRecordBytes long); returns its bytes. */
export function writeRecord(text: string, target: Uint8Array): number {
  const { written } = encoder.encodeInto(text, target.subarray(PREFIX));
  let crc = crc32(target.subarray(PREFIX, PREFIX + written - 1));
  for (let i = 7; i >= 0; i--, crc >>>= 4) target[i] = HEX[crc & 0xf]!;
  target[8] = SPACE;
  return PREFIX + written;
}

export interface DecodedLines {
  records: SpoolRecord[];
  /** Byte offset just past the last whole line read. */
  end: number;
  /** Whole lines skipped because their checksum or content is wrong. */
  damaged: number;
  /** Bytes after the last newline: a torn write, or a line not yet written. */
  tail: number;
}

/** Records of the whole lines in `bytes` from `start`, at most `limit` of them (of `kind`). */
export function decodeLines(
  bytes: Uint8Array,
  options: { start?: number; limit?: number; kind?: RecordKind } = {},
): DecodedLines {
  const records: SpoolRecord[] = [];
  const limit = options.limit ?? Infinity;
  let damaged = 0;
  let at = options.start ?? 0;
  while (records.length < limit) {
    const newline = bytes.indexOf(NEWLINE, at);
    if (newline < 0) break;
    const record = parseLine(bytes.subarray(at, newline));
    at = newline + 1;
    if (!record) damaged++;
    else if (!options.kind || record.kind === options.kind) records.push(record);
  }
  return {
    records,
    end: at,
    damaged,
    tail: bytes.indexOf(NEWLINE, at) < 0 ? bytes.length - at : 0,
  };
}

function parseLine(line: Uint8Array): SpoolRecord | null {
  if (line.length < PREFIX + 2 || line[8] !== SPACE) return null;
  const crc = Number.parseInt(decoder.decode(line.subarray(0, 8)), 16);
  if (crc !== crc32(line.subarray(PREFIX))) return null;
  const body = decoder.decode(line.subarray(PREFIX));
  const kind = body[0];
  if ((kind !== "i" && kind !== "c") || body[1] !== " ") return null;
  try {
    const event = JSON.parse(body.slice(2));
    return { kind, event: { ...event, cost: BigInt(event.cost), fee: BigInt(event.fee) } };
  } catch {
    return null;
  }
}
