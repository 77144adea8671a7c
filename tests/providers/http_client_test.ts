/**
 * The pooled upstream client against servers written on raw TCP, so each
 * test decides the exact bytes, when a connection closes, and what the
 * client must do about it.
 */
import assert from "node:assert/strict";
import {
  createUpstreamClient,
  type UpstreamClient,
  type UpstreamClientOptions,
} from "../../gateway/providers/http/client.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

interface Received {
  head: string;
  body: string;
  /** Which accepted connection it came on, from 0. */
  connection: number;
}

/** What the server does with a request: bytes to write, then whether to close. */
type Answer = (
  request: Received,
  conn: Deno.Conn,
  server: RawServer,
) => Promise<{ close?: boolean } | void>;

interface RawServer {
  url: string;
  received: Received[];
  connections: number;
  /** Resolves when the `n`th accepted connection (from 0) is closed by the client. */
  closedByClient(n: number): Promise<void>;
  close(): Promise<void>;
}

function rawServer(answer: Answer): RawServer {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.Conn>();
  const closes: PromiseWithResolvers<void>[] = [];
  const closeOf = (n: number) => closes[n] ??= Promise.withResolvers<void>();
  const server: RawServer = {
    url: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    received: [],
    connections: 0,
    closedByClient: (n) => closeOf(n).promise,
    async close() {
      listener.close();
      for (const conn of open) conn.close();
      await accepting;
    },
  };
  const serve = async (conn: Deno.Conn, index: number) => {
    let pending: Uint8Array = new Uint8Array(0);
    const buf = new Uint8Array(65536);
    for (;;) {
      let text = decoder.decode(pending);
      let end = text.indexOf("\r\n\r\n");
      while (end < 0 || !complete(text, end)) {
        const n = await conn.read(buf).catch(() => null);
        if (n === null) {
          closeOf(index).resolve();
          return;
        }
        pending = concat(pending, buf.subarray(0, n));
        text = decoder.decode(pending);
        end = text.indexOf("\r\n\r\n");
      }
      const length = Number(/content-length: (\d+)/i.exec(text.slice(0, end))?.[1] ?? 0);
      const request = {
        head: text.slice(0, end),
        body: text.slice(end + 4, end + 4 + length),
        connection: index,
      };
      pending = pending.subarray(encoder.encode(text.slice(0, end + 4 + length)).length);
      server.received.push(request);
      const what = await answer(request, conn, server);
      if (what?.close) return;
    }
  };
  const accepting = (async () => {
    for await (const conn of listener) {
      const index = server.connections++;
      open.add(conn);
      serve(conn, index).catch(() => {}).finally(() => {
        open.delete(conn);
        try {
          conn.close();
        } catch { /* closed */ }
      });
    }
  })().catch(() => {});
  return server;
}

function complete(text: string, end: number): boolean {
  const length = Number(/content-length: (\d+)/i.exec(text.slice(0, end))?.[1] ?? 0);
  return encoder.encode(text.slice(end + 4)).length >= length;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

async function write(conn: Deno.Conn, text: string): Promise<void> {
  const bytes = encoder.encode(text);
  let at = 0;
  while (at < bytes.length) at += await conn.write(bytes.subarray(at));
}

function json(body: string, extra = ""): string {
  return `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${
    encoder.encode(body).length
  }\r\n${extra}\r\n${body}`;
}

/** Runs `test` with a server answering by `answer` and a client, and closes both after. */
async function withServer(
  answer: Answer,
  test: (server: RawServer, client: UpstreamClient) => Promise<void>,
  options?: UpstreamClientOptions,
): Promise<void> {
  const server = rawServer(answer);
  const client = createUpstreamClient(options);
  try {
    await test(server, client);
  } finally {
    client.close();
    await server.close();
  }
}

const post = (body: string, signal?: AbortSignal) => ({
  method: "POST",
  headers: { "content-type": "application/json", authorization: "Bearer sk-up" },
  body,
  signal,
});

Deno.test("requests reuse one kept-alive connection and arrive as sent", async () => {
  await withServer(async (request, conn) => {
    await write(conn, json(`{"echo":${JSON.stringify(request.body)}}`));
  }, async (server, client) => {
    for (let i = 0; i < 5; i++) {
      const response = await client.fetch(
        `${server.url}/v1/chat/completions?x=1`,
        post(`{"i":${i},"é":1}`),
      );
      assert.equal(response.status, 200);
      assert.equal(response.headers.get("content-type"), "application/json");
      assert.deepEqual(await response.json(), { echo: `{"i":${i},"é":1}` });
    }
    assert.equal(server.connections, 1);
    const head = server.received[0]!.head.split("\r\n");
    assert.equal(head[0], "POST /v1/chat/completions?x=1 HTTP/1.1");
    assert.ok(head.includes(`host: ${new URL(server.url).host}`));
    assert.ok(head.includes("authorization: Bearer sk-up"));
    assert.ok(head.includes(`content-length: ${encoder.encode('{"i":0,"é":1}').length}`));
    assert.equal(client.idle, 1);
  });
});

Deno.test("concurrent requests open their own connections, then share the pool", async () => {
  await withServer(async (_request, conn) => {
    await new Promise((resolve) => setTimeout(resolve, 20));
    await write(conn, json("{}"));
  }, async (server, client) => {
    const many = () =>
      Promise.all(
        Array.from({ length: 4 }, () =>
          client.fetch(`${server.url}/x`, post("{}")).then((r) => r.text())),
      );
    await many();
    assert.equal(server.connections, 4);
    await many();
    assert.equal(server.connections, 4);
    assert.equal(client.idle, 4);
  });
});

Deno.test("a chunked stream arrives chunk by chunk, and its connection is reused after", async () => {
  await withServer(async (request, conn) => {
    if (request.body === "stream") {
      await write(
        conn,
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
      );
      for (const word of ["data: one\n\n", "data: two\n\n"]) {
        await write(conn, `${encoder.encode(word).length.toString(16)}\r\n${word}\r\n`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      await write(conn, "0\r\n\r\n");
    } else {
      await write(conn, json('"after"'));
    }
  }, async (server, client) => {
    const response = await client.fetch(`${server.url}/s`, post("stream"));
    const reader = response.body!.getReader();
    const parts: string[] = [];
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(decoder.decode(value));
    }
    assert.deepEqual(parts, ["data: one\n\n", "data: two\n\n"]);
    assert.equal(await (await client.fetch(`${server.url}/s`, post("next"))).json(), "after");
    assert.equal(server.connections, 1);
  });
});

Deno.test("a kept-alive connection the server closed is replaced without the caller noticing", async () => {
  // The server answers each request and then closes, without saying Connection: close.
  await withServer(async (_request, conn) => {
    await write(conn, json('"ok"'));
    return { close: true };
  }, async (server, client) => {
    for (let i = 0; i < 3; i++) {
      assert.equal(await (await client.fetch(`${server.url}/x`, post("{}"))).json(), "ok");
    }
    assert.equal(server.received.length, 3);
    assert.equal(server.connections, 3);
  });
});

Deno.test("a request is sent again once when a reused connection dies before any answer", async () => {
  // Connection 0 answers once and then drops the next request unanswered; connection 1 answers.
  await withServer(async (request, conn, server) => {
    if (request.connection === 0 && server.received.length === 2) return { close: true };
    await write(conn, json('"ok"'));
    return {};
  }, async (server, client) => {
    assert.equal(await (await client.fetch(`${server.url}/x`, post("1"))).json(), "ok");
    assert.equal(await (await client.fetch(`${server.url}/x`, post("2"))).json(), "ok");
    assert.deepEqual(server.received.map((r) => [r.connection, r.body]), [[0, "1"], [0, "2"], [
      1,
      "2",
    ]]);
  });
});

Deno.test("a fresh connection that dies before answering is an error, not a second send", async () => {
  await withServer(() => Promise.resolve({ close: true }), async (server, client) => {
    await assert.rejects(client.fetch(`${server.url}/x`, post("{}")), TypeError);
    assert.equal(server.received.length, 1);
  });
});

Deno.test("Connection: close and HTTP/1.0 answers are not pooled", async () => {
  await withServer(async (request, conn) => {
    const body = '"ok"';
    const version = request.body === "1.0" ? "HTTP/1.0" : "HTTP/1.1";
    await write(
      conn,
      `${version} 200 OK\r\ncontent-length: 4\r\n${
        request.body === "close" ? "connection: close\r\n" : ""
      }\r\n${body}`,
    );
    return { close: true };
  }, async (server, client) => {
    for (const kind of ["close", "1.0"]) {
      assert.equal(await (await client.fetch(`${server.url}/x`, post(kind))).json(), "ok");
      assert.equal(client.idle, 0);
    }
  });
});

Deno.test("a body that ends early is an error for whoever reads it", async () => {
  await withServer(async (request, conn) => {
    if (request.body === "length") {
      await write(conn, 'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"partial":');
    } else {
      await write(conn, "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nHello\r\n");
    }
    return { close: true };
  }, async (server, client) => {
    await assert.rejects(client.fetch(`${server.url}/x`, post("length")), TypeError);
    const response = await client.fetch(`${server.url}/x`, post("chunked"));
    await assert.rejects(response.text(), TypeError);
    assert.equal(client.idle, 0);
  });
});

Deno.test("an abort rejects with the signal's reason, before the answer and during its body", async () => {
  await withServer(async (request, conn) => {
    if (request.body === "hang") return;
    await write(conn, "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nHello\r\n");
  }, async (server, client) => {
    const timeout = AbortSignal.timeout(50);
    await assert.rejects(
      client.fetch(`${server.url}/x`, post("hang", timeout)),
      (error: unknown) => error instanceof DOMException && error.name === "TimeoutError",
    );
    await server.closedByClient(0);

    const controller = new AbortController();
    const response = await client.fetch(`${server.url}/x`, post("stream", controller.signal));
    const reader = response.body!.getReader();
    assert.equal(decoder.decode((await reader.read()).value), "Hello");
    const reason = new Error("the caller left");
    controller.abort(reason);
    await assert.rejects(reader.read(), (error) => error === reason);
    await server.closedByClient(1);
    assert.equal(client.idle, 0);
    // Already aborted: nothing is sent.
    await assert.rejects(
      client.fetch(`${server.url}/x`, post("{}", controller.signal)),
      (e) => e === reason,
    );
    assert.equal(server.received.length, 2);
  });
});

Deno.test("a cancelled body closes its connection instead of pooling it", async () => {
  await withServer(async (_request, conn) => {
    await write(conn, "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nHello\r\n");
  }, async (server, client) => {
    const response = await client.fetch(`${server.url}/x`, post("{}"));
    await response.body!.cancel();
    await server.closedByClient(0);
    assert.equal(client.idle, 0);
  });
});

Deno.test("a header value with CR or LF is refused before anything is sent", async () => {
  await withServer(
    async (_request, conn) => await write(conn, json("{}")),
    async (server, client) => {
      await assert.rejects(
        client.fetch(`${server.url}/x`, {
          method: "POST",
          headers: { authorization: "Bearer sk\r\nx-injected: 1" },
          body: "{}",
        }),
        TypeError,
      );
      // A field value is bytes: a character past U+00FF has no single byte to be sent as.
      await assert.rejects(
        client.fetch(`${server.url}/x`, { method: "POST", headers: { "x-note": "naïve ☃" } }),
        TypeError,
      );
      assert.equal(server.received.length, 0);
    },
  );
});

Deno.test("interim 1xx answers are skipped and gzip bodies are undone, as fetch does", async () => {
  const gzipped = new Uint8Array(
    await new Response(
      new Blob(['{"zipped":true}']).stream().pipeThrough(new CompressionStream("gzip")),
    ).arrayBuffer(),
  );
  await withServer(async (_request, conn) => {
    await write(conn, "HTTP/1.1 100 Continue\r\n\r\n");
    await write(
      conn,
      `HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: ${gzipped.length}\r\n\r\n`,
    );
    await conn.write(gzipped);
  }, async (server, client) => {
    const response = await client.fetch(`${server.url}/x`, post("{}"));
    assert.deepEqual(await response.json(), { zipped: true });
  });
});

Deno.test("close() closes the idle connections, and later calls go to the fallback", async () => {
  let fallbackCalls = 0;
  const fallback = () => {
    fallbackCalls++;
    return Promise.resolve(new Response('"fallback"'));
  };
  await withServer(
    async (_request, conn) => await write(conn, json('"pooled"')),
    async (server, client) => {
      assert.equal(await (await client.fetch(`${server.url}/x`, post("{}"))).json(), "pooled");
      // A stream body, or a scheme other than http and https, is the fallback's.
      await client.fetch(`${server.url}/x`, { method: "POST", body: new Blob(["{}"]).stream() });
      await client.fetch("data:application/json,{}", {});
      assert.equal(fallbackCalls, 2);
      client.close();
      await server.closedByClient(0);
      assert.equal(await (await client.fetch(`${server.url}/x`, post("{}"))).json(), "fallback");
      assert.equal(fallbackCalls, 3);
    },
    { fallback },
  );
});

Deno.test("a large answer streams instead of being buffered", async () => {
  const big = "x".repeat(300_000);
  await withServer(
    async (_request, conn) => await write(conn, json(JSON.stringify(big))),
    async (server, client) => {
      const response = await client.fetch(`${server.url}/x`, post("{}"));
      assert.equal(await response.json(), big);
      assert.equal(await (await client.fetch(`${server.url}/x`, post("{}"))).json(), big);
      assert.equal(server.connections, 1);
    },
    { bufferBytes: 1024 },
  );
});

Deno.test("an answer's body reads once, whole or as a stream, as a Response's does", async () => {
  await withServer(
    async (_request, conn) => await write(conn, json('{"a":1}', "x-b: 2\r\n")),
    async (server, client) => {
      const whole = await client.fetch(`${server.url}/x`, post("{}"));
      assert.equal(whole.ok, true);
      assert.equal(whole.headers.get("x-b"), "2");
      assert.equal(await whole.text(), '{"a":1}');
      await assert.rejects(whole.text(), TypeError);

      const streamed = await client.fetch(`${server.url}/x`, post("{}"));
      const reader = streamed.body!.getReader();
      // While a reader holds the body, it cannot be read whole.
      await assert.rejects(streamed.text(), TypeError);
      const parts: string[] = [];
      for (let read = await reader.read(); !read.done; read = await reader.read()) {
        parts.push(decoder.decode(read.value));
      }
      assert.equal(parts.join(""), '{"a":1}');
    },
  );
});

Deno.test("https upstreams are verified and kept alive like plain ones", async () => {
  // A test CA and a localhost certificate it signed (tests/fixtures/tls/, valid until 2126).
  const fixture = (name: string) =>
    Deno.readTextFileSync(new URL(`../fixtures/tls/${name}`, import.meta.url));
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    cert: fixture("localhost.pem"),
    key: fixture("localhost.key"),
    onListen: () => {},
  }, async (request) => new Response(JSON.stringify({ got: await request.text() })));
  const url = `https://localhost:${server.addr.port}/v1/chat/completions`;
  const trusting = createUpstreamClient({ caCerts: [fixture("ca.pem")] });
  const untrusting = createUpstreamClient();
  try {
    for (let i = 0; i < 3; i++) {
      assert.deepEqual(await (await trusting.fetch(url, post(`${i}`))).json(), { got: `${i}` });
    }
    assert.equal(trusting.idle, 1);
    await assert.rejects(untrusting.fetch(url, post("{}")), /certificate/);
  } finally {
    trusting.close();
    untrusting.close();
    await server.shutdown();
  }
});

Deno.test("a reused connection that closes after an interim answer is not sent the request again", async () => {
  await withServer(async (request, conn) => {
    if (request.body === "first") {
      await write(conn, json('"ok"'));
      return {};
    }
    await write(conn, "HTTP/1.1 100 Continue\r\n\r\n");
    return { close: true };
  }, async (server, client) => {
    assert.equal(await (await client.fetch(`${server.url}/x`, post("first"))).json(), "ok");
    await assert.rejects(client.fetch(`${server.url}/x`, post("second")), TypeError);
    assert.deepEqual(server.received.map((r) => r.body), ["first", "second"]);
  });
});
