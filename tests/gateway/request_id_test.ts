/** Request ids: UUIDv7 digits behind `req_`, so they sort by the time they were made. */
import assert from "node:assert/strict";
import { requestIdAt } from "../../gateway/app.ts";

Deno.test("a request id is req_ and a UUIDv7's 32 hex digits, its first 12 the time in ms", () => {
  const ms = Date.UTC(2026, 11, 7, 15, 0, 0, 123);
  const id = requestIdAt(ms);
  assert.match(id, /^req_[0-9a-f]{12}7[0-9a-f]{3}[89ab][0-9a-f]{15}$/);
  assert.equal(parseInt(id.slice(4, 16), 16), ms);
});

Deno.test("request ids made in later milliseconds sort after earlier ones, and none repeats", () => {
  const start = Date.UTC(2026, 0, 1);
  const ids = [];
  for (let i = 0; i < 10_000; i++) ids.push(requestIdAt(start + Math.floor(i / 10)));
  assert.equal(new Set(ids).size, ids.length);
  for (let i = 10; i < ids.length; i += 10) {
    assert.ok(ids[i - 10]! < ids[i]!, `${ids[i - 10]} >= ${ids[i]}`);
  }
});
