/**
 * The operator's configuration (providers, models and prices, routes) and the
 * operator-only money operations: tenants may list models and providers but
 * not change them nor read their configuration; lists are keyset
 * connections; and a change made through GraphQL reaches a running gateway
 * through NOTIFY, without a restart.
 */
import assert from "node:assert/strict";
import type { Kysely } from "kysely";
import type { Actor } from "../../control/access.ts";
import type { Database } from "../../schema/database.ts";
import { executeAs, OPERATOR, userWith } from "../helpers/as_actor.ts";
import { freshDatabase } from "../helpers/database.ts";
import { startFakeUpstream } from "../helpers/fake_upstream.ts";
import { type GraphQLResult, startStack, waitFor } from "../helpers/stack.ts";

const CREDENTIAL = "sk-operator-credential-Zq9w";

async function withDb(test: (db: Kysely<Database>, acme: string) => Promise<void>) {
  const database = await freshDatabase();
  const db = database.db.db;
  try {
    const { id } = await db.insertInto("accounts").values({ name: "Acme" }).returning("id")
      .executeTakeFirstOrThrow();
    await test(db, id);
  } finally {
    await database.drop();
  }
}

const UPSERT_PROVIDER = `mutation ($input: UpsertProviderInput!) { upsertProvider(input: $input) {
  __typename ... on Error { message } } }`;
const UPSERT_MODEL = `mutation ($input: UpsertModelInput!) { upsertModel(input: $input) {
  __typename ... on Error { message } } }`;
const UPSERT_ROUTE = `mutation ($input: UpsertRouteInput!) { upsertRoute(input: $input) {
  __typename ... on Error { message } } }`;
const DELETE_ROUTE = `mutation ($name: String!) { deleteRoute(input: { name: $name }) {
  __typename ... on Error { message } } }`;
const ADJUST = `mutation ($id: ID!) { adjustBalance(input: { accountId: $id, amount: "5",
  reason: "gift" }) { __typename ... on Error { message } } }`;

const PROVIDER = {
  name: "acme-llm",
  kind: "openai_compat",
  baseUrl: "https://llm.example.com/v1",
  apiKey: CREDENTIAL,
};
const MODEL = {
  name: "acme-large",
  provider: "acme-llm",
  upstreamName: "large-2",
  inputPrice: "3",
  outputPrice: "15",
};

async function configure(db: Kysely<Database>): Promise<void> {
  for (
    const [mutation, input] of [[UPSERT_PROVIDER, PROVIDER], [UPSERT_MODEL, MODEL], [
      UPSERT_ROUTE,
      { name: "large", targets: ["acme-large"] },
    ]] as const
  ) {
    const result = await executeAs(db, OPERATOR, mutation, { input });
    assert.equal(result.errors, undefined, JSON.stringify(result.errors));
  }
}

Deno.test("tenants of every role are refused operator configuration and money operations; nothing changes", async () => {
  await withDb(async (db, acme) => {
    await configure(db);
    const before = await db.selectFrom("audit_log").select("id").execute();
    const tenants: Actor[] = [
      userWith({ [acme]: "owner" }),
      userWith({ [acme]: "viewer" }),
      {
        kind: "api_key",
        id: "key:tg_AbCd1234",
        keyId: crypto.randomUUID(),
        accountId: acme,
        role: "admin",
      },
    ];
    const mutations: [string, Record<string, unknown>, string][] = [
      [
        UPSERT_PROVIDER,
        { input: { ...PROVIDER, baseUrl: "https://evil.example/v1" } },
        "upsertProvider",
      ],
      [UPSERT_MODEL, { input: { ...MODEL, inputPrice: "0" } }, "upsertModel"],
      [UPSERT_ROUTE, { input: { name: "large", targets: ["tollgate-mock"] } }, "upsertRoute"],
      [DELETE_ROUTE, { name: "large" }, "deleteRoute"],
      [ADJUST, { id: acme }, "adjustBalance"],
    ];
    for (const actor of tenants) {
      for (const [mutation, variables, field] of mutations) {
        const result = await executeAs<Record<string, { __typename: string; message: string }>>(
          db,
          actor,
          mutation,
          variables,
        );
        assert.equal(result.data?.[field]?.__typename, "ForbiddenError", `${actor.id} ${field}`);
        assert.match(result.data![field]!.message, /^Only an operator can /);
      }
      for (
        const query of [
          "{ routes { edges { node { name } } } }",
          "{ ledgerReconciliation { balanced } }",
        ]
      ) {
        const result = await executeAs(db, actor, query);
        assert.equal(result.errors?.[0]?.extensions?.code, "FORBIDDEN", `${actor.id} ${query}`);
        assert.equal(result.data, null);
      }
    }
    const after = await db.selectFrom("audit_log").select("id").execute();
    assert.equal(after.length, before.length, "nothing refused was audited");
    const provider = await db.selectFrom("providers").selectAll().where("name", "=", "acme-llm")
      .executeTakeFirstOrThrow();
    assert.equal(provider.base_url, PROVIDER.baseUrl);
    const model = await db.selectFrom("models").selectAll().where("name", "=", "acme-large")
      .executeTakeFirstOrThrow();
    assert.equal(model.input_price, 300_000_000n);
    const route = await db.selectFrom("routes").selectAll().executeTakeFirstOrThrow();
    assert.deepEqual(route.targets, ["acme-large"]);
    const account = await db.selectFrom("accounts").select("balance").where("id", "=", acme)
      .executeTakeFirstOrThrow();
    assert.equal(account.balance, 0n);
  });
});

const CATALOGUE = `{
  providers { edges { node { id name kind preset baseUrl effectiveBaseUrl hasCredential
    credentialLast4 } } }
  models { edges { node { name upstreamName inputPrice outputPrice cachedInputPrice status
    provider { name baseUrl hasCredential credentialLast4 } } } } }`;

interface Catalogue {
  providers: { edges: { node: Record<string, unknown> }[] };
  models: { edges: { node: Record<string, unknown> }[] };
}

Deno.test("tenants list models with their prices and providers without their configuration; a credential never comes back", async () => {
  await withDb(async (db, acme) => {
    await configure(db);
    const operator = await executeAs<Catalogue>(db, OPERATOR, CATALOGUE);
    const tenant = await executeAs<Catalogue>(db, userWith({ [acme]: "viewer" }), CATALOGUE);
    for (const result of [operator, tenant]) {
      assert.equal(result.errors, undefined, JSON.stringify(result.errors));
      assert.ok(!JSON.stringify(result).includes(CREDENTIAL));
    }
    const acmeLlm = (r: typeof operator) =>
      r.data!.providers.edges.map((e) => e.node).find((p) => p.name === "acme-llm")!;
    assert.deepEqual({ ...acmeLlm(operator), id: undefined }, {
      id: undefined,
      name: "acme-llm",
      kind: "openai_compat",
      preset: null,
      baseUrl: "https://llm.example.com/v1",
      effectiveBaseUrl: "https://llm.example.com/v1",
      hasCredential: true,
      credentialLast4: "Zq9w",
    });
    assert.deepEqual({ ...acmeLlm(tenant), id: undefined }, {
      id: undefined,
      name: "acme-llm",
      kind: "openai_compat",
      preset: null,
      baseUrl: null,
      effectiveBaseUrl: null,
      hasCredential: null,
      credentialLast4: null,
    });
    assert.equal(acmeLlm(tenant).id, acmeLlm(operator).id, "the id a BYOK key is stored under");
    const tenantModel = tenant.data!.models.edges.map((e) => e.node)
      .find((m) => m.name === "acme-large");
    assert.deepEqual(tenantModel, {
      name: "acme-large",
      upstreamName: "large-2",
      inputPrice: "3.00000000",
      outputPrice: "15.00000000",
      cachedInputPrice: "3.00000000",
      status: "active",
      provider: { name: "acme-llm", baseUrl: null, hasCredential: null, credentialLast4: null },
    });

    // Nor does the audit log, which recorded the provider's creation.
    const audit = await executeAs(db, OPERATOR, "{ auditLog { edges { node { action diff } } } }");
    assert.ok(JSON.stringify(audit).includes("provider.create"));
    assert.ok(!JSON.stringify(audit).includes(CREDENTIAL));
    const stored = await db.selectFrom("providers").select("credential_ciphertext")
      .where("name", "=", "acme-llm").executeTakeFirstOrThrow();
    assert.ok(stored.credential_ciphertext && !stored.credential_ciphertext.includes(CREDENTIAL));
  });
});

Deno.test("providers, models and routes are connections paged by name", async () => {
  await withDb(async (db) => {
    for (const name of ["p-c", "p-a", "p-b"]) {
      await executeAs(db, OPERATOR, UPSERT_PROVIDER, { input: { name, kind: "mock" } });
    }
    for (const name of ["m-3", "m-1", "m-2", "m-4"]) {
      await executeAs(db, OPERATOR, UPSERT_MODEL, {
        input: { ...MODEL, name, provider: "p-a", inputPrice: "1", outputPrice: "1" },
      });
    }
    for (const name of ["r-2", "r-1"]) {
      await executeAs(db, OPERATOR, UPSERT_ROUTE, { input: { name, targets: ["m-1"] } });
    }
    const walk = async (field: string, size: number) => {
      const names: string[] = [];
      let after: string | null = null;
      for (let pages = 0; pages < 10; pages++) {
        const result: GraphQLResult<Record<string, Page>> = await executeAs(
          db,
          OPERATOR,
          `query ($after: String) { ${field}(first: ${size}, after: $after) {
            edges { node { name } } pageInfo { hasNextPage endCursor } } }`,
          { after },
        ) as GraphQLResult<Record<string, Page>>;
        assert.equal(result.errors, undefined, JSON.stringify(result.errors));
        const page = result.data![field]!;
        names.push(...page.edges.map((e) => e.node.name));
        if (!page.pageInfo.hasNextPage) return names;
        after = page.pageInfo.endCursor;
      }
      throw new Error("too many pages");
    };
    assert.deepEqual(await walk("providers", 2), ["p-a", "p-b", "p-c"]);
    assert.deepEqual(await walk("models", 3), ["m-1", "m-2", "m-3", "m-4"]);
    assert.deepEqual(await walk("routes", 1), ["r-1", "r-2"]);
    const last = await executeAs<Record<string, Page>>(
      db,
      OPERATOR,
      "{ models(last: 2) { edges { node { name } } } }",
    );
    assert.deepEqual(last.data!.models!.edges.map((e) => e.node.name), ["m-3", "m-4"]);
    const foreign = await executeAs(
      db,
      OPERATOR,
      `query ($after: String) {
      models(after: $after) { edges { node { name } } } }`,
      {
        after: (await executeAs<Record<string, Page>>(
          db,
          OPERATOR,
          "{ routes(first: 1) { pageInfo { endCursor } } }",
        )).data!.routes!.pageInfo.endCursor,
      },
    );
    assert.equal(foreign.errors?.[0]?.extensions?.code, "BAD_USER_INPUT", "a route's cursor");
  });
});

interface Page {
  edges: { node: { name: string } }[];
  pageInfo: { hasNextPage: boolean; endCursor: string };
}

Deno.test("a running gateway follows GraphQL changes through NOTIFY: a new model, its new price, a retargeted route", async () => {
  const fake = startFakeUpstream();
  const stack = await startStack();
  try {
    const { secret, accountId } = await stack.createKey();
    const graphql = async (query: string, variables: Record<string, unknown>) => {
      const result = await stack.graphql<Record<string, { __typename: string }>>(query, variables);
      assert.equal(result.errors, undefined, JSON.stringify(result.errors));
      return Object.values(result.data!)[0]!.__typename;
    };
    // An alias to the mock first, so the route change below has somewhere to move from.
    assert.equal(
      await graphql(UPSERT_ROUTE, { input: { name: "smart", targets: ["tollgate-mock"] } }),
      "Route",
    );
    await waitFor(() => stack.gateway.policy.route("smart") !== undefined);
    const client = stack.openai(secret);
    const chat = (model: string) =>
      client.chat.completions.create({ model, messages: [{ role: "user", content: "hi" }] })
        .withResponse();
    const before = await chat("smart");
    assert.equal(before.response.headers.get("x-tollgate-provider"), "mock");

    // A new model on a new provider: callable once notified.
    await stack.addModel({
      provider: "fake-upstream",
      baseUrl: fake.url,
      apiKey: "sk-upstream",
      model: "fake-gpt",
      upstreamName: "gpt-upstream",
      inputPrice: "1",
      outputPrice: "2",
    });
    await waitFor(() => stack.gateway.policy.model("fake-gpt") !== undefined);
    const cheap = await chat("fake-gpt");

    // The price raised tenfold: the next request is charged at it.
    assert.equal(
      await graphql(UPSERT_MODEL, {
        input: {
          name: "fake-gpt",
          provider: "fake-upstream",
          upstreamName: "gpt-upstream",
          inputPrice: "10",
          outputPrice: "20",
        },
      }),
      "Model",
    );
    await waitFor(() => stack.gateway.policy.model("fake-gpt")?.prices.input === 1_000_000_000n);
    const dear = await chat("fake-gpt");

    // The alias moved to the new model: the gateway follows it.
    assert.equal(
      await graphql(UPSERT_ROUTE, { input: { name: "smart", targets: ["fake-gpt"] } }),
      "Route",
    );
    await waitFor(() => stack.gateway.policy.route("smart")?.targets[0] === "fake-gpt");
    const moved = await chat("smart");
    assert.equal(moved.response.headers.get("x-tollgate-provider"), "fake-upstream");
    assert.equal(fake.requests.at(-1)!.body.model, "gpt-upstream");

    const rows = await stack.usageRows();
    const costOf = (call: typeof cheap) =>
      rows.find((r) => r.request_id === call.response.headers.get("x-request-id"))!.cost;
    // 11 prompt and 7 completion tokens: at $1/$2 per million, then at $10/$20.
    assert.equal(costOf(cheap), 11n * 100n + 7n * 200n);
    assert.equal(costOf(dear), 11n * 1_000n + 7n * 2_000n);
    assert.equal(costOf(moved), costOf(dear), "the alias is served at its target's new price");

    // And the ledger charged the account exactly what was metered, plus the fee:
    // the request's row names the transaction, whose customer entry is its rows' sum.
    const requestId = dear.response.headers.get("x-request-id")!;
    const linked = () =>
      stack.database.db.db.selectFrom("usage_events").select("ledger_transaction_id")
        .where("request_id", "=", requestId).executeTakeFirst();
    await waitFor(async () => (await linked())?.ledger_transaction_id != null);
    const tx = (await linked())!.ledger_transaction_id!;
    const entries = await stack.database.db.db.selectFrom("ledger_entries").selectAll()
      .where("transaction_id", "=", tx).execute();
    const charged = await stack.database.db.db.selectFrom("usage_events")
      .select(["request_id", "cost", "fee"]).where("ledger_transaction_id", "=", tx).execute();
    assert.ok(charged.some((r) => r.request_id === requestId));
    const event = rows.find((r) => r.request_id === requestId)!;
    const customer = entries.filter((e) => e.book.startsWith("customer:"));
    assert.equal(customer.length, 1);
    assert.equal(customer[0]!.account_id, accountId);
    assert.equal(customer[0]!.amount, -charged.reduce((sum, r) => sum + r.cost + r.fee, 0n));
    assert.equal(entries.reduce((sum, e) => sum + e.amount, 0n), 0n);
    assert.ok(event.fee > 0n, "a standard request pays the operator's fee");
  } finally {
    await stack.close();
    await fake.close();
  }
});
