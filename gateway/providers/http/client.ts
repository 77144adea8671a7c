/**
 * The upstream HTTP client: HTTP/1.1 over a keep-alive pool of Deno.connect
 * (or connectTls) connections, behind fetch's signature, so the provider
 * adapters call it as they would call fetch and tests can still pass a fake.
 *
 * Why not fetch: on the bench's 2-core machine fetch costs 75-90 µs of CPU
 * per request (node:http and undici cost as much), and this client about 35
 * (tests/bench/clients.ts); its streams cost far less per event too. It
 * covers what providers need: a string or byte body, a signal, the answer's
 * status, headers and body (fixed-length bodies up to `bufferBytes` are read
 * whole before the promise resolves; others stream). Anything else (a
 * Request object, a stream body, another scheme) goes to `fallback`, as does
 * everything when the operator routes upstream traffic through a proxy.
 * Redirects are not followed: providers answer POSTs, and a 3xx reaches the
 * adapter as it is.
 */
import type { UpstreamFetch, UpstreamResponse } from "../provider.ts";
import { Answer } from "./answer.ts";
import { connect, Connection, type Origin } from "./connection.ts";
import { concatBytes } from "../../streaming/bytes.ts";
import { ChunkedDecoder, FIELD_NAME, headEnd, parseHead, type ResponseHead } from "./framing.ts";

export interface UpstreamClient {
  fetch: UpstreamFetch;
  /** Connections waiting in the pool, for tests and the bench. */
  readonly idle: number;
  /** Closes the idle connections; those in use close when their response ends. */
  close(): void;
}

export interface UpstreamClientOptions {
  /** Idle connections kept per origin (default 256). */
  maxIdlePerOrigin?: number;
  /** An idle connection is closed after this long (default 30 s). */
  idleTimeoutMs?: number;
  /** Fixed-length bodies up to this size are read before the answer resolves (default 8 MiB). */
  bufferBytes?: number;
  /** The longest response head accepted (default 64 KiB). */
  maxHeadBytes?: number;
  /** Certificates (PEM) trusted for TLS besides the runtime's roots and DENO_CERT. */
  caCerts?: string[];
  /** What serves the requests this client does not (default: fetch). */
  fallback?: UpstreamFetch;
}

const encoder = new TextEncoder();
/** Request headers the client writes itself, as fetch forbids callers to set them. */
const OWN_HEADERS = new Set([
  "host",
  "content-length",
  "connection",
  "transfer-encoding",
  "keep-alive",
]);
/** CR, LF, NUL, or a character that is not one byte. */
const BAD_VALUE = /[\r\n\0\u0100-\uffff]/;

/** A failure of a reused connection before any byte of the answer: the request may go again. */
class StaleConnection extends Error {}

export function createUpstreamClient(options: UpstreamClientOptions = {}): UpstreamClient {
  const maxIdle = options.maxIdlePerOrigin ?? 256;
  const idleTimeoutMs = options.idleTimeoutMs ?? 30_000;
  const bufferBytes = options.bufferBytes ?? 8 * 1024 * 1024;
  const maxHeadBytes = options.maxHeadBytes ?? 64 * 1024;
  const fallback = options.fallback ?? globalThis.fetch;
  const pools = new Map<string, Connection[]>();
  const targets = new Map<string, { origin: Origin; path: string } | null>();
  let closed = false;
  let idleCount = 0;

  const drop = (connection: Connection) => {
    const pool = pools.get(connection.origin.key);
    const at = pool ? pool.indexOf(connection) : -1;
    if (at >= 0) {
      pool!.splice(at, 1);
      idleCount--;
    }
    connection.close();
  };

  const release = (connection: Connection, reusable: boolean) => {
    if (!reusable || closed || connection.closed || connection.hasUnread) {
      connection.close();
      return;
    }
    let pool = pools.get(connection.origin.key);
    if (!pool) pools.set(connection.origin.key, pool = []);
    if (pool.length >= maxIdle) {
      connection.close();
      return;
    }
    connection.uses++;
    connection.idleSince = performance.now();
    pool.push(connection);
    idleCount++;
    connection.park(drop);
  };

  const take = (origin: Origin): Connection | undefined => {
    const pool = pools.get(origin.key);
    // The most recently used first: it is the likeliest to be open still.
    const connection = pool?.pop();
    if (!connection) return undefined;
    idleCount--;
    connection.unpark();
    return connection;
  };

  const sweep = setInterval(() => {
    const before = performance.now() - idleTimeoutMs;
    for (const pool of pools.values()) {
      for (const connection of pool.filter((c) => c.idleSince < before)) drop(connection);
    }
  }, Math.max(1_000, idleTimeoutMs / 2));
  Deno.unrefTimer(sweep);

  const targetOf = (url: string) => {
    let target = targets.get(url);
    if (target !== undefined) return target;
    target = parseTarget(url);
    // Providers call a handful of URLs; a bounded cache keeps a caller-built one from growing it.
    if (targets.size >= 1024) targets.clear();
    targets.set(url, target);
    return target;
  };

  async function exchange(
    origin: Origin,
    request: Uint8Array,
    method: string,
    signal: AbortSignal | null,
  ): Promise<UpstreamResponse> {
    for (let attempt = 0;; attempt++) {
      // A second attempt takes a new connection: the pool may hold more that the server closed.
      const reused = attempt === 0 ? take(origin) : undefined;
      const connection = reused ?? await connect(origin, { signal, caCerts: options.caCerts });
      const onAbort = () => connection.close();
      signal?.addEventListener("abort", onAbort, { once: true });
      let settled = false;
      const settle = (reusable: boolean) => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener("abort", onAbort);
        release(connection, reusable && !signal?.aborted);
      };
      try {
        return await answer(connection, request, method, signal, settle, reused !== undefined);
      } catch (error) {
        settle(false);
        if (signal?.aborted) throw signal.reason;
        // A server may close a kept-alive connection just as a request goes out: once, try a new one.
        if (error instanceof StaleConnection && attempt === 0) continue;
        if (error instanceof StaleConnection || !(error instanceof TypeError)) {
          throw new TypeError(`Cannot send the request to ${origin.key}: ${messageOf(error)}`, {
            cause: error,
          });
        }
        throw error;
      }
    }
  }

  async function answer(
    connection: Connection,
    request: Uint8Array,
    method: string,
    signal: AbortSignal | null,
    settle: (reusable: boolean) => void,
    reused: boolean,
  ): Promise<UpstreamResponse> {
    try {
      await connection.write(request);
    } catch (error) {
      throw reused ? new StaleConnection(messageOf(error), { cause: error }) : error;
    }
    let head: ResponseHead;
    // Interim (1xx) answers are skipped; after one, the connection has answered, so a close
    // is no longer a stale connection to send the request on again.
    let first = true;
    do {
      head = await readHead(connection, method, reused && first, maxHeadBytes);
      first = false;
    } while (head.status >= 100 && head.status < 200);
    const { framing } = head;
    if (framing.kind === "none") {
      settle(head.keepAlive);
      return new Answer(head, null);
    }
    if (framing.kind === "length" && framing.length <= bufferBytes) {
      const body = await readLength(connection, framing.length);
      settle(head.keepAlive);
      return new Answer(head, decoded(body, head));
    }
    const next = framing.kind === "chunked"
      ? chunkedSource(connection)
      : framing.kind === "length"
      ? lengthSource(connection, framing.length)
      : closeSource(connection);
    const finish = (reusable: boolean) => settle(reusable && head.keepAlive);
    const body = new ReadableStream<Uint8Array<ArrayBuffer>>({
      async pull(controller) {
        try {
          const chunk = await next();
          if (chunk) {
            controller.enqueue(chunk);
            return;
          }
          controller.close();
          finish(true);
        } catch (error) {
          finish(false);
          controller.error(
            signal?.aborted
              ? signal.reason
              : error instanceof TypeError
              ? error
              : new TypeError(`Cannot read the answer's body: ${messageOf(error)}`, {
                cause: error,
              }),
          );
        }
      },
      cancel() {
        finish(false);
      },
    });
    return new Answer(head, decoded(body, head));
  }

  return {
    fetch(url: string, init: RequestInit): Promise<UpstreamResponse> {
      const target = closed ? null : targetOf(url);
      const body = init.body;
      if (
        target === null ||
        (body != null && typeof body !== "string" && !(body instanceof Uint8Array))
      ) {
        return fallback(url, init);
      }
      const method = (init.method ?? "GET").toUpperCase();
      const signal = init.signal ?? null;
      let request: Uint8Array;
      try {
        signal?.throwIfAborted();
        request = requestBytes(method, target, init.headers, body ?? null);
      } catch (error) {
        return Promise.reject(error);
      }
      return exchange(target.origin, request, method, signal);
    },
    get idle() {
      return idleCount;
    },
    close() {
      closed = true;
      clearInterval(sweep);
      for (const pool of pools.values()) for (const connection of [...pool]) drop(connection);
      pools.clear();
    },
  };
}

function parseTarget(url: string): { origin: Origin; path: string } | null {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return null;
  }
  const tls = parsed.protocol === "https:";
  if (!tls && parsed.protocol !== "http:") return null;
  if (parsed.username || parsed.password) return null;
  const port = parsed.port ? Number(parsed.port) : tls ? 443 : 80;
  const hostname = parsed.hostname.replace(/^\[(.*)\]$/, "$1");
  return {
    origin: { key: `${parsed.protocol}//${parsed.host}`, hostname, port, tls, host: parsed.host },
    path: parsed.pathname + parsed.search,
  };
}

function requestBytes(
  method: string,
  target: { origin: Origin; path: string },
  headers: HeadersInit | undefined,
  body: string | Uint8Array | null,
): Uint8Array {
  if (!/^[A-Z]+$/.test(method)) throw new TypeError(`Invalid HTTP method "${method}"`);
  let head = `${method} ${target.path} HTTP/1.1\r\nhost: ${target.origin.host}\r\n`;
  let hasAccept = false;
  let hasAgent = false;
  const add = (name: string, value: string) => {
    const lower = name.toLowerCase();
    if (OWN_HEADERS.has(lower)) return;
    // The refusal fetch gives (a field value is bytes, not text); it also keeps a credential
    // with a newline from splitting the request.
    if (!FIELD_NAME.test(name) || BAD_VALUE.test(value)) {
      throw new TypeError(`Invalid request header "${name}"`);
    }
    if (lower === "accept") hasAccept = true;
    if (lower === "user-agent") hasAgent = true;
    head += `${name}: ${value.trim()}\r\n`;
  };
  if (headers instanceof Headers || Array.isArray(headers)) {
    for (const [name, value] of new Headers(headers)) add(name, value);
  } else if (headers) {
    for (const name in headers) add(name, (headers as Record<string, string>)[name]!);
  }
  if (!hasAccept) head += "accept: */*\r\n";
  if (!hasAgent) head += "user-agent: tollgate\r\n";
  const bytes = typeof body === "string" ? encoder.encode(body) : body;
  if (bytes !== null || method === "POST" || method === "PUT" || method === "PATCH") {
    head += `content-length: ${bytes?.length ?? 0}\r\n`;
  }
  head += "\r\n";
  // The head is bytes 0-255 (checked above; the path comes from a URL, so it is ASCII): it is
  // copied in one char code a byte, which is cheaper than encoding it apart and concatenating.
  const request = new Uint8Array(head.length + (bytes?.length ?? 0));
  for (let i = 0; i < head.length; i++) request[i] = head.charCodeAt(i);
  if (bytes) request.set(bytes, head.length);
  return request;
}

async function readHead(
  connection: Connection,
  method: string,
  reused: boolean,
  maxHeadBytes: number,
): Promise<ResponseHead> {
  let gathered: Uint8Array | null = null;
  for (;;) {
    let bytes: Uint8Array | null;
    try {
      bytes = await connection.read();
    } catch (error) {
      if (reused && gathered === null) {
        throw new StaleConnection(messageOf(error), { cause: error });
      }
      throw error;
    }
    if (bytes === null) {
      if (reused && gathered === null) throw new StaleConnection("closed before answering");
      throw new TypeError("The connection closed before the answer's head ended");
    }
    const from = gathered ? gathered.length - 3 : 0;
    if (gathered) gathered = concatBytes([gathered, bytes]);
    const all = gathered ?? bytes;
    const end = headEnd(all, from);
    if (end >= 0) {
      const head = parseHead(all.subarray(0, end), method);
      // What follows the head is the body's start: it is read from the connection next.
      connection.unread(gathered ? gathered.slice(end + 4) : bytes.subarray(end + 4));
      return head;
    }
    if (all.length > maxHeadBytes) throw new TypeError("The answer's head is too large");
    gathered ??= bytes.slice();
  }
}

async function readLength(
  connection: Connection,
  length: number,
): Promise<Uint8Array<ArrayBuffer>> {
  const body = new Uint8Array(length);
  let filled = 0;
  while (filled < length) {
    const bytes = await connection.read();
    if (bytes === null) throw new TypeError(`The answer ended after ${filled} of ${length} bytes`);
    const take = Math.min(bytes.length, length - filled);
    body.set(take === bytes.length ? bytes : bytes.subarray(0, take), filled);
    filled += take;
    connection.unread(bytes.subarray(take));
  }
  return body;
}

/** Each call gives the next bytes of the body (a copy), or null at its end. */
type Source = () => Promise<Uint8Array<ArrayBuffer> | null>;

function lengthSource(connection: Connection, length: number): Source {
  let left = length;
  return async () => {
    if (left === 0) return null;
    const bytes = await connection.read();
    if (bytes === null) throw new TypeError(`The answer ended ${left} bytes short`);
    const take = Math.min(bytes.length, left);
    left -= take;
    connection.unread(bytes.subarray(take));
    return bytes.slice(0, take);
  };
}

function chunkedSource(connection: Connection): Source {
  const decoder = new ChunkedDecoder();
  const parts: Uint8Array[] = [];
  return async () => {
    while (!decoder.done) {
      const bytes = await connection.read();
      if (bytes === null) throw new TypeError("The answer ended before its last chunk");
      const used = decoder.push(bytes, parts);
      connection.unread(bytes.subarray(used));
      if (parts.length === 0) continue;
      const out = parts.length === 1 ? parts[0]!.slice() : concatBytes(parts);
      parts.length = 0;
      return out;
    }
    return null;
  };
}

function closeSource(connection: Connection): Source {
  return async () => {
    const bytes = await connection.read();
    return bytes === null ? null : bytes.slice();
  };
}

/** The body as the caller reads it: gzip and deflate are undone, as fetch does. */
function decoded(
  body: Uint8Array<ArrayBuffer> | ReadableStream<Uint8Array<ArrayBuffer>>,
  head: ResponseHead,
): Uint8Array<ArrayBuffer> | ReadableStream<Uint8Array<ArrayBuffer>> {
  const coding = head.headers.find(([name]) => name === "content-encoding")?.[1].toLowerCase();
  const format = coding === "gzip" || coding === "x-gzip"
    ? "gzip"
    : coding === "deflate"
    ? "deflate"
    : null;
  if (!format) return body;
  const stream = body instanceof Uint8Array ? new Blob([body]).stream() : body;
  return stream.pipeThrough(new DecompressionStream(format));
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
