/**
 * The control plane as an operator meets it: GraphQL over HTTP against a
 * running server on a fresh database, with the gateway running beside it.
 */
import assert from "node:assert/strict";
import { sql } from "kysely";
import { ensureAdminToken } from "../../control/auth.ts";
import { verifyAuditChain } from "../../control/services/audit.ts";
import { ADMIN_TOKEN_PREFIX, generateSecret } from "../../schema/keys.ts";
import { deriveServerKeys } from "../../schema/secrets.ts";
import { startFakeUpstream } from "../helpers/fake_upstream.ts";
import {
  ADMIN_TOKEN,
  type GraphQLResult,
  type Stack,
  startStack,
  TEST_SECRET,
  waitFor,
} from "../helpers/stack.ts";

/** What every union result can be asked for. */
const RESULT_ERRORS = "... on Error { message } ... on InvalidInputError { field }";

interface Result {
  __typename: string;
  message?: string;
  field?: string;
}

interface AccountResult extends Result {
  id: string;
  name: string;
  status: string;
  balance: string;
  createdAt: string;
}

interface ApiKey {
  id: string;
  accountId: string;
  name: string;
  prefix: string;
  last4: string;
  scopes: string[];
  status: string;
  createdAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

interface ProviderResult extends Result {
  id: string;
  name: string;
  kind: string;
  baseUrl: string | null;
  hasCredential: boolean;
  credentialLast4: string | null;
}

interface ModelResult extends Result {
  name: string;
  upstreamName: string;
  inputPrice: string;
  outputPrice: string;
  cachedInputPrice: string;
  provider: { name: string };
}

interface UsageEvent {
  requestId: string;
  accountId: string;
  apiKeyId: string;
  model: string;
  providerName: string | null;
  upstreamModel: string | null;
  status: number;
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
  cost: string;
  estimated: boolean;
}

const ACCOUNT_FIELDS = "__typename ... on Account { id name status balance createdAt }";
const API_KEY_FIELDS =
  "id accountId name prefix last4 scopes status createdAt lastUsedAt revokedAt";
const PROVIDER_FIELDS =
  "__typename ... on Provider { id name kind baseUrl hasCredential credentialLast4 }";
const MODEL_FIELDS = "__typename ... on Model { name upstreamName inputPrice outputPrice " +
  "cachedInputPrice provider { name } }";
const USAGE_FIELDS = "requestId accountId apiKeyId model providerName upstreamModel status " +
  "promptTokens completionTokens totalTokens cost estimated";

/** The data of a response that must have succeeded. */
function dataOf<T>(result: GraphQLResult<T>): T {
  assert.equal(result.status, 200, JSON.stringify(result));
  assert.equal(result.errors, undefined, JSON.stringify(result.errors));
  assert.ok(result.data, "the response has data");
  return result.data;
}

async function createAccount(stack: Stack, name: string): Promise<AccountResult> {
  const result = await stack.graphql<{ createAccount: AccountResult }>(
    `mutation ($name: String!) { createAccount(input: { name: $name }) {
      ${ACCOUNT_FIELDS} ${RESULT_ERRORS} } }`,
    { name },
  );
  return dataOf(result).createAccount;
}

async function createApiKey(
  stack: Stack,
  accountId: string,
  input: Record<string, unknown> = {},
): Promise<Result & { secret?: string; apiKey?: ApiKey }> {
  const result = await stack.graphql<
    { createApiKey: Result & { secret?: string; apiKey?: ApiKey } }
  >(
    `mutation ($input: CreateApiKeyInput!) { createApiKey(input: $input) {
      __typename ... on CreatedApiKey { secret apiKey { ${API_KEY_FIELDS} } } ${RESULT_ERRORS}
    } }`,
    { input: { accountId, name: "ci", ...input } },
  );
  return dataOf(result).createApiKey;
}

async function revokeApiKey(stack: Stack, id: string): Promise<Result & Partial<ApiKey>> {
  const result = await stack.graphql<{ revokeApiKey: Result & Partial<ApiKey> }>(
    `mutation ($id: ID!) { revokeApiKey(input: { id: $id }) {
      __typename ... on ApiKey { ${API_KEY_FIELDS} } ... on Error { message } } }`,
    { id },
  );
  return dataOf(result).revokeApiKey;
}

async function upsertProvider(
  stack: Stack,
  input: Record<string, unknown>,
): Promise<{ provider: ProviderResult; body: string }> {
  const result = await stack.graphql<{ upsertProvider: ProviderResult }>(
    `mutation ($input: UpsertProviderInput!) { upsertProvider(input: $input) {
      ${PROVIDER_FIELDS} ${RESULT_ERRORS} } }`,
    { input },
  );
  return { provider: dataOf(result).upsertProvider, body: JSON.stringify(result) };
}

async function upsertModel(stack: Stack, input: Record<string, unknown>): Promise<ModelResult> {
  const result = await stack.graphql<{ upsertModel: ModelResult }>(
    `mutation ($input: UpsertModelInput!) { upsertModel(input: $input) {
      ${MODEL_FIELDS} ${RESULT_ERRORS} } }`,
    { input },
  );
  return dataOf(result).upsertModel;
}

type RequestLogs = GraphQLResult<{ requestLogs: { edges: { node: UsageEvent }[] } }>;

async function requestLogs(
  stack: Stack,
  args: { first?: number; accountId?: string } = {},
): Promise<RequestLogs> {
  const { first, accountId } = args;
  return await stack.graphql(
    `query ($first: Int, $accountId: ID) {
      requestLogs(first: $first, filter: { accountId: $accountId }) {
        edges { node { ${USAGE_FIELDS} } } } }`,
    { first, accountId },
  );
}

/** The request logs of a response that must have succeeded. */
function logsOf(result: RequestLogs): UsageEvent[] {
  return dataOf(result).requestLogs.edges.map((edge) => edge.node);
}

interface TypeRef {
  name: string | null;
  ofType?: TypeRef | null;
}

interface SchemaType {
  name: string;
  fields: { name: string; type: TypeRef }[] | null;
}

/** The named type under any NON_NULL and LIST wrappers. */
function namedType(type: TypeRef): string {
  return type.name ?? (type.ofType ? namedType(type.ofType) : "");
}

const NO_SUCH_ID = "00000000-0000-4000-8000-000000000000";

Deno.test("anonymous and wrong-token calls get 401 UNAUTHENTICATED; introspection needs the operator", async () => {
  const stack = await startStack();
  try {
    // A token the database stores (only its hash) signs in like the configured one.
    const { generated } = await ensureAdminToken(
      stack.database.db.db,
      deriveServerKeys(TEST_SECRET),
    );
    assert.ok(generated);

    const query = "{ accounts { edges { node { id } } } }";
    const introspection = "{ __schema { queryType { name } types { name } } }";
    const refused = [
      ["anonymous", null],
      ["a wrong token", "not-the-admin-token-0123456789"],
      [
        "a well-formed admin token that was never issued",
        generateSecret(ADMIN_TOKEN_PREFIX).secret,
      ],
      ["an inference key's format", generateSecret().secret],
    ] as const;
    for (const [who, token] of refused) {
      for (const text of [query, introspection]) {
        const result = await stack.graphql(text, {}, token);
        assert.equal(result.status, 401, `${who}: ${text}`);
        assert.equal(result.data ?? null, null, `${who} gets no data`);
        assert.equal(result.errors?.[0]?.extensions?.code, "UNAUTHENTICATED", who);
        assert.match(result.headers.get("www-authenticate") ?? "", /^Bearer/);
      }
    }

    for (const token of [undefined, generated]) {
      const accounts = await stack.graphql<{ accounts: { edges: unknown[] } }>(query, {}, token);
      assert.deepEqual(dataOf(accounts).accounts.edges, []);
      const schema = await stack.graphql<
        { __schema: { queryType: { name: string }; types: { name: string }[] } }
      >(introspection, {}, token);
      const { __schema } = dataOf(schema);
      assert.equal(__schema.queryType.name, "Query");
      assert.ok(__schema.types.some((t) => t.name === "ApiKey"));
    }
  } finally {
    await stack.close();
  }
});

Deno.test("createAccount returns the account, refuses a bad name naming the field, and accounts lists it", async () => {
  const stack = await startStack();
  try {
    const account = await createAccount(stack, "  Acme Corp  ");
    assert.equal(account.__typename, "Account");
    assert.equal(account.name, "Acme Corp", "the name is trimmed");
    assert.equal(account.status, "active");
    assert.equal(account.balance, "0.00000000");
    assert.ok(Math.abs(Date.parse(account.createdAt) - Date.now()) < 60_000);

    const longest = await createAccount(stack, "x".repeat(200));
    assert.equal(longest.__typename, "Account", "200 characters is allowed");

    for (const name of ["", "   ", "x".repeat(201), "two\nlines"]) {
      const refused = await createAccount(stack, name);
      assert.equal(refused.__typename, "InvalidInputError", JSON.stringify(name));
      assert.equal(refused.field, "name");
      assert.match(refused.message!, /^name: /);
    }

    const listed = await stack.graphql<{ accounts: { edges: { node: AccountResult }[] } }>(
      "{ accounts { edges { node { id name status balance createdAt } } } }",
    );
    assert.deepEqual(
      dataOf(listed).accounts.edges.map(({ node: a }) => [a.id, a.name]),
      [[account.id, "Acme Corp"], [longest.id, "x".repeat(200)]],
      "oldest first, and nothing refused was created",
    );
  } finally {
    await stack.close();
  }
});

Deno.test("createApiKey shows the secret once; apiKeys shows only its prefix and last 4, and when it was last used", async () => {
  const stack = await startStack();
  try {
    const account = await createAccount(stack, "Acme");
    const credited = await stack.graphql(
      `mutation ($id: ID!) { adjustBalance(input: { accountId: $id, amount: "1", reason: "t" }) { __typename } }`,
      { id: account.id },
    );
    assert.deepEqual(credited.data, { adjustBalance: { __typename: "BalanceAdjustment" } });
    const created = await createApiKey(stack, account.id);
    assert.equal(created.__typename, "CreatedApiKey");
    const secret = created.secret!;
    assert.match(secret, /^tg_[0-9A-Za-z]{38}$/);
    const apiKey = created.apiKey!;
    assert.equal(apiKey.accountId, account.id);
    assert.deepEqual(apiKey.scopes, ["inference"]);
    assert.equal(apiKey.status, "active");

    const stored = await stack.database.db.db.selectFrom("api_keys").select("key_hash")
      .where("id", "=", apiKey.id).executeTakeFirstOrThrow();
    const listKeys = async () => {
      const result = await stack.graphql<{ apiKeys: { edges: { node: ApiKey }[] } }>(
        `query ($accountId: ID!) {
          apiKeys(accountId: $accountId) { edges { node { ${API_KEY_FIELDS} } } } }`,
        { accountId: account.id },
      );
      const body = JSON.stringify(result);
      assert.ok(!body.includes(secret), "apiKeys never returns the secret");
      assert.ok(!body.includes(secret.slice(3, 35)), "nor its random part");
      assert.ok(!body.includes(stored.key_hash), "nor its hash");
      const keys = dataOf(result).apiKeys.edges.map((edge) => edge.node);
      assert.equal(keys.length, 1);
      return keys[0]!;
    };

    const listed = await listKeys();
    assert.equal(listed.id, apiKey.id);
    assert.ok(secret.startsWith(listed.prefix) && listed.prefix.length > 3);
    assert.equal(listed.last4, secret.slice(-4));
    assert.equal(listed.lastUsedAt, null, "never used yet");

    // No text field anywhere in the schema could return a key's secret or
    // hash, except the one-time CreatedApiKey.secret (and RotatedApiKey's, a
    // rotation's new secret); an ApiKey's text is its name, prefix, last 4 and
    // allowlists only.
    const schema = await stack.graphql<{ __schema: { types: SchemaType[] } }>(
      `{ __schema { types { name fields { name type { name ofType { name ofType { name ofType { name } } } } } } } }`,
    );
    const textFields = dataOf(schema).__schema.types.flatMap((type) =>
      (type.fields ?? []).filter((f) => ["String", "ID"].includes(namedType(f.type)))
        .map((f) => `${type.name}.${f.name}`)
    );
    assert.deepEqual(
      textFields.filter((f) => /secret|hash|ciphertext|\.(api)?key$|\.token$/i.test(f)).sort(),
      [
        // Hash-chain links of the audit log: public digests, not secrets.
        "AuditChainHead.hash",
        "AuditEntry.hash",
        "AuditEntry.prevHash",
        "CreatedApiKey.secret",
        "RotatedApiKey.secret",
      ],
    );
    assert.deepEqual(textFields.filter((f) => f.startsWith("ApiKey.")).sort(), [
      "ApiKey.accountId",
      "ApiKey.allowedIps",
      "ApiKey.allowedModels",
      "ApiKey.id",
      "ApiKey.last4",
      "ApiKey.name",
      "ApiKey.prefix",
    ]);

    // The gateway learns of the key through NOTIFY.
    await waitFor(async () => {
      const r = await fetch(`${stack.gatewayUrl}/v1/models`, {
        headers: { authorization: `Bearer ${secret}` },
      });
      await r.body?.cancel();
      return r.status === 200;
    });
    const before = Date.now();
    await stack.openai(secret).chat.completions.create({
      model: "tollgate-mock",
      messages: [{ role: "user", content: "hi" }],
    });
    await stack.gateway.usage.flush();
    const used = await listKeys();
    assert.ok(used.lastUsedAt, "lastUsedAt is set once the key is used");
    assert.ok(Date.parse(used.lastUsedAt) >= before - 1_000);
  } finally {
    await stack.close();
  }
});

Deno.test("createApiKey refuses bad input and unknown accounts; unknown keys are NotFoundError; revoking twice is harmless", async () => {
  const stack = await startStack();
  try {
    const account = await createAccount(stack, "Acme");
    const refusals: [Record<string, unknown>, string][] = [
      [{ name: " " }, "name"],
      [{ scopes: [] }, "scopes"],
      [{ expiresAt: new Date(Date.now() - 60_000).toISOString() }, "expiresAt"],
    ];
    for (const [input, field] of refusals) {
      const refused = await createApiKey(stack, account.id, input);
      assert.equal(refused.__typename, "InvalidInputError", JSON.stringify(input));
      assert.equal(refused.field, field);
    }
    for (const accountId of [NO_SUCH_ID, "not-a-uuid"]) {
      const created = await createApiKey(stack, accountId);
      assert.equal(created.__typename, "NotFoundError", accountId);
      assert.match(created.message!, new RegExp(accountId));
    }
    assert.equal(
      (await stack.database.db.db.selectFrom("api_keys").select("id").execute()).length,
      0,
    );

    for (const id of [NO_SUCH_ID, "not-a-uuid"]) {
      const revoked = await revokeApiKey(stack, id);
      assert.equal(revoked.__typename, "NotFoundError", id);
      assert.match(revoked.message!, new RegExp(id));
    }

    const { apiKey } = await createApiKey(stack, account.id, {
      scopes: ["management", "inference", "management"],
    });
    assert.deepEqual(apiKey!.scopes, ["management", "inference"], "duplicates are dropped");
    const first = await revokeApiKey(stack, apiKey!.id);
    assert.equal(first.__typename, "ApiKey");
    assert.equal(first.status, "revoked");
    assert.ok(first.revokedAt);
    const second = await revokeApiKey(stack, apiKey!.id);
    assert.equal(second.__typename, "ApiKey");
    assert.equal(second.status, "revoked");
    assert.equal(second.revokedAt, first.revokedAt, "the first revocation time is kept");
  } finally {
    await stack.close();
  }
});

Deno.test("upsertProvider seals the credential: only hasCredential and its last 4 come back", async () => {
  const stack = await startStack();
  const apiKey = "sk-live-provider-credential-7Q2x";
  try {
    const bodies: string[] = [];
    const created = await upsertProvider(stack, {
      name: "acme-llm",
      kind: "openai_compat",
      baseUrl: "https://llm.example.com/v1",
      apiKey,
    });
    bodies.push(created.body);
    assert.equal(created.provider.__typename, "Provider");
    assert.equal(created.provider.hasCredential, true);
    assert.equal(created.provider.credentialLast4, "7Q2x");
    assert.equal(created.provider.baseUrl, "https://llm.example.com/v1");

    const row = await stack.database.db.db.selectFrom("providers").selectAll()
      .where("name", "=", "acme-llm").executeTakeFirstOrThrow();
    assert.ok(row.credential_ciphertext, "the credential is stored");
    assert.ok(!row.credential_ciphertext.includes(apiKey), "but not in the clear");
    assert.ok(!row.credential_ciphertext.includes(btoa(apiKey).slice(0, 16)), "nor as base64");

    // Omitting apiKey keeps the stored one.
    const renamed = await upsertProvider(stack, {
      name: "acme-llm",
      kind: "openai_compat",
      baseUrl: "https://llm2.example.com/v1",
    });
    bodies.push(renamed.body);
    assert.equal(renamed.provider.hasCredential, true);
    assert.equal(renamed.provider.credentialLast4, "7Q2x");
    assert.equal(renamed.provider.baseUrl, "https://llm2.example.com/v1");

    const listed = await stack.graphql<{ providers: { edges: { node: ProviderResult }[] } }>(
      `{ providers { edges { node { ${PROVIDER_FIELDS} } } } }`,
    );
    bodies.push(JSON.stringify(listed));
    assert.deepEqual(
      dataOf(listed).providers.edges.map(({ node: p }) => [
        p.name,
        p.hasCredential,
        p.credentialLast4,
      ]),
      [["acme-llm", true, "7Q2x"], ["mock", false, null]],
    );

    const missingUrl = await upsertProvider(stack, { name: "no-url", kind: "openai_compat" });
    assert.equal(missingUrl.provider.__typename, "InvalidInputError");
    assert.equal(missingUrl.provider.field, "baseUrl");

    // null removes it.
    const removed = await upsertProvider(stack, {
      name: "acme-llm",
      kind: "openai_compat",
      baseUrl: "https://llm2.example.com/v1",
      apiKey: null,
    });
    bodies.push(removed.body);
    assert.equal(removed.provider.hasCredential, false);
    assert.equal(removed.provider.credentialLast4, null);

    for (const body of bodies) assert.ok(!body.includes(apiKey), body);
    const audit = await stack.database.db.db.selectFrom("audit_log").select("diff").execute();
    assert.ok(!JSON.stringify(audit).includes(apiKey), "the audit log never holds it");
  } finally {
    await stack.close();
  }
});

Deno.test("upsertModel parses prices exactly and refuses bad prices and unknown providers", async () => {
  const stack = await startStack();
  try {
    const model = await upsertModel(stack, {
      name: "priced",
      provider: "mock",
      upstreamName: "mock-1",
      inputPrice: "2.5",
      outputPrice: "0.00000001",
    });
    assert.equal(model.__typename, "Model");
    assert.equal(model.inputPrice, "2.50000000");
    assert.equal(model.outputPrice, "0.00000001");
    assert.equal(model.cachedInputPrice, "2.50000000", "cached input defaults to input");
    assert.equal(model.provider.name, "mock");

    const base = { name: "priced", provider: "mock", upstreamName: "mock-1" };
    const refusals: [Record<string, string>, string][] = [
      [{ inputPrice: "-1", outputPrice: "1" }, "inputPrice"],
      [{ inputPrice: "1", outputPrice: "1e3" }, "outputPrice"],
      [{ inputPrice: "1", outputPrice: "1", cachedInputPrice: "0.000000001" }, "cachedInputPrice"],
      [{ inputPrice: "1,5", outputPrice: "1" }, "inputPrice"],
      [{ inputPrice: "1000000.01", outputPrice: "1" }, "inputPrice"],
    ];
    for (const [prices, field] of refusals) {
      const refused = await upsertModel(stack, { ...base, ...prices });
      assert.equal(refused.__typename, "InvalidInputError", JSON.stringify(prices));
      assert.equal(refused.field, field, JSON.stringify(prices));
    }

    const orphan = await upsertModel(stack, {
      ...base,
      provider: "nobody",
      inputPrice: "1",
      outputPrice: "1",
    });
    assert.equal(orphan.__typename, "NotFoundError");
    assert.match(orphan.message!, /nobody/);

    const updated = await upsertModel(stack, {
      ...base,
      inputPrice: "3",
      outputPrice: "12.34567891",
      cachedInputPrice: "0",
    });
    assert.deepEqual(
      [updated.inputPrice, updated.outputPrice, updated.cachedInputPrice],
      ["3.00000000", "12.34567891", "0.00000000"],
    );

    const listed = await stack.graphql<{ models: { edges: { node: ModelResult }[] } }>(
      `{ models { edges { node { ${MODEL_FIELDS} } } } }`,
    );
    assert.deepEqual(
      dataOf(listed).models.edges.map(({ node: m }) => [m.name, m.inputPrice, m.outputPrice]),
      [["priced", "3.00000000", "12.34567891"], ["tollgate-mock", "0.15000000", "0.60000000"]],
      "refused upserts changed nothing",
    );
  } finally {
    await stack.close();
  }
});

Deno.test("a model upserted through GraphQL on an openai_compat provider is served and metered at its prices", async () => {
  const fake = startFakeUpstream();
  const stack = await startStack();
  try {
    const { secret, accountId } = await stack.createKey();
    const { provider } = await upsertProvider(stack, {
      name: "fake-upstream",
      kind: "openai_compat",
      baseUrl: fake.url,
      apiKey: "sk-upstream-secret",
    });
    assert.equal(provider.__typename, "Provider");
    const model = await upsertModel(stack, {
      name: "fake-gpt",
      provider: "fake-upstream",
      upstreamName: "gpt-upstream",
      inputPrice: "1",
      outputPrice: "2",
    });
    assert.equal(model.__typename, "Model");

    const client = stack.openai(secret);
    await waitFor(async () => {
      const models = await client.models.list();
      return models.data.some((m) => m.id === "fake-gpt");
    });
    const { data, response } = await client.chat.completions.create({
      model: "fake-gpt",
      messages: [{ role: "user", content: "hi" }],
    }).withResponse();
    assert.equal(data.choices[0]!.message.content, "Hello from the fake upstream.");
    assert.equal(fake.served, 1);
    const sent = fake.requests[0]!;
    assert.equal(sent.headers.get("authorization"), "Bearer sk-upstream-secret");
    assert.equal(sent.body.model, "gpt-upstream");

    await stack.gateway.usage.flush();
    const rows = logsOf(await requestLogs(stack, { accountId }));
    assert.equal(rows.length, 1);
    assert.deepEqual(rows[0], {
      requestId: response.headers.get("x-request-id"),
      accountId,
      apiKeyId: rows[0]!.apiKeyId,
      model: "fake-gpt",
      providerName: "fake-upstream",
      upstreamModel: "gpt-upstream",
      status: 200,
      promptTokens: 11,
      completionTokens: 7,
      totalTokens: 18,
      // $1 and $2 per million tokens: 11 × 100 + 7 × 200 units of 1e-8 USD.
      cost: "0.00002500",
      estimated: false,
    });
  } finally {
    await stack.close();
    await fake.close();
  }
});

Deno.test("requestLogs returns the latest events first and honours first and accountId", async () => {
  const stack = await startStack();
  try {
    const a = await stack.createKey({ accountName: "A" });
    const b = await stack.createKey({ accountName: "B" });
    const requestIds: string[] = [];
    for (const key of [a, b, a, b, a]) {
      const { response } = await stack.openai(key.secret).chat.completions.create({
        model: "tollgate-mock",
        messages: [{ role: "user", content: "hi" }],
      }).withResponse();
      requestIds.push(response.headers.get("x-request-id")!);
      // Distinct timestamps, so that "latest first" has one right answer.
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await stack.gateway.usage.flush();
    const [r1, r2, r3, r4, r5] = requestIds;

    const ids = async (args: { first?: number; accountId?: string }) =>
      logsOf(await requestLogs(stack, args)).map((e) => e.requestId);
    assert.deepEqual(await ids({}), [r5, r4, r3, r2, r1]);
    assert.deepEqual(await ids({ first: 2 }), [r5, r4]);
    assert.deepEqual(await ids({ accountId: a.accountId }), [r5, r3, r1]);
    assert.deepEqual(await ids({ accountId: b.accountId }), [r4, r2]);
    assert.deepEqual(await ids({ accountId: a.accountId, first: 1 }), [r5]);
    for (const accountId of [NO_SUCH_ID, "not-a-uuid"]) {
      const missing = await requestLogs(stack, { accountId });
      assert.equal(missing.errors?.[0]?.extensions?.code, "NOT_FOUND", accountId);
    }

    for (const first of [0, 501]) {
      const refused = await requestLogs(stack, { first });
      assert.equal(refused.errors?.[0]?.extensions?.code, "BAD_USER_INPUT", `first ${first}`);
      assert.equal(refused.errors?.[0]?.extensions?.field, "first");
    }
  } finally {
    await stack.close();
  }
});

Deno.test("a mutation over GET is refused with 405, and every response carries an x-request-id", async () => {
  const stack = await startStack();
  try {
    const endpoint = `${stack.controlUrl}/graphql`;
    const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
    const mutation = 'mutation { createAccount(input: { name: "Sneaky" }) { __typename } }';
    const responses: [string, Response][] = [];

    const viaGet = await fetch(`${endpoint}?query=${encodeURIComponent(mutation)}`, {
      headers: { ...auth, accept: "application/graphql-response+json" },
    });
    responses.push(["mutation over GET", viaGet]);
    assert.equal(viaGet.status, 405);
    const listed = await stack.graphql<{ accounts: { edges: unknown[] } }>(
      "{ accounts { edges { node { id } } } }",
    );
    assert.deepEqual(dataOf(listed).accounts.edges, [], "the mutation did not run");

    const query = encodeURIComponent("{ accounts { edges { node { id } } } }");
    const queryViaGet = await fetch(`${endpoint}?query=${query}`, { headers: auth });
    responses.push(["query over GET", queryViaGet]);
    assert.equal(queryViaGet.status, 200);

    const post = (body: string, headers: Record<string, string> = auth) =>
      fetch(endpoint, {
        method: "POST",
        headers: { ...headers, "content-type": "application/json" },
        body,
      });
    const accounts = JSON.stringify({ query: "{ accounts { edges { node { id } } } }" });
    responses.push(["a query", await post(accounts)]);
    responses.push(["anonymous", await post(accounts, {})]);
    responses.push(["invalid query", await post(JSON.stringify({ query: "{ nope }" }))]);
    responses.push(["malformed JSON", await post("{not json")]);
    responses.push(["healthz", await fetch(`${stack.controlUrl}/healthz`)]);
    for (const [what, response] of responses) {
      await response.body?.cancel();
      assert.match(response.headers.get("x-request-id") ?? "", /^[A-Za-z0-9._:-]{8,128}$/, what);
    }

    const traced = await fetch(endpoint, {
      method: "POST",
      headers: { ...auth, "content-type": "application/json", "x-request-id": "trace-abc.123" },
      body: JSON.stringify({ query: mutation }),
    });
    await traced.body?.cancel();
    assert.equal(traced.headers.get("x-request-id"), "trace-abc.123", "a sane id is kept");
    const audit = await stack.database.db.db.selectFrom("audit_log").select("request_id")
      .where("action", "=", "account.create").executeTakeFirstOrThrow();
    assert.equal(audit.request_id, "trace-abc.123", "and recorded with the mutation");

    const insane = await fetch(`${stack.controlUrl}/healthz`, {
      headers: { "x-request-id": "bad id\twith spaces" },
    });
    await insane.body?.cancel();
    assert.notEqual(insane.headers.get("x-request-id"), "bad id\twith spaces");
    assert.match(insane.headers.get("x-request-id") ?? "", /^[0-9a-f-]{36}$/);
  } finally {
    await stack.close();
  }
});

Deno.test("the audit log chains every mutation without secrets, refuses edits and exposes tampering", async () => {
  const stack = await startStack();
  const db = stack.database.db.db;
  try {
    const account = await createAccount(stack, "Acme");
    const { secret, apiKey } = await createApiKey(stack, account.id);
    await upsertProvider(stack, {
      name: "acme-llm",
      kind: "openai_compat",
      baseUrl: "https://llm.example.com/v1",
      apiKey: "sk-audit-never-sees-this",
    });
    await upsertModel(stack, {
      name: "m",
      provider: "acme-llm",
      upstreamName: "u",
      inputPrice: "1",
      outputPrice: "1",
    });
    await revokeApiKey(stack, apiKey!.id);
    await revokeApiKey(stack, apiKey!.id);
    // A refused mutation writes nothing; concurrent ones still chain.
    await createAccount(stack, "");
    const names = ["B", "C", "D", "E", "F", "G"];
    await Promise.all(names.map((name) => createAccount(stack, name)));

    const rows = await db.selectFrom("audit_log").selectAll().orderBy("id").execute();
    assert.deepEqual(rows.map((r) => r.action), [
      "account.create",
      "api_key.create",
      "provider.create",
      "model.create",
      "api_key.revoke",
      "api_key.revoke",
      ...names.map(() => "account.create"),
    ]);
    for (const row of rows) {
      assert.equal(row.actor, "admin:configured");
      assert.equal(row.ip, "127.0.0.1");
      assert.ok(row.request_id);
    }
    const text = JSON.stringify(rows, (_k, v) => typeof v === "bigint" ? v.toString() : v);
    assert.ok(!text.includes(secret!), "no audit row holds a key's secret");
    assert.ok(!text.includes("sk-audit-never-sees-this"), "nor a provider credential");
    assert.deepEqual(await verifyAuditChain(db), { ok: true, rows: rows.length });

    await assert.rejects(
      db.updateTable("audit_log").set({ actor: "someone else" }).where("id", "=", rows[1]!.id)
        .execute(),
      /append-only/,
    );
    await assert.rejects(
      db.deleteFrom("audit_log").where("id", "=", rows[1]!.id).execute(),
      /append-only/,
    );

    // Someone able to switch the trigger off rewrites history: the chain shows where.
    const tampered = rows[2]!;
    const forged = JSON.stringify({ ...tampered.diff, baseUrl: "https://evil.example" });
    await db.transaction().execute(async (trx) => {
      await sql`alter table audit_log disable trigger audit_log_append_only`.execute(trx);
      await trx.updateTable("audit_log").set({ diff: sql<string>`${forged}::text::jsonb` })
        .where("id", "=", tampered.id).execute();
      await sql`alter table audit_log enable trigger audit_log_append_only`.execute(trx);
    });
    assert.deepEqual(await verifyAuditChain(db), {
      ok: false,
      brokenAt: tampered.id,
      problem: `row ${tampered.id}'s contents do not match its hash: the row was altered`,
    });
  } finally {
    await stack.close();
  }
});
