/**
 * Routing configuration through GraphQL: model aliases (routes), per-key
 * model allowlists and provider presets, down to what the gateway serves.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { verifyAuditChain } from "../../control/services/audit.ts";
import { ANTHROPIC_BASE_URL, PROVIDER_PRESETS } from "../../schema/provider_presets.ts";
import { type GraphQLResult, type Stack, startStack, waitFor } from "../helpers/stack.ts";

const RESULT_ERRORS = "... on Error { message } ... on InvalidInputError { field }";
const ROUTE_FIELDS = "id name strategy targets timeoutMs status createdAt updatedAt";
const PROVIDER_FIELDS = "name kind baseUrl preset effectiveBaseUrl";
const NO_SUCH_ID = "00000000-0000-4000-8000-000000000000";

interface Result {
  __typename: string;
  message?: string;
  field?: string;
  names?: string[];
}

interface Route {
  id: string;
  name: string;
  strategy: string;
  targets: string[];
  timeoutMs: number | null;
  status: string;
  createdAt: string;
  updatedAt: string;
}

interface Provider {
  name: string;
  kind: string;
  baseUrl: string | null;
  preset: string | null;
  effectiveBaseUrl: string | null;
}

interface ApiKey {
  id: string;
  allowedModels: string[] | null;
}

function dataOf<T>(result: GraphQLResult<T>): T {
  assert.equal(result.status, 200, JSON.stringify(result));
  assert.equal(result.errors, undefined, JSON.stringify(result.errors));
  assert.ok(result.data, "the response has data");
  return result.data;
}

async function upsertRoute(stack: Stack, input: Record<string, unknown>) {
  const result = await stack.graphql<{ upsertRoute: Result & Partial<Route> }>(
    `mutation ($input: UpsertRouteInput!) { upsertRoute(input: $input) {
      __typename ... on Route { ${ROUTE_FIELDS} } ${RESULT_ERRORS}
      ... on UnknownModelsError { field names } } }`,
    { input },
  );
  return dataOf(result).upsertRoute;
}

async function deleteRoute(stack: Stack, name: string) {
  const result = await stack.graphql<{ deleteRoute: Result & Partial<Route> }>(
    `mutation ($name: String!) { deleteRoute(input: { name: $name }) {
      __typename ... on Route { ${ROUTE_FIELDS} } ${RESULT_ERRORS} } }`,
    { name },
  );
  return dataOf(result).deleteRoute;
}

async function listRoutes(stack: Stack): Promise<Route[]> {
  const result = await stack.graphql<{ routes: { edges: { node: Route }[] } }>(
    `{ routes { edges { node { ${ROUTE_FIELDS} } } } }`,
  );
  return dataOf(result).routes.edges.map((edge) => edge.node);
}

async function upsertProvider(stack: Stack, input: Record<string, unknown>) {
  const result = await stack.graphql<{ upsertProvider: Result & Partial<Provider> }>(
    `mutation ($input: UpsertProviderInput!) { upsertProvider(input: $input) {
      __typename ... on Provider { ${PROVIDER_FIELDS} } ${RESULT_ERRORS} } }`,
    { input },
  );
  return dataOf(result).upsertProvider;
}

async function createApiKey(stack: Stack, accountId: string, allowedModels: unknown) {
  const result = await stack.graphql<
    { createApiKey: Result & { secret?: string; apiKey?: ApiKey } }
  >(
    `mutation ($input: CreateApiKeyInput!) { createApiKey(input: $input) {
      __typename ... on CreatedApiKey { secret apiKey { id allowedModels } } ${RESULT_ERRORS} } }`,
    { input: { accountId, name: "limited", allowedModels } },
  );
  return dataOf(result).createApiKey;
}

async function setAllowedModels(stack: Stack, id: string, allowedModels: unknown) {
  const result = await stack.graphql<{ setApiKeyAllowedModels: Result & Partial<ApiKey> }>(
    `mutation ($input: SetApiKeyAllowedModelsInput!) { setApiKeyAllowedModels(input: $input) {
      __typename ... on ApiKey { id allowedModels } ${RESULT_ERRORS} } }`,
    { input: { id, allowedModels } },
  );
  return dataOf(result).setApiKeyAllowedModels;
}

/** The HTTP status the gateway answers a chat completion for `model` with. */
async function chatStatus(stack: Stack, secret: string, model: string): Promise<number> {
  const response = await fetch(`${stack.gatewayUrl}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
    body: JSON.stringify({ model, messages: [{ role: "user", content: "ping" }] }),
  });
  await response.body?.cancel();
  return response.status;
}

async function auditActions(stack: Stack): Promise<string[]> {
  const rows = await stack.database.db.db.selectFrom("audit_log").select("action").orderBy("id")
    .execute();
  return rows.map((r) => r.action);
}

Deno.test("upsertRoute creates and updates a route by name, routes lists it, deleteRoute removes it", async () => {
  const stack = await startStack();
  try {
    assert.deepEqual(await listRoutes(stack), []);
    const created = await upsertRoute(stack, {
      name: " tollgate-fast ",
      targets: ["tollgate-mock"],
    });
    assert.equal(created.__typename, "Route", JSON.stringify(created));
    assert.equal(created.name, "tollgate-fast", "the name is trimmed");
    assert.deepEqual(created.targets, ["tollgate-mock"]);
    assert.equal(created.strategy, "fallback", "the default strategy");
    assert.equal(created.timeoutMs, null);
    assert.equal(created.status, "active");
    assert.ok(Math.abs(Date.parse(created.createdAt!) - Date.now()) < 60_000);

    const updated = await upsertRoute(stack, {
      name: "tollgate-fast",
      targets: ["tollgate-mock"],
      strategy: "cheapest",
      timeoutMs: 600_000,
      status: "disabled",
    });
    assert.equal(updated.__typename, "Route", JSON.stringify(updated));
    assert.equal(updated.id, created.id, "the same route, updated");
    assert.equal(updated.strategy, "cheapest");
    assert.equal(updated.timeoutMs, 600_000);
    assert.equal(updated.status, "disabled");
    assert.ok(Date.parse(updated.updatedAt!) >= Date.parse(created.updatedAt!));

    // Omitting status keeps it; omitting strategy and timeoutMs resets them.
    const again = await upsertRoute(stack, { name: "tollgate-fast", targets: ["tollgate-mock"] });
    assert.deepEqual(
      [again.status, again.strategy, again.timeoutMs],
      ["disabled", "fallback", null],
    );

    const other = await upsertRoute(stack, { name: "a-alias", targets: ["tollgate-mock"] });
    assert.equal(other.__typename, "Route");
    assert.deepEqual(
      (await listRoutes(stack)).map((r) => [r.name, r.status]),
      [["a-alias", "active"], ["tollgate-fast", "disabled"]],
      "by name",
    );

    const deleted = await deleteRoute(stack, "tollgate-fast");
    assert.equal(deleted.__typename, "Route");
    assert.equal(deleted.id, created.id);
    assert.deepEqual((await listRoutes(stack)).map((r) => r.name), ["a-alias"]);

    const missing = await deleteRoute(stack, "tollgate-fast");
    assert.equal(missing.__typename, "NotFoundError");
    assert.match(missing.message!, /No route named "tollgate-fast"/);
  } finally {
    await stack.close();
  }
});

Deno.test("upsertRoute refuses a model's name, bad target lists and timeouts with typed errors", async () => {
  const stack = await startStack();
  try {
    const base = { name: "alias", targets: ["tollgate-mock"] };
    const refusals: [Record<string, unknown>, string, RegExp][] = [
      [{ name: "tollgate-mock" }, "name", /is a model's name; an alias would shadow the model/],
      [{ name: " " }, "name", /^name: must not be empty/],
      [{ targets: [] }, "targets", /^targets: must name at least one model/],
      [
        { targets: Array.from({ length: 17 }, () => "tollgate-mock") },
        "targets",
        /at most 16/,
      ],
      [
        { targets: ["tollgate-mock", "tollgate-mock"] },
        "targets",
        /must not name a model twice \("tollgate-mock"\)/,
      ],
      [{ targets: ["tollgate-mock", ""] }, "targets.1", /must not be empty/],
      [{ timeoutMs: 0 }, "timeoutMs", /at least 1/],
      [{ timeoutMs: 600_001 }, "timeoutMs", /at most 600000/],
    ];
    for (const [input, field, message] of refusals) {
      const refused = await upsertRoute(stack, { ...base, ...input });
      assert.equal(refused.__typename, "InvalidInputError", JSON.stringify(input));
      assert.equal(refused.field, field, JSON.stringify(input));
      assert.match(refused.message!, message);
    }

    const unknown = await upsertRoute(stack, {
      ...base,
      targets: ["gpt-nowhere", "tollgate-mock", "claude-nowhere"],
    });
    assert.equal(unknown.__typename, "UnknownModelsError");
    assert.equal(unknown.field, "targets");
    assert.deepEqual(unknown.names, ["gpt-nowhere", "claude-nowhere"]);
    assert.match(unknown.message!, /"gpt-nowhere", "claude-nowhere"/);

    // A route's target must be a model, not another alias.
    assert.equal((await upsertRoute(stack, base)).__typename, "Route");
    const chained = await upsertRoute(stack, { name: "alias-2", targets: ["alias"] });
    assert.equal(chained.__typename, "UnknownModelsError");
    assert.deepEqual(chained.names, ["alias"]);

    // Nor may a model take an alias's name: one namespace, either way round.
    const shadowing = await stack.graphql<{ upsertModel: Result }>(`mutation {
      upsertModel(input: { name: "alias", provider: "mock", upstreamName: "x", inputPrice: "0", outputPrice: "0" }) {
        __typename ${RESULT_ERRORS}
      }
    }`);
    assert.equal(shadowing.data?.upsertModel.__typename, "InvalidInputError");
    assert.match(shadowing.data!.upsertModel.message!, /is an alias's name/);

    assert.deepEqual((await listRoutes(stack)).map((r) => r.name), ["alias"]);
    assert.deepEqual(await auditActions(stack), ["route.create"], "refusals leave no audit row");
  } finally {
    await stack.close();
  }
});

Deno.test("an alias is served by the gateway with its target model, and says so in headers", async () => {
  const stack = await startStack();
  try {
    const { secret } = await stack.createKey();
    const route = await upsertRoute(stack, { name: "tollgate-fast", targets: ["tollgate-mock"] });
    assert.equal(route.__typename, "Route");
    await waitFor(() => stack.gateway.policy.route("tollgate-fast") !== undefined);

    const { data, response } = await stack.openai(secret).chat.completions.create({
      model: "tollgate-fast",
      messages: [{ role: "user", content: "Say hello" }],
    }).withResponse();
    assert.match(data.choices[0]!.message.content!, /You said: "Say hello"/);
    assert.equal(response.headers.get("x-tollgate-route"), "tollgate-fast");
    assert.equal(response.headers.get("x-tollgate-provider"), "mock");

    // Deleted, the alias is gone from the gateway too.
    assert.equal((await deleteRoute(stack, "tollgate-fast")).__typename, "Route");
    await waitFor(async () => (await chatStatus(stack, secret, "tollgate-fast")) === 404);
  } finally {
    await stack.close();
  }
});

Deno.test("a key's allowedModels lets it call only the names listed, until the list is cleared", async () => {
  const stack = await startStack();
  try {
    const { accountId, keyId: otherKeyId } = await stack.createKey();
    assert.equal(
      (await upsertRoute(stack, { name: "tollgate-fast", targets: ["tollgate-mock"] })).__typename,
      "Route",
    );
    const created = await createApiKey(stack, accountId, [
      "tollgate-fast",
      " tollgate-fast ",
      "created-later",
    ]);
    assert.equal(created.__typename, "CreatedApiKey", JSON.stringify(created));
    assert.deepEqual(
      created.apiKey!.allowedModels,
      ["tollgate-fast", "created-later"],
      "trimmed, without duplicates; an unknown name is accepted",
    );
    const secret = created.secret!;
    const keyId = created.apiKey!.id;
    await waitFor(async () => (await chatStatus(stack, secret, "tollgate-fast")) === 200);

    const client = stack.openai(secret);
    const { response } = await client.chat.completions.create({
      model: "tollgate-fast",
      messages: [{ role: "user", content: "hi" }],
    }).withResponse();
    assert.equal(response.headers.get("x-tollgate-route"), "tollgate-fast");
    const refused = await client.chat.completions.create({
      model: "tollgate-mock",
      messages: [{ role: "user", content: "hi" }],
    }).then(() => null, (error: unknown) => error);
    assert.ok(refused instanceof OpenAI.PermissionDeniedError, String(refused));
    assert.equal(refused.status, 403);
    assert.equal(refused.code, "model_not_allowed");

    const listed = await stack.graphql<{ apiKeys: { edges: { node: ApiKey }[] } }>(
      "query ($a: ID!) { apiKeys(accountId: $a) { edges { node { id allowedModels } } } }",
      { a: accountId },
    );
    assert.deepEqual(
      new Map(dataOf(listed).apiKeys.edges.map(({ node: k }) => [k.id, k.allowedModels])),
      new Map([[keyId, ["tollgate-fast", "created-later"]], [otherKeyId, null]]),
      "null: every model",
    );

    const swapped = await setAllowedModels(stack, keyId, ["tollgate-mock"]);
    assert.deepEqual(swapped.allowedModels, ["tollgate-mock"]);
    await waitFor(async () => (await chatStatus(stack, secret, "tollgate-fast")) === 403);
    assert.equal(await chatStatus(stack, secret, "tollgate-mock"), 200);

    const cleared = await setAllowedModels(stack, keyId, null);
    assert.equal(cleared.__typename, "ApiKey");
    assert.equal(cleared.allowedModels, null);
    await waitFor(async () => (await chatStatus(stack, secret, "tollgate-fast")) === 200);
    assert.equal(await chatStatus(stack, secret, "tollgate-mock"), 200);

    const refusals: [unknown, string, RegExp][] = [
      [[""], "allowedModels.0", /must not be empty/],
      [Array.from({ length: 201 }, (_, i) => `m${i}`), "allowedModels", /at most 200 entries/],
    ];
    for (const [allowedModels, field, message] of refusals) {
      for (
        const result of [
          await setAllowedModels(stack, keyId, allowedModels),
          await createApiKey(stack, accountId, allowedModels),
        ]
      ) {
        assert.equal(result.__typename, "InvalidInputError", JSON.stringify(result));
        assert.equal(result.field, field);
        assert.match(result.message!, message);
      }
    }
    assert.equal(
      (await setAllowedModels(stack, keyId, Array.from({ length: 200 }, (_, i) => `m${i}`)))
        .__typename,
      "ApiKey",
      "200 names is allowed",
    );
    for (const id of [NO_SUCH_ID, "not-a-uuid"]) {
      const missing = await setAllowedModels(stack, id, ["tollgate-mock"]);
      assert.equal(missing.__typename, "NotFoundError");
      assert.match(missing.message!, new RegExp(id));
    }
  } finally {
    await stack.close();
  }
});

Deno.test("upsertProvider takes a preset instead of a baseUrl, for openai_compat only, and shows effectiveBaseUrl", async () => {
  const stack = await startStack();
  try {
    const deepseek = await upsertProvider(stack, {
      name: "deepseek",
      kind: "openai_compat",
      preset: "deepseek",
      apiKey: "sk-deepseek",
    });
    assert.equal(deepseek.__typename, "Provider", JSON.stringify(deepseek));
    assert.equal(deepseek.preset, "deepseek");
    assert.equal(deepseek.baseUrl, null);
    assert.equal(deepseek.effectiveBaseUrl, PROVIDER_PRESETS.deepseek.baseUrl);

    const proxied = await upsertProvider(stack, {
      name: "deepseek",
      kind: "openai_compat",
      preset: "deepseek",
      baseUrl: "https://proxy.example.com/v1",
    });
    assert.equal(proxied.effectiveBaseUrl, "https://proxy.example.com/v1", "baseUrl wins");

    const plain = await upsertProvider(stack, {
      name: "deepseek",
      kind: "openai_compat",
      baseUrl: "https://plain.example.com/v1",
    });
    assert.equal(plain.preset, null, "an update without preset clears it");

    const anthropic = await upsertProvider(stack, { name: "claude", kind: "anthropic" });
    assert.equal(anthropic.__typename, "Provider", JSON.stringify(anthropic));
    assert.equal(anthropic.effectiveBaseUrl, ANTHROPIC_BASE_URL);

    const refusals: [Record<string, unknown>, string, RegExp][] = [
      [{ kind: "openai_compat" }, "baseUrl", /required for openai_compat .* unless a preset/],
      [{ kind: "anthropic", preset: "openai" }, "preset", /only valid for openai_compat/],
      [{ kind: "mock", preset: "qwen" }, "preset", /only valid for openai_compat/],
    ];
    for (const [input, field, message] of refusals) {
      const refused = await upsertProvider(stack, { name: "refused", ...input });
      assert.equal(refused.__typename, "InvalidInputError", JSON.stringify(input));
      assert.equal(refused.field, field);
      assert.match(refused.message!, message);
    }
    const badPreset = await stack.graphql(
      `mutation { upsertProvider(input: { name: "x", kind: openai_compat, preset: nobody }) {
        __typename } }`,
    );
    assert.ok(badPreset.errors?.[0]?.message.includes("ProviderPreset"), JSON.stringify(badPreset));

    const listed = await stack.graphql<{ providers: { edges: { node: Provider }[] } }>(
      `{ providers { edges { node { ${PROVIDER_FIELDS} } } } }`,
    );
    assert.deepEqual(
      dataOf(listed).providers.edges.map(({ node: p }) => [p.name, p.preset, p.effectiveBaseUrl]),
      [
        ["claude", null, ANTHROPIC_BASE_URL],
        ["deepseek", null, "https://plain.example.com/v1"],
        ["mock", null, null],
      ],
    );
  } finally {
    await stack.close();
  }
});

Deno.test("every routing mutation leaves an audit row in the chain, with what changed", async () => {
  const stack = await startStack();
  try {
    const { accountId, keyId } = await stack.createKey();
    await upsertProvider(stack, { name: "qwen", kind: "openai_compat", preset: "qwen" });
    await upsertRoute(stack, { name: "fast", targets: ["tollgate-mock"] });
    await upsertRoute(stack, { name: "fast", targets: ["tollgate-mock"], timeoutMs: 5000 });
    await setAllowedModels(stack, keyId, ["fast"]);
    await createApiKey(stack, accountId, ["fast"]);
    await deleteRoute(stack, "fast");

    const db = stack.database.db.db;
    const rows = await db.selectFrom("audit_log").selectAll().orderBy("id").execute();
    assert.deepEqual(rows.map((r) => [r.action, r.target_type]), [
      ["account.create", "account"],
      ["account.adjust_balance", "account"], // the test credit of stack.createKey
      ["api_key.create", "api_key"],
      ["provider.create", "provider"],
      ["route.create", "route"],
      ["route.update", "route"],
      ["api_key.set_allowed_models", "api_key"],
      ["api_key.create", "api_key"],
      ["route.delete", "route"],
    ]);
    const diff = (i: number) => rows[i]!.diff;
    assert.equal(diff(3).preset, "qwen");
    assert.deepEqual(diff(4), {
      name: "fast",
      strategy: "fallback",
      targets: ["tollgate-mock"],
      timeoutMs: null,
      status: "active",
    });
    assert.equal(diff(5).timeoutMs, 5000);
    assert.deepEqual(diff(6), { allowedModels: [null, ["fast"]] });
    assert.equal(rows[6]!.target_id, keyId);
    assert.deepEqual(diff(7).allowedModels, ["fast"]);
    assert.equal(rows[8]!.target_id, rows[4]!.target_id, "the route deleted is the one created");
    for (const row of rows) assert.equal(row.actor, "admin:configured");
    assert.deepEqual(await verifyAuditChain(db), { ok: true, rows: rows.length });
  } finally {
    await stack.close();
  }
});
