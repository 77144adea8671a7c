/** The request path the app routes on, sliced from the URL without parsing it. */
import assert from "node:assert/strict";
import { pathOf } from "../../gateway/app.ts";

const CASES: [url: string, path: string][] = [
  ["http://127.0.0.1:8000/v1/chat/completions", "/v1/chat/completions"],
  ["http://127.0.0.1:8000/v1/models/", "/v1/models"],
  ["http://gw/v1/models//", "/v1/models"],
  ["http://gw/v1/models?limit=2", "/v1/models"],
  ["http://gw/v1/models/a%2Fb?x=/y", "/v1/models/a%2Fb"],
  ["http://gw/v1/models#frag", "/v1/models"],
  ["https://user@gw.example:443/healthz", "/healthz"],
  ["http://gw/", ""],
];

Deno.test("pathOf agrees with URL.pathname for every request shape", () => {
  for (const [url, path] of CASES) {
    assert.equal(pathOf(url), path, url);
    assert.equal(pathOf(url), new URL(url).pathname.replace(/\/+$/, ""), url);
  }
});
