/**
 * What every endpoint refuses, as the official `openai` client sees it: a
 * malformed body (400 naming the param), an oversized one (413, before it is
 * read whole), an unknown model (404) and one outside the key's allowlist
 * (403, not to be retried). Refusals before the upstream are never metered.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { type Stack, startStack, waitFor } from "../helpers/stack.ts";

const MODEL = "tollgate-mock";
const REQUEST_ID = /^req_[0-9a-f]{32}$/;
const MAX_BODY = 4096;

type Call = (client: OpenAI, model: string) => Promise<unknown>;

/** One ordinary request per endpoint, streaming where the endpoint streams. */
const CALLS: Record<string, Call> = {
  "chat": (c, model) =>
    c.chat.completions.create({ model, messages: [{ role: "user", content: "hi" }] }),
  "chat stream": (c, model) =>
    c.chat.completions.create({ model, messages: [{ role: "user", content: "hi" }], stream: true }),
  "completions": (c, model) => c.completions.create({ model, prompt: "hi" }),
  "completions stream": (c, model) => c.completions.create({ model, prompt: "hi", stream: true }),
  "embeddings": (c, model) => c.embeddings.create({ model, input: "hi" }),
  "images": (c, model) => c.images.generate({ model, prompt: "hi" }),
  "responses": (c, model) => c.responses.create({ model, input: "hi" }),
  "responses stream": (c, model) => c.responses.create({ model, input: "hi", stream: true }),
};

const PATHS = [
  "/v1/chat/completions",
  "/v1/completions",
  "/v1/embeddings",
  "/v1/images/generations",
  "/v1/responses",
];

async function withClient(
  test: (stack: Stack, client: OpenAI, keyId: string) => Promise<void>,
  options: { maxBodyBytes?: number } = {},
) {
  const stack = await startStack(options);
  try {
    const { secret, keyId } = await stack.createKey();
    await test(stack, stack.openai(secret), keyId);
  } finally {
    await stack.close();
  }
}

async function refusal(promise: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  const error = await promise.then(() => null, (e) => e);
  assert.ok(error instanceof OpenAI.APIError, `expected an APIError, got ${error}`);
  return error;
}

async function usageCount(stack: Stack): Promise<number> {
  await stack.gateway.usage.flush();
  const rows = await stack.database.db.db.selectFrom("usage_events").select("request_id").execute();
  return rows.length;
}

Deno.test("a malformed body is a 400 invalid_request_error naming the param, never metered", async () => {
  await withClient(async (stack, client) => {
    const model = MODEL;
    const cases: [string, () => Promise<unknown>, string][] = [
      ["chat", () => client.chat.completions.create({ model, messages: [] }), "messages"],
      [
        "chat role",
        () =>
          client.chat.completions.create({
            model,
            messages: [{ role: "robot", content: "hi" } as never],
          }),
        "messages[0].role",
      ],
      [
        "completions",
        () => client.completions.create({ model, prompt: { text: "hi" } as never }),
        "prompt",
      ],
      [
        "completions max_tokens",
        () => client.completions.create({ model, prompt: "hi", max_tokens: -1 }),
        "max_tokens",
      ],
      ["embeddings", () => client.embeddings.create({ model, input: "" }), "input"],
      ["embeddings list", () => client.embeddings.create({ model, input: [] }), "input"],
      [
        "embeddings dimensions",
        () => client.embeddings.create({ model, input: "hi", dimensions: 0 }),
        "dimensions",
      ],
      ["embeddings model", () => client.embeddings.create({ input: "hi" } as never), "model"],
      ["images", () => client.images.generate({ model, prompt: "" }), "prompt"],
      ["images n", () => client.images.generate({ model, prompt: "hi", n: 0 }), "n"],
      ["responses", () => client.responses.create({ model, input: 42 as never }), "input"],
      [
        "responses tools",
        () => client.responses.create({ model, input: "hi", tools: [{} as never] }),
        "tools[0].type",
      ],
      [
        "responses stream",
        () => client.responses.create({ model, input: 42 as never, stream: true }),
        "input",
      ],
    ];
    for (const [name, call, param] of cases) {
      const error = await refusal(call());
      assert.ok(error instanceof OpenAI.BadRequestError, `${name}: ${error}`);
      assert.equal(error.status, 400, name);
      assert.equal(error.code, "invalid_request_error", name);
      assert.equal(error.type, "invalid_request_error", name);
      assert.equal(error.param, param, `${name}: ${error.message}`);
      assert.match(error.message, new RegExp(`Invalid '${param.replace(/[[\]]/g, "\\$&")}'`));
      assert.match(error.requestID!, REQUEST_ID, name);
      assert.equal(error.headers?.get("x-should-retry"), "false", name);
    }
    assert.equal(await usageCount(stack), 0);
  });
});

Deno.test("an oversized body is a 413 before it is read whole, declared or chunked", async () => {
  await withClient(async (stack, _client) => {
    const secret = (await stack.createKey({ accountName: "Other" })).secret;
    const headers = { authorization: `Bearer ${secret}`, "content-type": "application/json" };
    const { hostname, port } = new URL(stack.gatewayUrl);
    for (const path of PATHS) {
      const url = `${stack.gatewayUrl}${path}`;
      // A body over the limit, with its Content-Length.
      const big = JSON.stringify({ model: MODEL, prompt: "x".repeat(MAX_BODY), input: "x" });
      const declared = await fetch(url, { method: "POST", headers, body: big });
      assert.equal(declared.status, 413, path);
      const body = await declared.json();
      assert.equal(body.error.code, "request_too_large");
      assert.match(declared.headers.get("x-request-id")!, REQUEST_ID);

      // A declared length is refused before a byte of the body is sent.
      const head = await rawExchange({ hostname, port: Number(port) }, [
        `POST ${path} HTTP/1.1`,
        `Host: ${hostname}`,
        `Authorization: Bearer ${secret}`,
        "Content-Type: application/json",
        "Content-Length: 1000000000",
      ]);
      assert.match(head, /^HTTP\/1\.1 413 /, path);

      // A chunked body without Content-Length that never ends: refused at the limit,
      // and not read on (drained) after the refusal.
      let sent = 0;
      let stop = false;
      const endless = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (stop) return controller.close();
          sent += 1024;
          controller.enqueue(new TextEncoder().encode(" ".repeat(1024)));
        },
      });
      const chunked = await fetch(url, { method: "POST", headers, body: endless });
      assert.equal(chunked.status, 413, path);
      assert.equal((await chunked.json()).error.code, "request_too_large");
      const sentAtAnswer = sent;
      await new Promise((resolve) => setTimeout(resolve, 300));
      const readOn = sent - sentAtAnswer;
      stop = true; // ends the upload, so the server can shut down either way
      assert.ok(readOn < 16 * 1024 * 1024, `${path}: ${readOn} bytes read after the 413`);
    }
    assert.equal(await usageCount(stack), 0);
  }, { maxBodyBytes: MAX_BODY });
});

/** Sends a request head over TCP and returns the response head (the body is never sent). */
async function rawExchange(
  address: { hostname: string; port: number },
  lines: string[],
): Promise<string> {
  const conn = await Deno.connect(address);
  try {
    await conn.write(new TextEncoder().encode(lines.join("\r\n") + "\r\n\r\n"));
    const buffer = new Uint8Array(4096);
    const timer = setTimeout(() => conn.close(), 5_000);
    const n = await conn.read(buffer);
    clearTimeout(timer);
    return new TextDecoder().decode(buffer.subarray(0, n ?? 0));
  } finally {
    try {
      conn.close();
    } catch {
      // already closed
    }
  }
}

Deno.test("an unknown model is a 404 model_not_found on every endpoint, never metered", async () => {
  await withClient(async (stack, client) => {
    for (const [name, call] of Object.entries(CALLS)) {
      const error = await refusal(call(client, "no-such-model"));
      assert.ok(error instanceof OpenAI.NotFoundError, `${name}: ${error}`);
      assert.equal(error.code, "model_not_found", name);
      assert.equal(error.param, "model", name);
      assert.match(error.requestID!, REQUEST_ID);
    }
    assert.equal(await usageCount(stack), 0);
  });
});

/** The key may use `tollgate-mock` and the alias `fast`, whose target `other-mock` it may not. */
async function restrictKey(stack: Stack, client: OpenAI, keyId: string) {
  const model = await stack.graphql(`mutation {
    upsertModel(input: { name: "other-mock", provider: "mock", upstreamName: "mock-2", inputPrice: "1", outputPrice: "2" }) { __typename }
  }`);
  assert.deepEqual(model.data, { upsertModel: { __typename: "Model" } }, JSON.stringify(model));
  const db = stack.database.db.db;
  await db.insertInto("routes").values({ name: "fast", targets: ["other-mock"] }).execute();
  await db.updateTable("api_keys").set({ allowed_models: [MODEL, "fast"] }).where("id", "=", keyId)
    .execute();
  await waitFor(async () => {
    const ids = (await client.models.list()).data.map((m) => m.id);
    return ids.join() === ["fast", MODEL].join();
  });
}

Deno.test("a model outside the key's allowlist is a 403 not to retry; an allowed alias to it works", async () => {
  await withClient(async (stack, client, keyId) => {
    await restrictKey(stack, client, keyId);
    for (const [name, call] of Object.entries(CALLS)) {
      const error = await refusal(call(client, "other-mock"));
      assert.ok(error instanceof OpenAI.PermissionDeniedError, `${name}: ${error}`);
      assert.equal(error.status, 403, name);
      assert.equal(error.code, "model_not_allowed", name);
      assert.equal(error.param, "model", name);
      assert.equal(error.headers?.get("x-should-retry"), "false", name);
      assert.match(error.requestID!, REQUEST_ID);
    }
    assert.equal(await usageCount(stack), 0);

    for (const [name, call] of Object.entries(CALLS)) {
      const result = await call(client, "fast");
      if (result instanceof Object && Symbol.asyncIterator in result) {
        for await (const _ of result as AsyncIterable<unknown>) { /* drain */ }
      }
      assert.ok(result, name);
    }
    await stack.gateway.usage.flush();
    const rows = await stack.database.db.db.selectFrom("usage_events").selectAll().execute();
    assert.equal(rows.length, Object.keys(CALLS).length);
    for (const row of rows) {
      assert.equal(row.model, "fast");
      assert.equal(row.upstream_model, "mock-2");
      assert.equal(row.status, 200);
    }
  });
});

Deno.test("the openai client does not retry a 403 or a 404, and does retry a retryable 502", async () => {
  await withClient(async (stack, client, keyId) => {
    await restrictKey(stack, client, keyId);
    const secret = (await stack.createKey({ accountName: "Retry" })).secret;
    const requests: string[] = [];
    const counting = new OpenAI({
      apiKey: secret,
      baseURL: `${stack.gatewayUrl}/v1`,
      maxRetries: 2,
      fetch: (input, init) => {
        requests.push(String(input));
        return fetch(input, init);
      },
    });
    const restricted = new OpenAI({
      apiKey: client.apiKey,
      baseURL: `${stack.gatewayUrl}/v1`,
      maxRetries: 2,
      fetch: (input, init) => {
        requests.push(String(input));
        return fetch(input, init);
      },
    });

    const forbidden = await refusal(CALLS.chat!(restricted, "other-mock"));
    assert.equal(forbidden.status, 403);
    assert.equal(requests.length, 1, "a 403 is not retried");

    requests.length = 0;
    const missing = await refusal(CALLS.embeddings!(counting, "no-such-model"));
    assert.equal(missing.status, 404);
    assert.equal(requests.length, 1, "a 404 is not retried");

    requests.length = 0;
    const retrieve = await refusal(counting.models.retrieve("no-such-model"));
    assert.equal(retrieve.status, 404);
    assert.equal(requests.length, 1, "a 404 from retrieve is not retried");

    // The control: an upstream nobody answers is a 502 the client may retry.
    const provider = await stack.graphql(`mutation {
      upsertProvider(input: { name: "down", kind: openai_compat, baseUrl: "http://127.0.0.1:9/v1" }) { __typename }
    }`);
    assert.deepEqual(provider.data, { upsertProvider: { __typename: "Provider" } });
    await stack.graphql(`mutation {
      upsertModel(input: { name: "down-model", provider: "down", upstreamName: "x", inputPrice: "1", outputPrice: "1" }) { __typename }
    }`);
    await waitFor(async () =>
      (await counting.models.list()).data.some((m) => m.id === "down-model")
    );
    requests.length = 0;
    const down = await refusal(CALLS.chat!(counting, "down-model"));
    assert.equal(down.status, 502);
    assert.equal(down.headers?.get("x-should-retry"), "true");
    assert.equal(requests.length, 3, "a retryable 502 is retried twice");
  });
});
