/**
 * Keyset pages, for the Relay connections. A list is read in a fixed order
 * over a unique key (one column or a tuple); an edge's cursor is its key, so
 * the next page holds the rows strictly past it whatever was inserted since:
 * nothing is skipped or repeated the way it would be with offsets, and every
 * page is one index range scan however deep it is.
 *
 * A cursor is opaque to clients: base64url of `<list>:<JSON array of key
 * parts>`. A cursor from another list, or one that does not parse, is an
 * InvalidInputError naming the argument, not a database error.
 */
import { InvalidInputError } from "../errors.ts";

/** What a page asks for, as resolveCursorConnection hands it over. */
export interface PageRequest {
  after?: string;
  before?: string;
  /** Rows to read: the page size plus one, which tells whether there is a next page. */
  limit: number;
  /** Paging backwards (last, before): rows are read in reverse and flipped by the caller. */
  inverted: boolean;
}

/** A page of a list ordered by `order` over a key decoded as K: where to start and stop. */
export interface KeysetWindow<K> {
  /** Rows must compare `afterOp` to this key... */
  after: K | null;
  afterOp: ">" | "<";
  /** ...and `beforeOp` to this one. */
  before: K | null;
  beforeOp: ">" | "<";
  /** The order to read rows in (the list's own order, or its reverse when inverted). */
  read: "asc" | "desc";
  limit: number;
}

/** Checks one part of a decoded key; returns it as the SQL parameter to bind, or null when bad. */
export type KeyPart = (part: unknown) => string | null;

/** A part that is a non-empty string of at most `max` characters. */
export function textPart(max = 500): KeyPart {
  return (
    part,
  ) => (typeof part === "string" && part.length > 0 && part.length <= max ? part : null);
}

/** A positive integer id, such as an identity column's, as decimal text. */
export const idPart: KeyPart = (part) =>
  typeof part === "string" && /^[1-9]\d{0,18}$/.test(part) ? part : null;

/** An instant as `timestampCursorText` writes it (microseconds, UTC). */
export const instantPart: KeyPart = (part) =>
  typeof part === "string" && /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/.test(part) &&
    !Number.isNaN(Date.parse(part))
    ? part
    : null;

/**
 * The SQL text of a timestamptz column with every microsecond, in UTC, for a
 * cursor: a JavaScript Date keeps only milliseconds, and a cursor that rounds
 * would skip or repeat rows that share a millisecond.
 */
export const TIMESTAMP_CURSOR_FORMAT = `YYYY-MM-DD"T"HH24:MI:SS.US"Z"`;

export function encodeCursor(list: string, key: readonly string[]): string {
  const bytes = new TextEncoder().encode(`${list}:${JSON.stringify(key)}`);
  return btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_")
    .replace(/=+$/, "");
}

/** The key parts of `cursor`, checked part by part, or an InvalidInputError naming `field`. */
export function decodeCursor(
  list: string,
  cursor: string,
  parts: readonly KeyPart[],
  field: string,
): string[] {
  const refused = new InvalidInputError(`${field}: is not a cursor this list returned`, field);
  let key: unknown;
  try {
    if (cursor.length > 2_000) throw refused;
    const binary = atob(cursor.replaceAll("-", "+").replaceAll("_", "/"));
    const text = new TextDecoder("utf-8", { fatal: true })
      .decode(Uint8Array.from(binary, (c) => c.charCodeAt(0)));
    if (!text.startsWith(`${list}:`)) throw refused;
    key = JSON.parse(text.slice(list.length + 1));
  } catch {
    throw refused;
  }
  if (!Array.isArray(key) || key.length !== parts.length) throw refused;
  return parts.map((check, i) => {
    const value = check(key[i]);
    if (value === null) throw refused;
    return value;
  });
}

/**
 * Where a page of a list in `order` starts and stops. `decode` turns a cursor
 * into its key (throwing InvalidInputError for a bad one).
 */
export function keysetWindow<K>(
  page: PageRequest,
  order: "asc" | "desc",
  decode: (cursor: string, field: "after" | "before") => K,
): KeysetWindow<K> {
  const forward = order === "asc" ? ">" : "<";
  const backward = order === "asc" ? "<" : ">";
  const reverse = order === "asc" ? "desc" : "asc";
  return {
    after: page.after ? decode(page.after, "after") : null,
    afterOp: forward,
    before: page.before ? decode(page.before, "before") : null,
    beforeOp: backward,
    read: page.inverted ? reverse : order,
    limit: page.limit,
  };
}
