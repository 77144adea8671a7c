/**
 * GraphiQL at /graphql: served to browsers without credentials, from our own
 * assets only. The browser test loads it in headless Chromium with every
 * host but 127.0.0.1 unresolvable, records every request the page and its
 * workers attempt over the DevTools protocol, and checks the editor renders.
 */
import assert from "node:assert/strict";
import { parse, validate } from "graphql";
import { ensureAdminToken } from "../../control/auth.ts";
import { GRAPHQL_DEFAULTS, loadConfig } from "../../control/config.ts";
import { ASSET_PREFIX, GRAPHIQL_CSP } from "../../control/graphiql.ts";
import { schema } from "../../control/graphql/schema.ts";
import { startControl } from "../../control/server.ts";
import { deriveServerKeys } from "../../schema/secrets.ts";
import { freshDatabase } from "../helpers/database.ts";
import { ADMIN_TOKEN, TEST_SECRET } from "../helpers/stack.ts";

/** A control plane on a fresh database; GraphiQL on unless `graphiql` is false. */
async function startControlPlane(graphiql = true) {
  const database = await freshDatabase();
  const keys = deriveServerKeys(TEST_SECRET);
  await ensureAdminToken(database.db.db, keys, ADMIN_TOKEN);
  const control = await startControl({
    db: database.db.db,
    keys,
    config: {
      ...loadConfig({ TOLLGATE_DATA_DIR: "memory://", TOLLGATE_CONTROL_PORT: "0" }),
      adminToken: ADMIN_TOKEN,
      graphql: { ...GRAPHQL_DEFAULTS, graphiql },
    },
  });
  return {
    url: control.url,
    async close() {
      await control.shutdown();
      await database.drop();
    },
  };
}

/** What a browser sends when it opens a page. */
const BROWSER = { accept: "text/html,application/xhtml+xml,*/*;q=0.8" };

Deno.test("GraphiQL is served without credentials, from local assets only, under a strict CSP", async () => {
  const control = await startControlPlane();
  try {
    const page = await fetch(`${control.url}/graphql`, { headers: BROWSER });
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type")!, /^text\/html/);
    assert.equal(page.headers.get("content-security-policy"), GRAPHIQL_CSP);
    assert.match(GRAPHIQL_CSP, /script-src 'self';/);
    assert.match(GRAPHIQL_CSP, /connect-src 'self';/);
    assert.match(GRAPHIQL_CSP, /frame-ancestors 'none'/);
    const html = await page.text();
    assert.ok(html.length < 4096, `the page is a shell (${html.length} bytes)`);
    assert.doesNotMatch(html, /https?:\/\//, "the page names no other origin");

    const assets = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    const config = JSON.parse(
      /<script type="application\/json" id="graphiql-config">(.*?)<\/script>/s.exec(html)![1]!,
    );
    assets.push(...Object.values(config.workers as Record<string, string>));
    assert.equal(assets.length, 7, assets.join(" "));
    for (const asset of assets) {
      assert.ok(asset.startsWith(ASSET_PREFIX), asset);
      const response = await fetch(`${control.url}${asset}`);
      assert.equal(response.status, 200, asset);
      assert.equal(response.headers.get("cache-control"), "public, max-age=31536000, immutable");
      assert.equal(response.headers.get("x-content-type-options"), "nosniff");
      const body = new Uint8Array(await response.arrayBuffer());
      assert.equal(body.byteLength, Number(response.headers.get("content-length")), asset);
      if (!asset.endsWith(".ico")) {
        const text = new TextDecoder().decode(body);
        assert.doesNotMatch(text, /unpkg\.com|jsdelivr|googleapis|cdnjs|esm\.sh/, asset);
        assert.doesNotMatch(
          text,
          /url\(\s*["']?https?:/,
          `${asset} loads nothing over the network`,
        );
      }
    }
    assert.equal(config.options.shouldPersistHeaders, false, "a pasted token is not persisted");
    assert.deepEqual(validate(schema, parse(config.options.defaultQuery)), [], "the example runs");

    const missing = await fetch(`${control.url}${ASSET_PREFIX}graphiql.000000000000.js`);
    assert.equal(missing.status, 404);
    await missing.body?.cancel();
    const post = await fetch(`${control.url}${assets[0]}`, { method: "POST" });
    assert.equal(post.status, 405);
    await post.body?.cancel();

    // The page is open; the endpoint behind it is not.
    const query = await fetch(`${control.url}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: "{ __typename }" }),
    });
    assert.equal(query.status, 401);
    await query.body?.cancel();
  } finally {
    await control.close();
  }
});

Deno.test("with TOLLGATE_GRAPHIQL=off neither the page nor its assets are served", async () => {
  const control = await startControlPlane(false);
  try {
    const page = await fetch(`${control.url}/graphql`, { headers: BROWSER });
    assert.doesNotMatch(page.headers.get("content-type") ?? "", /text\/html/);
    assert.notEqual(page.status, 200);
    await page.body?.cancel();
    const on = await startControlPlane(true);
    let asset: string;
    try {
      const html = await (await fetch(`${on.url}/graphql`, { headers: BROWSER })).text();
      asset = /src="([^"]+\.js)"/.exec(html)![1]!;
    } finally {
      await on.close();
    }
    const response = await fetch(`${control.url}${asset}`);
    assert.equal(response.status, 404);
    await response.body?.cancel();
  } finally {
    await control.close();
  }
});

const CHROMIUM = ["chromium", "chromium-browser", "google-chrome"].find((name) => {
  try {
    return new Deno.Command("which", { args: [name], stdout: "null", stderr: "null" }).outputSync()
      .success;
  } catch {
    return false;
  }
});

Deno.test({
  name:
    "in Chromium with the network cut off, GraphiQL renders its editor and asks nothing of other hosts",
  ignore: !CHROMIUM,
  async fn() {
    const control = await startControlPlane();
    const browser = await launchChromium(CHROMIUM!);
    try {
      const page = await browser.openPage();
      const origin = new URL(control.url).origin;
      await page.navigate(`${control.url}/graphql`);
      await page.waitFor(
        "!!document.querySelector('.graphiql-container') && !!document.querySelector('.monaco-editor')",
      );
      // GraphiQL introspects on load (no token yet: 401) and Monaco starts its GraphQL worker.
      const introspected = `401 ${origin}/graphql`;
      await page.waitFor(
        "performance.getEntriesByType('resource').some((e) => e.name.includes('graphql.worker'))",
      );
      await poll(() => page.statuses().includes(introspected), "GraphiQL's introspection");
      await new Promise((resolve) => setTimeout(resolve, 300));

      const requested = page.requests();
      const external = requested.filter((url) =>
        !url.startsWith(origin) && !url.startsWith("data:") && !url.startsWith("blob:")
      );
      assert.deepEqual(external, [], "no request left 127.0.0.1");
      assert.ok(
        requested.some((url) => url.startsWith(`${origin}${ASSET_PREFIX}graphql.worker.`)),
        "Monaco's GraphQL worker came from our assets",
      );
      assert.deepEqual(page.problems(), [], "no CSP violation, exception or failed load");

      // Its request passed the CSRF check and met authentication; from the page, with a token,
      // a query works (GraphiQL sends the same fetch with the Headers tab's token).
      const answers = await page.evaluate(`(async () => {
        const ask = (headers) => fetch("/graphql", {
          method: "POST",
          headers: { "content-type": "application/json", ...headers },
          body: JSON.stringify({ query: "{ __typename }" }),
        }).then(async (r) => [r.status, await r.json()]);
        return [await ask({}), await ask({ authorization: "Bearer ${ADMIN_TOKEN}" })];
      })()`) as [number, unknown][];
      assert.equal(answers[0]![0], 401);
      assert.deepEqual(answers[1], [200, { data: { __typename: "Query" } }]);
    } finally {
      await browser.close();
      await control.close();
    }
  },
});

interface Page {
  navigate(url: string): Promise<void>;
  /** Polls `expression` in the page until it is true (see poll). */
  waitFor(expression: string): Promise<void>;
  evaluate(expression: string): Promise<unknown>;
  /** Every URL the page or its workers asked for, in order. */
  requests(): string[];
  /** "<status> <url>" of every response, in order. */
  statuses(): string[];
  /** CSP violations, uncaught exceptions, console errors and failed loads, as text. */
  problems(): string[];
}

interface Browser {
  openPage(): Promise<Page>;
  close(): Promise<void>;
}

/**
 * Headless Chromium that cannot resolve any host but 127.0.0.1, driven over
 * the DevTools protocol on a plain WebSocket.
 */
async function launchChromium(binary: string): Promise<Browser> {
  const profile = await Deno.makeTempDir({ prefix: "tollgate-chromium-" });
  const process = new Deno.Command(binary, {
    args: [
      "--headless=new",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-dev-shm-usage",
      "--no-first-run",
      "--no-default-browser-check",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
      "--remote-debugging-port=0",
      `--user-data-dir=${profile}`,
      "about:blank",
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const endpoint = await devToolsEndpoint(process.stderr);
  const socket = new WebSocket(endpoint);
  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onerror = reject;
  });

  let nextId = 0;
  const pending = new Map<number, PromiseWithResolvers<Record<string, unknown>>>();
  const listeners: ((method: string, params: Record<string, unknown>, session?: string) => void)[] =
    [];
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.id !== undefined) {
      const call = pending.get(message.id);
      pending.delete(message.id);
      if (message.error) call?.reject(new Error(JSON.stringify(message.error)));
      else call?.resolve(message.result);
    } else {
      for (const listener of listeners) listener(message.method, message.params, message.sessionId);
    }
  };
  function send(
    method: string,
    params: Record<string, unknown> = {},
    sessionId?: string,
  ): Promise<Record<string, unknown>> {
    const id = ++nextId;
    const call = Promise.withResolvers<Record<string, unknown>>();
    pending.set(id, call);
    socket.send(JSON.stringify({ id, method, params, sessionId }));
    return call.promise;
  }

  return {
    async openPage() {
      const { targetId } = await send("Target.createTarget", { url: "about:blank" });
      const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true }) as {
        sessionId: string;
      };
      const requests: string[] = [];
      const statuses: string[] = [];
      const problems: string[] = [];
      const sessions = new Set([sessionId]);
      async function instrument(session: string) {
        await send("Network.enable", {}, session);
        await send("Runtime.enable", {}, session);
        await send("Log.enable", {}, session).catch(() => {}); // workers have no Log domain
        // Workers start paused, so their first request is seen too.
        await send("Target.setAutoAttach", {
          autoAttach: true,
          waitForDebuggerOnStart: true,
          flatten: true,
        }, session).catch(() => {});
        await send("Runtime.runIfWaitingForDebugger", {}, session);
      }
      listeners.push((method, params, session) => {
        if (!session || !sessions.has(session)) return;
        switch (method) {
          case "Target.attachedToTarget": {
            const child = params.sessionId as string;
            sessions.add(child);
            instrument(child).catch((error) => problems.push(`instrumenting a worker: ${error}`));
            break;
          }
          case "Network.requestWillBeSent":
            requests.push((params.request as { url: string }).url);
            break;
          case "Network.responseReceived": {
            const response = params.response as { url: string; status: number };
            statuses.push(`${response.status} ${response.url}`);
            break;
          }
          case "Network.loadingFailed":
            problems.push(`load failed: ${params.errorText} ${params.blockedReason ?? ""}`);
            break;
          case "Runtime.exceptionThrown":
            problems.push(`exception: ${JSON.stringify(params.exceptionDetails)}`);
            break;
          case "Log.entryAdded": {
            const entry = params.entry as { level: string; text: string; url?: string };
            // The 401 of GraphiQL's token-less introspection is expected; anything else is not.
            if (entry.level === "error" && !/status of 401/.test(entry.text)) {
              problems.push(`log: ${entry.text}`);
            }
            break;
          }
        }
      });
      await send("Page.enable", {}, sessionId);
      await instrument(sessionId);

      async function evaluate(expression: string): Promise<unknown> {
        const { result, exceptionDetails } = await send("Runtime.evaluate", {
          expression,
          awaitPromise: true,
          returnByValue: true,
        }, sessionId) as { result: { value: unknown }; exceptionDetails?: unknown };
        if (exceptionDetails) throw new Error(JSON.stringify(exceptionDetails));
        return result.value;
      }
      return {
        async navigate(url) {
          const loaded = Promise.withResolvers<void>();
          listeners.push((method, _params, session) => {
            if (session === sessionId && method === "Page.loadEventFired") loaded.resolve();
          });
          await send("Page.navigate", { url }, sessionId);
          await loaded.promise;
        },
        async waitFor(expression) {
          await poll(async () => Boolean(await evaluate(expression)), `${expression}; ${problems}`);
        },
        evaluate,
        requests: () => [...requests],
        statuses: () => [...statuses],
        problems: () => [...problems],
      };
    },
    async close() {
      await send("Browser.close").catch(() => {});
      socket.close();
      await process.status;
      await Deno.remove(profile, { recursive: true }).catch(() => {});
    },
  };
}

/** Reads Chromium's stderr until it prints its DevTools WebSocket URL, then drains the rest. */
async function devToolsEndpoint(stderr: ReadableStream<Uint8Array>): Promise<string> {
  const lines = stderr.getReader();
  const decoder = new TextDecoder();
  let seen = "";
  while (true) {
    const { value, done } = await lines.read();
    if (done) throw new Error(`Chromium exited before listening:\n${seen}`);
    seen += decoder.decode(value, { stream: true });
    const match = /DevTools listening on (ws:\/\/\S+)/.exec(seen);
    if (match) {
      (async () => {
        while (!(await lines.read()).done) { /* drain */ }
      })();
      return match[1]!;
    }
  }
}

/** Waits for `check` to hold, polling every 100 ms; 30 s at most (a 5 MB bundle on a busy box). */
async function poll(check: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
