/**
 * A TCP forwarder on 127.0.0.1 that a test can cut and restore, to take a
 * server (Postgres) away from one client without stopping it for the others.
 * A cut refuses new connections (closes them at once) and either stalls the
 * open ones (`stall`: nothing gets through until restore, as when the
 * network drops) or resets them (`reset`: as when the server restarts).
 */
export interface TcpProxy {
  /** The port to connect to instead of the target's. */
  port: number;
  cut(mode: "stall" | "reset"): void;
  restore(): void;
  close(): Promise<void>;
}

export function startTcpProxy(target: { hostname: string; port: number }): TcpProxy {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.Conn>();
  let cut = false;
  /** Resolved on restore; what a stalled connection waits for. */
  let restored = Promise.withResolvers<void>();
  restored.resolve();

  const closeQuietly = (conn: Deno.Conn) => {
    open.delete(conn);
    try {
      conn.close();
    } catch { /* already closed */ }
  };

  async function pipe(from: Deno.Conn, to: Deno.Conn): Promise<void> {
    const buffer = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await from.read(buffer);
        if (n === null) break;
        await restored.promise;
        let at = 0;
        while (at < n) at += await to.write(buffer.subarray(at, n));
      }
    } catch { /* reset */ }
    closeQuietly(from);
    closeQuietly(to);
  }

  async function forward(client: Deno.Conn): Promise<void> {
    let server: Deno.Conn;
    try {
      server = await Deno.connect(target);
    } catch {
      return closeQuietly(client);
    }
    open.add(server);
    await Promise.all([pipe(client, server), pipe(server, client)]);
  }

  const accepting = (async () => {
    for await (const client of listener) {
      if (cut) {
        client.close();
        continue;
      }
      open.add(client);
      void forward(client);
    }
  })();

  return {
    port: (listener.addr as Deno.NetAddr).port,
    cut(mode) {
      cut = true;
      if (mode === "reset") {
        for (const conn of [...open]) closeQuietly(conn);
      } else {
        restored = Promise.withResolvers();
      }
    },
    restore() {
      cut = false;
      restored.resolve();
    },
    async close() {
      restored.resolve();
      listener.close();
      for (const conn of [...open]) closeQuietly(conn);
      await accepting.catch(() => {});
    },
  };
}
