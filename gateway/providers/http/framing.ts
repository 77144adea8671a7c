/**
 * HTTP/1.1 response framing (RFC 9112), for the upstream client: the status
 * line and header fields, how the body is delimited, and an incremental
 * decoder of the chunked transfer coding. Pure functions over bytes; the
 * connection and the pool are elsewhere.
 */

export interface ResponseHead {
  status: number;
  statusText: string;
  /** Header fields in the order received; names in lower case. */
  headers: [string, string][];
  /** How the body ends: at a byte count, at the last chunk, or when the connection closes. */
  framing: { kind: "none" } | { kind: "length"; length: number } | { kind: "chunked" } | {
    kind: "close";
  };
  /** Whether the connection can carry another request once this body is read. */
  keepAlive: boolean;
}

const latin1 = new TextDecoder("latin1");
const utf8 = new TextDecoder();

/**
 * Header bytes as text, one character a byte (obs-text included). UTF-8
 * decoding is several times faster here and gives the same text for ASCII,
 * which is what nearly every head is; anything else is decoded as Latin-1.
 */
function bytesText(bytes: Uint8Array): string {
  const text = utf8.decode(bytes);
  return text.includes("\uFFFD") || text.length !== bytes.length ? latin1.decode(bytes) : text;
}
const STATUS_LINE = /^HTTP\/1\.([01]) (\d{3})(?: (.*))?$/;
/** A field value may hold no CR, LF or NUL (RFC 9110 §5.5). */
const BAD_VALUE = /[\r\n\0]/;
/** A field name (RFC 9110 §5.1), for heads read and written. */
export const FIELD_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** The index of the CRLF CRLF that ends a head in `bytes`, searching from `from`; -1 if none. */
export function headEnd(bytes: Uint8Array, from = 0): number {
  for (let i = Math.max(0, from); i + 3 < bytes.length; i++) {
    if (bytes[i + 3] !== 10) continue;
    if (bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13) return i;
  }
  return -1;
}

/**
 * Parses a response head (the bytes before CRLF CRLF). `method` matters for
 * HEAD, whose responses have no body whatever their headers say.
 * Throws a TypeError, as fetch does, for a head that is not HTTP/1.x.
 */
export function parseHead(bytes: Uint8Array, method = "POST"): ResponseHead {
  const lines = bytesText(bytes).split("\r\n");
  const match = STATUS_LINE.exec(lines[0]!);
  if (!match) throw new TypeError(`Invalid HTTP response status line "${lines[0]!.slice(0, 80)}"`);
  const minor = match[1]!;
  const status = Number(match[2]);
  const headers: [string, string][] = [];
  let length: number | null = null;
  let chunked = false;
  let connection = "";
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(":");
    const name = colon > 0 ? line.slice(0, colon).toLowerCase() : "";
    if (!FIELD_NAME.test(name)) throw new TypeError(`Invalid HTTP response header line "${line}"`);
    const value = line.slice(colon + 1).trim();
    if (BAD_VALUE.test(value)) throw new TypeError(`Invalid value in HTTP response header ${name}`);
    headers.push([name, value]);
    if (name === "content-length") {
      // Repeated lengths must agree (RFC 9112 §6.3); a list of one value is allowed.
      for (const part of value.split(",")) {
        const n = /^\d{1,15}$/.test(part.trim()) ? Number(part.trim()) : NaN;
        if (Number.isNaN(n) || (length !== null && n !== length)) {
          throw new TypeError(`Invalid HTTP response content-length "${value}"`);
        }
        length = n;
      }
    } else if (name === "transfer-encoding") {
      const codings = value.toLowerCase().split(",").map((c) => c.trim());
      chunked = codings[codings.length - 1] === "chunked";
    } else if (name === "connection") {
      connection += `,${value.toLowerCase()}`;
    }
  }
  const tokens = connection.split(",").map((t) => t.trim());
  let keepAlive = minor === "1" ? !tokens.includes("close") : tokens.includes("keep-alive");
  let framing: ResponseHead["framing"];
  // Answers that never have a body, whatever their headers say (RFC 9110 §15).
  const bodiless = status === 204 || status === 205 || status === 304 || status < 200;
  if (method === "HEAD" || bodiless) {
    framing = { kind: "none" };
  } else if (chunked) {
    // Chunked wins over a length; a length beside it is a smuggling risk, so the connection goes.
    framing = { kind: "chunked" };
    if (length !== null) keepAlive = false;
  } else if (length !== null) {
    framing = length === 0 ? { kind: "none" } : { kind: "length", length };
  } else {
    framing = { kind: "close" };
    keepAlive = false;
  }
  return { status, statusText: match[3] ?? "", headers, framing, keepAlive };
}

const enum Phase {
  Size,
  Data,
  DataEnd,
  Trailer,
  Done,
}

/** The longest chunk-size line (with extensions) or trailer line accepted. */
const MAX_LINE = 4096;

/**
 * Decodes the chunked transfer coding incrementally: feed it the bytes as they
 * arrive; it hands out the data, and says where the body ended.
 */
export class ChunkedDecoder {
  #phase = Phase.Size;
  #remaining = 0;
  #line = "";
  #crlf = 0;

  get done(): boolean {
    return this.#phase === Phase.Done;
  }

  /**
   * Decodes `input`, pushing views of its data onto `out`. Returns how many
   * bytes were used: all of them, unless the body ended inside `input` (the
   * rest belongs to whatever follows on the connection). Throws a TypeError
   * for bytes that are not chunked coding.
   */
  push(input: Uint8Array, out: Uint8Array[]): number {
    let i = 0;
    while (i < input.length && this.#phase !== Phase.Done) {
      switch (this.#phase) {
        case Phase.Size:
        case Phase.Trailer: {
          const lf = input.indexOf(10, i);
          const end = lf < 0 ? input.length : lf;
          this.#line += bytesText(input.subarray(i, end));
          if (this.#line.length > MAX_LINE) {
            throw new TypeError("Invalid chunked body: line too long");
          }
          i = end;
          if (lf < 0) break;
          i++;
          const line = this.#line.endsWith("\r") ? this.#line.slice(0, -1) : this.#line;
          this.#line = "";
          if (this.#phase === Phase.Trailer) {
            if (line === "") this.#phase = Phase.Done;
            continue;
          }
          const size = /^([0-9a-fA-F]{1,12})[ \t]*(;.*)?$/.exec(line);
          if (!size) throw new TypeError(`Invalid chunked body: chunk size "${line.slice(0, 40)}"`);
          this.#remaining = parseInt(size[1]!, 16);
          this.#phase = this.#remaining === 0 ? Phase.Trailer : Phase.Data;
          break;
        }
        case Phase.Data: {
          const take = Math.min(this.#remaining, input.length - i);
          out.push(input.subarray(i, i + take));
          i += take;
          this.#remaining -= take;
          if (this.#remaining === 0) {
            this.#phase = Phase.DataEnd;
            this.#crlf = 0;
          }
          break;
        }
        case Phase.DataEnd: {
          const expected = this.#crlf === 0 ? 13 : 10;
          if (input[i] !== expected) {
            throw new TypeError("Invalid chunked body: no CRLF after data");
          }
          i++;
          if (++this.#crlf === 2) this.#phase = Phase.Size;
          break;
        }
      }
    }
    return i;
  }
}
