import assert from "node:assert/strict";
import { ChunkedDecoder, headEnd, parseHead } from "../../gateway/providers/http/framing.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const bytes = (text: string) => encoder.encode(text);

Deno.test("a response head gives its status, headers in order and body framing", () => {
  const head = parseHead(
    bytes(
      "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nContent-Length: 12\r\n" +
        "Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-Empty:",
    ),
  );
  assert.equal(head.status, 429);
  assert.equal(head.statusText, "Too Many Requests");
  assert.deepEqual(head.headers, [
    ["retry-after", "3"],
    ["content-length", "12"],
    ["set-cookie", "a=1"],
    ["set-cookie", "b=2"],
    ["x-empty", ""],
  ]);
  assert.deepEqual(head.framing, { kind: "length", length: 12 });
  assert.equal(head.keepAlive, true);
});

Deno.test("framing follows RFC 9112: chunked over a length, close without either", () => {
  const chunked = parseHead(bytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked"));
  assert.deepEqual(chunked.framing, { kind: "chunked" });
  assert.equal(chunked.keepAlive, true);
  // Both: chunked is used, and the connection is not trusted with another request.
  const both = parseHead(
    bytes("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked"),
  );
  assert.deepEqual(both.framing, { kind: "chunked" });
  assert.equal(both.keepAlive, false);
  const untilClose = parseHead(bytes("HTTP/1.1 200 OK\r\nContent-Type: text/plain"));
  assert.deepEqual(untilClose.framing, { kind: "close" });
  assert.equal(untilClose.keepAlive, false);
  for (const status of [204, 205, 304, 100]) {
    assert.deepEqual(
      parseHead(bytes(`HTTP/1.1 ${status} X\r\nContent-Length: 9`)).framing,
      { kind: "none" },
    );
  }
  assert.deepEqual(parseHead(bytes("HTTP/1.1 200 OK\r\nContent-Length: 9"), "HEAD").framing, {
    kind: "none",
  });
  assert.deepEqual(parseHead(bytes("HTTP/1.1 200 OK\r\nContent-Length: 0")).framing, {
    kind: "none",
  });
});

Deno.test("keep-alive: HTTP/1.1 unless Connection: close, HTTP/1.0 only with keep-alive", () => {
  assert.equal(
    parseHead(bytes("HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 1")).keepAlive,
    false,
  );
  assert.equal(
    parseHead(bytes("HTTP/1.1 200 OK\r\nConnection: upgrade, close\r\nContent-Length: 1"))
      .keepAlive,
    false,
  );
  assert.equal(parseHead(bytes("HTTP/1.0 200 OK\r\nContent-Length: 1")).keepAlive, false);
  assert.equal(
    parseHead(bytes("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1")).keepAlive,
    true,
  );
});

Deno.test("a head that is not HTTP/1.x, or smuggles a field, is refused", () => {
  for (
    const head of [
      "HTTP/2 200",
      "ICY 200 OK",
      "HTTP/1.1 20 OK",
      "HTTP/1.1 200 OK\r\nBad Name: x",
      "HTTP/1.1 200 OK\r\n folded: x",
      "HTTP/1.1 200 OK\r\nno-colon",
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6",
      "HTTP/1.1 200 OK\r\nContent-Length: 5, 6",
      "HTTP/1.1 200 OK\r\nContent-Length: -1",
      "HTTP/1.1 200 OK\r\nContent-Length: 0x10",
    ]
  ) {
    assert.throws(() => parseHead(bytes(head)), TypeError, head);
  }
  // The same length twice is one length.
  assert.deepEqual(
    parseHead(bytes("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5")).framing,
    { kind: "length", length: 5 },
  );
});

Deno.test("the end of a head is found wherever the CRLF CRLF falls", () => {
  const text = bytes("HTTP/1.1 200 OK\r\nA: b\r\n\r\nbody");
  assert.equal(headEnd(text), 21);
  assert.equal(headEnd(text, 20), 21);
  assert.equal(headEnd(text, 22), -1);
  assert.equal(headEnd(bytes("HTTP/1.1 200 OK\r\nA: b\r\n\r")), -1);
});

const CHUNKED = "5;ext=1\r\nHello\r\n7\r\n, world\r\nA \r\n from afar\r\n0\r\nTrailer: x\r\n\r\n";

Deno.test("chunked bodies decode the same however the bytes are split", () => {
  const whole = bytes(CHUNKED + "NEXT");
  for (let split = 0; split <= whole.length; split++) {
    for (let second = split; second <= whole.length; second += 7) {
      const chunked = new ChunkedDecoder();
      const out: Uint8Array[] = [];
      let used = 0;
      for (
        const piece of [
          whole.subarray(0, split),
          whole.subarray(split, second),
          whole.subarray(second),
        ]
      ) {
        if (chunked.done) break;
        const n = chunked.push(piece, out);
        used += n;
        if (n < piece.length) assert.ok(chunked.done);
        // Views are only valid for the call: copy as the client does.
        out.splice(0, out.length, ...out.map((v) => v.slice()));
      }
      assert.equal(chunked.done, true, `split at ${split}/${second}`);
      assert.equal(used, whole.length - "NEXT".length, `split at ${split}/${second}`);
      assert.equal(out.map((v) => decoder.decode(v)).join(""), "Hello, world from afar");
    }
  }
});

Deno.test("malformed chunked coding is refused", () => {
  for (
    const body of ["zz\r\n", "5\r\nHelloXX", "\r\n", "1234567890abc\r\n", `${"1".repeat(5000)}`]
  ) {
    assert.throws(() => new ChunkedDecoder().push(bytes(body), []), TypeError, body.slice(0, 20));
  }
});

Deno.test("header bytes that are not ASCII are read one character a byte, as fetch reads them", () => {
  const head = new Uint8Array([...bytes("HTTP/1.1 200 OK\r\nX-Name: caf"), 0xe9]);
  assert.deepEqual(parseHead(head).headers, [["x-name", "café"]]);
  // Bytes that happen to be valid UTF-8 are still one character each.
  const utf8 = new Uint8Array([...bytes("HTTP/1.1 200 OK\r\nX-Name: caf"), 0xc3, 0xa9]);
  assert.deepEqual(parseHead(utf8).headers, [["x-name", "cafÃ©"]]);
});
