/**
 * One upstream connection (TCP, or TLS offering only HTTP/1.1) with its read
 * buffer. While it waits in the pool a read stays posted on it, so a server
 * that closes an idle connection is noticed at once, and the request that
 * takes the connection next starts from that read.
 */

/** Where requests go: one pool of connections per origin. */
export interface Origin {
  /** `http://host:port` or `https://host:port`. */
  key: string;
  hostname: string;
  port: number;
  tls: boolean;
  /** The Host header: the host, with the port unless it is the scheme's default. */
  host: string;
}

const READ_SIZE = 64 * 1024;

export class Connection {
  readonly origin: Origin;
  /** Responses read to their end on this connection. */
  uses = 0;
  /** When it went back to the pool (performance.now()). */
  idleSince = 0;
  #conn: Deno.Conn;
  #buf = new Uint8Array(READ_SIZE);
  #posted: Promise<number | null> | null = null;
  #idle = false;
  #closed = false;
  /** Bytes already read that the next read() returns first (a view into the buffer). */
  #unread: Uint8Array | null = null;

  constructor(origin: Origin, conn: Deno.Conn) {
    this.origin = origin;
    this.#conn = conn;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * The next bytes from the server, or null at its end. The view is valid
   * until the next read(): keep what you need by copying it.
   */
  async read(): Promise<Uint8Array | null> {
    const unread = this.#unread;
    if (unread) {
      this.#unread = null;
      return unread;
    }
    const posted = this.#posted;
    this.#posted = null;
    const n = await (posted ?? this.#conn.read(this.#buf));
    return n === null ? null : this.#buf.subarray(0, n);
  }

  /** Gives back the tail of the last read(), for the next read() to return. */
  unread(bytes: Uint8Array): void {
    if (bytes.length > 0) this.#unread = bytes;
  }

  /** Whether bytes are waiting that no response has claimed (the connection is out of step). */
  get hasUnread(): boolean {
    return this.#unread !== null;
  }

  async write(bytes: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < bytes.length) offset += await this.#conn.write(bytes.subarray(offset));
  }

  /**
   * Marks the connection idle and posts a read on it: if that read ends
   * (the server closed it, or sent bytes nobody asked for) while it is still
   * idle, `onLost` runs.
   */
  park(onLost: (connection: Connection) => void): void {
    this.#idle = true;
    const lost = () => {
      if (this.#idle) onLost(this);
    };
    this.#posted = this.#conn.read(this.#buf);
    this.#posted.then(lost, lost);
    // A parked connection alone does not keep the process alive.
    this.#conn.unref();
  }

  /** Takes the connection out of the pool for a request. */
  unpark(): void {
    this.#idle = false;
    this.#conn.ref();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#idle = false;
    try {
      this.#conn.close();
    } catch { /* already closed by the runtime */ }
  }
}

/**
 * Opens a connection to `origin`; an abort while connecting closes it and
 * rejects with the reason. TLS trusts the runtime's roots (with DENO_CERT's)
 * and `caCerts`.
 */
export async function connect(
  origin: Origin,
  options: { signal?: AbortSignal | null; caCerts?: string[] } = {},
): Promise<Connection> {
  const { signal, caCerts } = options;
  signal?.throwIfAborted();
  const opening = origin.tls
    ? Deno.connectTls({
      hostname: origin.hostname,
      port: origin.port,
      alpnProtocols: ["http/1.1"],
      caCerts,
    })
    : Deno.connect({ hostname: origin.hostname, port: origin.port });
  if (!signal) return new Connection(origin, await opening);
  let onAbort: () => void = () => {};
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
  });
  try {
    return new Connection(origin, await Promise.race([opening, aborted]));
  } catch (error) {
    // The connection may still open after the abort: close it then.
    opening.then((conn) => conn.close(), () => {});
    throw error;
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}
