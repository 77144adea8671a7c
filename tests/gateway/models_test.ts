/**
 * GET /v1/models and /v1/models/{id} with the official `openai` client: the
 * models and aliases a key may call, and nothing else.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { type Stack, startStack, waitFor } from "../helpers/stack.ts";

const MODEL = "tollgate-mock";

async function withClient(
  test: (stack: Stack, client: OpenAI, keyId: string) => Promise<void>,
) {
  const stack = await startStack();
  try {
    const { secret, keyId } = await stack.createKey();
    await test(stack, stack.openai(secret), keyId);
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
