/**
 * GET /v1/models and /v1/models/{id} with the official `openai` client: the
 * models and aliases a key may call, and nothing else. Then the same routes
 * as Anthropic's SDKs call them (its TypeScript SDK, and the headers that 0.x
 * and 1.x send): Anthropic's model objects and cursor pages, and which key
 * header wins.
 */
import assert from "node:assert/strict";
import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import { type Stack, startStack, waitFor } from "../helpers/stack.ts";

const MODEL = "tollgate-mock";

async function withClient(
  test: (stack: Stack, client: OpenAI, keyId: string, secret: string) => Promise<void>,
) {
  const stack = await startStack();
  try {
    const { secret, keyId } = await stack.createKey();
    await test(stack, stack.openai(secret), keyId, secret);
  } finally {
    await stack.close();
  }
}

/** A second mock model `other-mock` (named `org/other` too, an id with a slash) and an alias `fast`. */
async function addModelsAndAlias(stack: Stack, client: OpenAI) {
  for (const name of ["other-mock", "org/other"]) {
    const model = await stack.graphql(
      `mutation ($name: String!) {
        upsertModel(input: { name: $name, provider: "mock", upstreamName: "mock-2", inputPrice: "1", outputPrice: "2" }) { __typename }
      }`,
      { name },
    );
    assert.deepEqual(model.data, { upsertModel: { __typename: "Model" } }, JSON.stringify(model));
  }
  await stack.database.db.db.insertInto("routes")
    .values({ name: "fast", targets: ["other-mock", MODEL] }).execute();
  await waitFor(async () => (await ids(client)).length === 4);
}

async function ids(client: OpenAI): Promise<string[]> {
  const list = await client.models.list();
  return list.data.map((m) => m.id);
}

async function refusal(promise: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  const error = await promise.then(() => null, (e) => e);
  assert.ok(error instanceof OpenAI.APIError, `expected an APIError, got ${error}`);
  return error;
}

Deno.test("models are listed with their provider, aliases as owned by tollgate, sorted", async () => {
  await withClient(async (stack, client) => {
    await addModelsAndAlias(stack, client);
    const list = await client.models.list();
    assert.deepEqual(list.data.map((m) => [m.id, m.object, m.owned_by]), [
      ["fast", "model", "tollgate"],
      ["org/other", "model", "mock"],
      ["other-mock", "model", "mock"],
      [MODEL, "model", "mock"],
    ]);
    for (const model of list.data) assert.ok(Number.isInteger(model.created) && model.created > 0);

    // A disabled alias is no longer listed.
    await stack.database.db.db.updateTable("routes").set({ status: "disabled" })
      .where("name", "=", "fast").execute();
    await waitFor(async () => !(await ids(client)).includes("fast"));
  });
});

Deno.test("a key with an allowlist sees only the models and aliases on it", async () => {
  await withClient(async (stack, client, keyId) => {
    await addModelsAndAlias(stack, client);
    await stack.database.db.db.updateTable("api_keys").set({ allowed_models: ["fast", MODEL] })
      .where("id", "=", keyId).execute();
    await waitFor(async () => (await ids(client)).join() === ["fast", MODEL].join());

    // Another key of the same gateway still sees everything.
    const other = stack.openai((await stack.createKey({ accountName: "Other" })).secret);
    assert.deepEqual(await ids(other), ["fast", "org/other", "other-mock", MODEL]);
  });
});

Deno.test("a model or an alias is retrieved by id; one absent or not allowed is a 404", async () => {
  await withClient(async (stack, client, keyId) => {
    await addModelsAndAlias(stack, client);
    const { data: model, response } = await client.models.retrieve(MODEL).withResponse();
    assert.deepEqual([model.id, model.object, model.owned_by], [MODEL, "model", "mock"]);
    assert.match(response.headers.get("x-request-id")!, /^req_[0-9a-f]{32}$/);
    const alias = await client.models.retrieve("fast");
    assert.deepEqual([alias.id, alias.owned_by], ["fast", "tollgate"]);
    // The client escapes the slash; the gateway unescapes it.
    const slashed = await client.models.retrieve("org/other");
    assert.equal(slashed.id, "org/other");

    const missing = await refusal(client.models.retrieve("no-such-model"));
    assert.ok(missing instanceof OpenAI.NotFoundError);
    assert.equal(missing.code, "model_not_found");
    assert.equal(missing.param, "model");
    assert.equal(missing.headers?.get("x-should-retry"), "false");

    await stack.database.db.db.updateTable("api_keys").set({ allowed_models: ["fast"] })
      .where("id", "=", keyId).execute();
    await waitFor(async () => (await ids(client)).join() === "fast");
    const hidden = await refusal(client.models.retrieve(MODEL));
    assert.equal(hidden.status, 404, "a model outside the allowlist is not revealed");
    assert.equal(hidden.code, "model_not_found");
    assert.equal((await client.models.retrieve("fast")).id, "fast");
  });
});

Deno.test("model routes ask for a key and accept only GET", async () => {
  await withClient(async (stack) => {
    const anonymous = await fetch(`${stack.gatewayUrl}/v1/models/${MODEL}`);
    assert.equal(anonymous.status, 401);
    await anonymous.body?.cancel();
    const post = await fetch(`${stack.gatewayUrl}/v1/models/${MODEL}`, { method: "POST" });
    assert.equal(post.status, 405);
    assert.equal((await post.json()).error.code, "method_not_allowed");
  });
});

/** The headers of Anthropic's TypeScript SDK 1.x and of the 0.x SDKs, for `secret`. */
function sdk1(secret: string): Record<string, string> {
  return { "anthropic-version": "2026-10-21", authorization: `Bearer ${secret}` };
}

function sdk0(secret: string): Record<string, string> {
  return { "anthropic-version": "2023-06-01", "x-api-key": secret };
}

interface AnthropicPage {
  data: Record<string, unknown>[];
  has_more: boolean;
  first_id: string | null;
  last_id: string | null;
}

/** GET `path` with `headers`: the status, the headers and the JSON body. */
async function get(stack: Stack, path: string, headers: Record<string, string>) {
  const response = await fetch(`${stack.gatewayUrl}${path}`, { headers });
  // deno-lint-ignore no-explicit-any
  return { status: response.status, headers: response.headers, body: await response.json() as any };
}

/** The ids of every page of `limit`, following `after_id` as the SDK does. */
async function pagedIds(stack: Stack, headers: Record<string, string>, limit: number) {
  const ids: string[] = [];
  let after = "";
  for (;;) {
    const page: AnthropicPage =
      (await get(stack, `/v1/models?limit=${limit}${after}`, headers)).body;
    ids.push(...page.data.map((m) => m.id as string));
    if (!page.has_more) return ids;
    assert.equal(page.last_id, page.data.at(-1)!.id);
    after = `&after_id=${encodeURIComponent(page.last_id!)}`;
  }
}

const RFC_3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;

Deno.test("Anthropic clients get Anthropic's model objects, newest first, in cursor pages", async () => {
  await withClient(async (stack, client, _keyId, secret) => {
    await addModelsAndAlias(stack, client);
    const { status, headers, body } = await get(stack, "/v1/models", sdk1(secret));
    assert.equal(status, 200);
    assert.match(headers.get("request-id")!, /^req_[0-9a-f]{32}$/);
    assert.equal(headers.get("x-request-id"), headers.get("request-id"));
    const page: AnthropicPage = body;
    assert.deepEqual(page.data.map((m) => m.id).sort(), ["fast", "org/other", "other-mock", MODEL]);
    for (const model of page.data) {
      assert.deepEqual(Object.keys(model).sort(), [
        "capabilities",
        "created_at",
        "deprecated_at",
        "display_name",
        "id",
        "lifecycle",
        "line",
        "max_input_tokens",
        "max_tokens",
        "retires_at",
        "type",
      ]);
      assert.equal(model.type, "model");
      assert.equal(model.display_name, model.id);
      assert.match(model.created_at as string, RFC_3339);
      assert.equal(model.lifecycle, "active");
    }
    const created = page.data.map((m) => Date.parse(m.created_at as string));
    assert.deepEqual(created, [...created].sort((a, b) => b - a), "newest first");
    const order = page.data.map((m) => m.id as string);
    assert.deepEqual([page.has_more, page.first_id, page.last_id], [false, order[0], order[3]]);

    // A 0.x client sees the same; pages of one, then of three, give the same order.
    assert.deepEqual((await get(stack, "/v1/models", sdk0(secret))).body, body);
    assert.deepEqual(await pagedIds(stack, sdk1(secret), 1), order);
    assert.deepEqual(await pagedIds(stack, sdk0(secret), 3), order);

    // before_id pages backwards: the `limit` models just before it.
    const before = (await get(stack, `/v1/models?limit=2&before_id=${order[3]}`, sdk1(secret)))
      .body as AnthropicPage;
    assert.deepEqual(before.data.map((m) => m.id), [order[1], order[2]]);
    assert.deepEqual([before.has_more, before.first_id, before.last_id], [
      true,
      order[1],
      order[2],
    ]);
    const none = (await get(stack, `/v1/models?before_id=${order[0]}`, sdk1(secret)))
      .body as AnthropicPage;
    assert.deepEqual(none, { data: [], has_more: false, first_id: null, last_id: null });
  });
});

Deno.test("Anthropic's TypeScript SDK pages through the models and retrieves one", async () => {
  await withClient(async (stack, client, _keyId, secret) => {
    await addModelsAndAlias(stack, client);
    const anthropic = new Anthropic({ apiKey: secret, baseURL: stack.gatewayUrl, maxRetries: 0 });
    const paged: string[] = [];
    for await (const model of anthropic.models.list({ limit: 1 })) paged.push(model.id);
    const page = await anthropic.models.list();
    assert.deepEqual(paged, page.data.map((m) => m.id));
    assert.equal(paged.length, 4);

    const model = await anthropic.models.retrieve("org/other");
    assert.deepEqual([model.type, model.id, model.display_name], [
      "model",
      "org/other",
      "org/other",
    ]);
    const missing = await anthropic.models.retrieve("no-such-model").then(() => null, (e) => e);
    assert.ok(missing instanceof Anthropic.NotFoundError, `expected a 404, got ${missing}`);
  });
});

Deno.test("Anthropic pagination refuses a bad limit or cursor with a 400 naming it", async () => {
  await withClient(async (stack, _client, _keyId, secret) => {
    const headers = sdk1(secret);
    const cases: [string, string][] = [
      ["limit=0", "limit: Input should be greater than or equal to 1"],
      ["limit=1001", "limit: Input should be less than or equal to 1000"],
      ["limit=ten", "limit: Input should be a valid integer"],
      ["after_id=nope", "after_id: no model 'nope' is listed for this key"],
      [`after_id=${MODEL}&before_id=${MODEL}`, "before_id: cannot be combined with after_id"],
    ];
    for (const [query, message] of cases) {
      const { status, body } = await get(stack, `/v1/models?${query}`, headers);
      assert.deepEqual([status, body.error.message], [400, message], query);
    }
    assert.equal((await get(stack, "/v1/models?limit=1000", headers)).status, 200);
  });
});

Deno.test("an Anthropic client retrieves a model or an alias; hidden or absent is a 404", async () => {
  await withClient(async (stack, client, keyId, secret) => {
    await addModelsAndAlias(stack, client);
    const headers = sdk0(secret);
    const model = await get(stack, `/v1/models/${MODEL}`, headers);
    assert.equal(model.status, 200);
    assert.equal(model.headers.get("request-id"), model.headers.get("x-request-id"));
    assert.deepEqual(
      [model.body.type, model.body.id, model.body.display_name, model.body.lifecycle],
      ["model", MODEL, MODEL, "active"],
    );
    assert.match(model.body.created_at, RFC_3339);
    const alias = await get(stack, "/v1/models/fast", headers);
    assert.deepEqual([alias.body.id, alias.body.max_tokens], ["fast", null]);
    assert.equal((await get(stack, "/v1/models/org%2Fother", headers)).body.id, "org/other");
    assert.equal((await get(stack, "/v1/models/no-such-model", headers)).status, 404);

    await stack.database.db.db.updateTable("api_keys").set({ allowed_models: ["fast"] })
      .where("id", "=", keyId).execute();
    await waitFor(async () => (await ids(client)).join() === "fast");
    const listed = (await get(stack, "/v1/models", headers)).body as AnthropicPage;
    assert.deepEqual(listed.data.map((m) => m.id), ["fast"]);
    assert.equal((await get(stack, `/v1/models/${MODEL}`, headers)).status, 404);
  });
});

Deno.test("a version Tollgate does not serve is a 400 naming it; no version means OpenAI's shape", async () => {
  await withClient(async (stack, _client, _keyId, secret) => {
    const headers = { ...sdk1(secret), "anthropic-version": "2023-01-01" };
    for (const path of ["/v1/models", `/v1/models/${MODEL}`]) {
      const { status, body } = await get(stack, path, headers);
      assert.equal(status, 400, path);
      assert.match(body.error.message, /^anthropic-version: "2023-01-01" is not a valid version/);
    }
    const openai = await get(stack, "/v1/models", { authorization: `Bearer ${secret}` });
    assert.equal(openai.body.object, "list");
  });
});

Deno.test("x-api-key wins over Authorization, as at Anthropic; refusals name the header", async () => {
  await withClient(async (stack, _client, _keyId, secret) => {
    const both = { "x-api-key": secret, authorization: "Bearer tg_notakey" };
    assert.equal((await get(stack, "/v1/models", both)).status, 200);

    const cases: [Record<string, string>, string][] = [
      [
        { "x-api-key": "tg_notakey", authorization: `Bearer ${secret}` },
        "Incorrect API key provided in x-api-key: it is not a Tollgate key (tg_...) or it has a typo.",
      ],
      [
        { authorization: "Bearer tg_notakey" },
        "Incorrect API key provided in Authorization: it is not a Tollgate key (tg_...) or it has a typo.",
      ],
      [
        { authorization: `Basic ${btoa(`user:${secret}`)}` },
        "You didn't provide an API key: the Authorization header is not 'Bearer <key>'. Send it as 'Authorization: Bearer tg_...' or 'x-api-key: tg_...'.",
      ],
      [
        {},
        "You didn't provide an API key. Send it as 'Authorization: Bearer tg_...' or 'x-api-key: tg_...'.",
      ],
    ];
    for (const [headers, message] of cases) {
      const { status, body } = await get(stack, "/v1/models", headers);
      assert.deepEqual([status, body.error.message], [401, message], JSON.stringify(headers));
    }
  });
});
