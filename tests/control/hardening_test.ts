/**
 * The GraphQL endpoint's defences, over HTTP against a running control
 * plane: query limits, CSRF, mutations over GET, batching, introspection and
 * masked unexpected errors.
 */
import assert from "node:assert/strict";
import {
  getIntrospectionQuery,
  getNamedType,
  type GraphQLField,
  type GraphQLObjectType,
  isLeafType,
  isNonNullType,
  isObjectType,
} from "graphql";
import { createYoga as createYogaServer } from "graphql-yoga";
import { sql } from "kysely";
import type { Actor } from "../../control/access.ts";
import { ensureAdminToken } from "../../control/auth.ts";
import {
  GRAPHQL_DEFAULTS,
  type GraphQLSettings,
  INTROSPECTION_POLICIES,
  type IntrospectionPolicy,
  loadConfig,
} from "../../control/config.ts";
import { schema } from "../../control/graphql/schema.ts";
import {
  CSRF_REFUSED,
  hardeningPlugins,
  INTROSPECTION_DISABLED,
  LIMIT_EXCEEDED,
  mayIntrospect,
  UNEXPECTED_MESSAGE,
} from "../../control/hardening.ts";
import { startControl } from "../../control/server.ts";
import { ConfigError } from "../../schema/config.ts";
import { API_KEY_PREFIX, generateSecret } from "../../schema/keys.ts";
import { deriveServerKeys } from "../../schema/secrets.ts";
import { freshDatabase, type TestDatabase } from "../helpers/database.ts";
import { ADMIN_TOKEN, TEST_SECRET } from "../helpers/stack.ts";

interface ErrorBody {
  message: string;
  path?: string[];
  extensions?: Record<string, unknown>;
}

interface Answer {
  status: number;
  headers: Headers;
  data?: Record<string, unknown> | null;
  errors?: ErrorBody[];
}

interface Control {
  url: string;
  database: TestDatabase;
  /** POSTs JSON (with the operator's token unless `token` is null) and reads the answer. */
  post(query: string, options?: { token?: string | null; headers?: HeadersInit }): Promise<Answer>;
  close(): Promise<void>;
}

/** A control plane alone on a fresh database, with `settings` over the defaults. */
async function startControlPlane(settings: Partial<GraphQLSettings> = {}): Promise<Control> {
  const database = await freshDatabase();
  const keys = deriveServerKeys(TEST_SECRET);
  await ensureAdminToken(database.db.db, keys, ADMIN_TOKEN);
  const control = await startControl({
    db: database.db.db,
    keys,
    config: {
      ...loadConfig({ TOLLGATE_DATA_DIR: "memory://", TOLLGATE_CONTROL_PORT: "0" }),
      adminToken: ADMIN_TOKEN,
      graphql: { ...GRAPHQL_DEFAULTS, ...settings },
    },
  });
  const url = `${control.url}/graphql`;
  return {
    url,
    database,
    async post(query, { token = ADMIN_TOKEN, headers = {} } = {}) {
      const response = await fetch(url, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...headers,
        },
        body: JSON.stringify({ query }),
      });
      return { status: response.status, headers: response.headers, ...await response.json() };
    },
    async close() {
      await control.shutdown();
      await database.drop();
    },
  };
}

/** The one error of a refused request. */
function onlyError(answer: Answer): ErrorBody {
  assert.equal(answer.errors?.length, 1, JSON.stringify(answer));
  return answer.errors[0]!;
}

async function accountCount(control: Control): Promise<number> {
  const row = await control.database.db.db.selectFrom("accounts")
    .select((eb) => eb.fn.countAll<string>().as("n")).executeTakeFirstOrThrow();
  return Number(row.n);
}

const PAGE_INFO = "pageInfo { hasNextPage hasPreviousPage startCursor endCursor }";

/**
 * The largest page a console can ask of a connection: `first: 500` (no list
 * allows more) with every field of the node, and of the objects it links to.
 * Built from the schema, so a field or a connection added later is covered.
 * Required arguments (an account id, so far) get `accountId`.
 */
function largestPage(field: GraphQLField<unknown, unknown>, accountId: string): string {
  const connection = getNamedType(field.type) as GraphQLObjectType;
  const edge = getNamedType(connection.getFields().edges!.type) as GraphQLObjectType;
  const node = getNamedType(edge.getFields().node!.type) as GraphQLObjectType;
  const args = field.args.filter((arg) => isNonNullType(arg.type))
    .map((arg) => `${arg.name}: "${accountId}"`);
  return `${field.name}(${[...args, "first: 500"].join(", ")}) {
    edges { cursor node { ${everyField(node, 1)} } } ${PAGE_INFO} }`;
}

/** The fields of `type` that take no required argument; objects' own, `levels` deep. */
function everyField(type: GraphQLObjectType, levels: number): string {
  return Object.values(type.getFields()).flatMap((field) => {
    if (field.args.some((arg) => isNonNullType(arg.type))) return [];
    const named = getNamedType(field.type);
    if (isLeafType(named)) return [field.name];
    if (isObjectType(named) && levels > 0 && !named.name.endsWith("Connection")) {
      return [`${field.name} { ${everyField(named, levels - 1)} }`];
    }
    return [];
  }).join(" ");
}

Deno.test("GraphQL limits, introspection and GraphiQL are read from the environment", () => {
  assert.deepEqual(loadConfig({}).graphql, GRAPHQL_DEFAULTS);
  assert.deepEqual(GRAPHQL_DEFAULTS, {
    maxDepth: 10,
    maxCost: 100_000,
    maxAliases: 15,
    maxDirectives: 20,
    maxTokens: 1_000,
    introspection: "authenticated",
    graphiql: true,
  });
  const config = loadConfig({
    TOLLGATE_GRAPHQL_MAX_DEPTH: "6",
    TOLLGATE_GRAPHQL_MAX_COST: "1000",
    TOLLGATE_GRAPHQL_MAX_ALIASES: "3",
    TOLLGATE_GRAPHQL_MAX_DIRECTIVES: "4",
    TOLLGATE_GRAPHQL_MAX_TOKENS: "500",
    TOLLGATE_GRAPHQL_INTROSPECTION: "operators",
    TOLLGATE_GRAPHIQL: "off",
  });
  assert.deepEqual(config.graphql, {
    maxDepth: 6,
    maxCost: 1000,
    maxAliases: 3,
    maxDirectives: 4,
    maxTokens: 500,
    introspection: "operators",
    graphiql: false,
  });
  assert.equal(loadConfig({ TOLLGATE_GRAPHIQL: "on" }).graphql?.graphiql, true);
  assert.equal(loadConfig({ TOLLGATE_GRAPHQL_INTROSPECTION: "off" }).graphql?.introspection, "off");

  let error: unknown;
  try {
    loadConfig({
      TOLLGATE_GRAPHQL_MAX_DEPTH: "0",
      TOLLGATE_GRAPHQL_MAX_COST: "1e6",
      TOLLGATE_GRAPHQL_INTROSPECTION: "everyone",
      TOLLGATE_GRAPHIQL: "maybe",
    });
  } catch (caught) {
    error = caught;
  }
  assert.ok(error instanceof ConfigError);
  assert.match(error.message, /TOLLGATE_GRAPHQL_MAX_DEPTH: must be a whole number from 1/);
  assert.match(error.message, /TOLLGATE_GRAPHQL_MAX_COST: must be a whole number from 1/);
  assert.match(error.message, /TOLLGATE_GRAPHQL_INTROSPECTION: must be one of authenticated, op/);
  assert.match(error.message, /TOLLGATE_GRAPHIQL: must be on or off/);
});

Deno.test("each query limit refuses a valid document with a message and extensions that name it", async () => {
  const control = await startControlPlane({
    maxDepth: 3,
    maxCost: 100,
    maxAliases: 2,
    maxDirectives: 2,
    maxTokens: 60,
  });
  const deep = '{ ledgerEntries(accountId: "x") { edges { node { id } } } }';
  try {
    const cases = [
      {
        limit: "maxDepth",
        max: 3,
        setting: "TOLLGATE_GRAPHQL_MAX_DEPTH",
        query: deep,
        message: "Query depth limit of 3 exceeded, found 4.",
      },
      {
        limit: "maxCost",
        max: 100,
        setting: "TOLLGATE_GRAPHQL_MAX_COST",
        query: '{ ledgerEntries(accountId: "x", first: 50) { edges { cursor } } }',
        message: "Query Cost limit of 100 exceeded, found 362.5.",
      },
      {
        limit: "maxAliases",
        max: 2,
        setting: "TOLLGATE_GRAPHQL_MAX_ALIASES",
        query: "{ a: ledgerReconciliation { balanced } b: ledgerReconciliation { balanced } " +
          "c: ledgerReconciliation { balanced } }",
        message: "Aliases limit of 2 exceeded, found 3.",
      },
      {
        limit: "maxDirectives",
        max: 2,
        setting: "TOLLGATE_GRAPHQL_MAX_DIRECTIVES",
        query: "{ ledgerReconciliation @skip(if: false) @include(if: true) { " +
          "balanced @include(if: true) } }",
        message: "Directives limit of 2 exceeded, found 3.",
      },
      {
        limit: "maxTokens",
        max: 60,
        setting: "TOLLGATE_GRAPHQL_MAX_TOKENS",
        query: `{ ${"ledgerReconciliation { balanced } ".repeat(15)}}`,
        message: "Token limit of 60 exceeded.",
      },
    ];
    for (const { limit, max, setting, query, message } of cases) {
      const answer = await control.post(query);
      assert.deepEqual(onlyError(answer), {
        message,
        extensions: { code: LIMIT_EXCEEDED, limit, max, setting },
      }, limit);
      assert.equal(answer.data, undefined, `${limit}: nothing was executed`);
    }
    // Limits are checked before the caller is authenticated: no token, the same refusal.
    const anonymous = await control.post(deep, { token: null });
    assert.equal(onlyError(anonymous).extensions?.limit, "maxDepth");
  } finally {
    await control.close();
  }
});

Deno.test("the default limits let every list's largest page, nested lists and GraphiQL through", async () => {
  const control = await startControlPlane();
  try {
    const created = await control.post(
      'mutation { createAccount(input: { name: "Acme" }) { ... on Account { id } } }',
    );
    const accountId = (created.data?.createAccount as { id: string }).id;
    assert.ok(accountId, JSON.stringify(created));

    const connections = Object.values(schema.getQueryType()!.getFields())
      .filter((field) => getNamedType(field.type).name.endsWith("Connection"));
    assert.ok(connections.length >= 5, connections.map((field) => field.name).join());
    const queries = connections.map((field) => `{ ${largestPage(field, accountId)} }`);
    // A list inside a list's node, as the console's account switcher asks for it.
    const account = schema.getType("Account") as GraphQLObjectType;
    queries.push(`{ me { memberships(first: 200) {
      edges { cursor node { role account { ${everyField(account, 0)} } } } ${PAGE_INFO} } } }`);
    for (const query of queries) {
      const answer = await control.post(query);
      // Resolvers may refuse `first: 500` where their page is smaller; no limit may refuse the document.
      const refused = answer.errors?.filter((error) =>
        error.extensions?.code === LIMIT_EXCEEDED ||
        error.extensions?.code === "GRAPHQL_VALIDATION_FAILED"
      );
      assert.deepEqual(refused ?? [], [], query);
      assert.notEqual(answer.data, undefined, `executed: ${query}`);
    }

    // What GraphiQL sends on load, with every option it may turn on.
    const introspection = await control.post(getIntrospectionQuery({
      descriptions: true,
      inputValueDeprecation: true,
      schemaDescription: true,
      directiveIsRepeatable: true,
      specifiedByUrl: true,
    }));
    assert.equal(introspection.errors, undefined, JSON.stringify(introspection.errors));
    assert.ok((introspection.data?.__schema as { types: unknown[] }).types.length > 20);

    // Inline fragments (every union result uses them) add no depth.
    const fragments = await control.post(
      `{ ${"... on Query { ".repeat(12)}__typename${" }".repeat(12)} }`,
    );
    assert.deepEqual(fragments.data, { __typename: "Query" }, JSON.stringify(fragments.errors));
  } finally {
    await control.close();
  }
});

Deno.test("a misspelt field gets no suggestion that would describe the schema", async () => {
  const control = await startControlPlane();
  try {
    const error = onlyError(await control.post("{ ledgerReconciliation { balancd } }"));
    assert.match(error.message, /^Cannot query field "balancd" on type "LedgerReconciliation"\./);
    assert.doesNotMatch(error.message, /Did you mean/);
  } finally {
    await control.close();
  }
});

Deno.test("requests a browser could send cross-site without a preflight are refused", async () => {
  const control = await startControlPlane();
  const mutation = 'mutation { createAccount(input: { name: "Forged" }) { __typename } }';
  try {
    const forged: [string, RequestInit][] = [
      ["form post", { method: "POST", body: new URLSearchParams({ query: mutation }) }],
      ["text/plain post", {
        method: "POST",
        headers: { "content-type": "text/plain" },
        body: JSON.stringify({ query: mutation }),
      }],
      ["multipart post", {
        method: "POST",
        body: (() => {
          const form = new FormData();
          form.set("operations", JSON.stringify({ query: mutation }));
          return form;
        })(),
      }],
      ["bare GET", { method: "GET" }],
    ];
    for (const [label, init] of forged) {
      const url = init.method === "GET"
        ? `${control.url}?query=${encodeURIComponent("{ __typename }")}`
        : control.url;
      const response = await fetch(url, init);
      const body = await response.json();
      assert.equal(response.status, 403, label);
      assert.equal(body.errors[0].extensions.code, CSRF_REFUSED, label);
      assert.match(body.errors[0].message, /Content-Type: application\/json/, label);
    }
    assert.equal(await accountCount(control), 0, "no forged mutation ran");

    // JSON needs no extra header; a GET passes with a header a page cannot set cross-site.
    assert.equal((await control.post("{ __typename }")).status, 200);
    const get = await fetch(`${control.url}?query=${encodeURIComponent("{ __typename }")}`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    assert.equal(get.status, 200);
    assert.deepEqual(await get.json(), { data: { __typename: "Query" } });
    const csrfHeaderOnly = await fetch(
      `${control.url}?query=${encodeURIComponent("{ __typename }")}`,
      {
        headers: { "x-graphql-yoga-csrf": "1" },
      },
    );
    assert.equal(csrfHeaderOnly.status, 401, "past CSRF, a query still needs a credential");
    await csrfHeaderOnly.body?.cancel();
  } finally {
    await control.close();
  }
});

Deno.test("a mutation over GET is refused with 405, and batches are refused", async () => {
  const control = await startControlPlane();
  try {
    const mutation = 'mutation { createAccount(input: { name: "ViaGet" }) { __typename } }';
    const get = await fetch(`${control.url}?query=${encodeURIComponent(mutation)}`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    assert.equal(get.status, 405);
    assert.equal(get.headers.get("allow"), "POST");
    const body = await get.json();
    assert.equal(
      body.errors[0].message,
      "Can only perform a mutation operation from a POST request.",
    );
    assert.equal(await accountCount(control), 0);

    const batch = await fetch(control.url, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${ADMIN_TOKEN}` },
      body: JSON.stringify([{ query: mutation }, { query: mutation }]),
    });
    assert.equal(batch.status, 400);
    assert.equal((await batch.json()).errors[0].message, "Batching is not supported.");
    assert.equal(await accountCount(control), 0);
  } finally {
    await control.close();
  }
});

Deno.test("a database error reaches the client as 'Unexpected error.' with the request id, and is logged with it", async () => {
  const control = await startControlPlane();
  const logged: unknown[][] = [];
  const consoleError = console.error;
  try {
    await sql`alter table providers rename to providers_gone`.execute(control.database.db.db);
    console.error = (...args: unknown[]) => logged.push(args);
    const answer = await control.post("{ providers { edges { node { name } } } }", {
      headers: { "x-request-id": "req-db-error-1" },
    });
    console.error = consoleError;
    assert.equal(answer.headers.get("x-request-id"), "req-db-error-1");
    assert.deepEqual(answer.errors, [{
      message: UNEXPECTED_MESSAGE,
      locations: [{ line: 1, column: 3 }],
      path: ["providers"],
      extensions: { code: "INTERNAL_SERVER_ERROR", requestId: "req-db-error-1" },
    }]);
    assert.doesNotMatch(JSON.stringify(answer), /relation|providers_gone|select/i);
    assert.equal(logged.length, 1, "logged once, not again by Yoga");
    assert.equal(logged[0]![0], "Unexpected error in request req-db-error-1 at providers:");
    assert.match(String(logged[0]![1]), /relation "providers" does not exist/);

    // Expected errors keep their message.
    const notFound = onlyError(
      await control.post(
        '{ ledgerEntries(accountId: "00000000-0000-0000-0000-000000000000") { edges { cursor } } }',
      ),
    );
    assert.equal(notFound.extensions?.code, "NOT_FOUND");
  } finally {
    console.error = consoleError;
    await control.close();
  }
});

Deno.test("a crash while authenticating is masked too: 500, the request id, logged", async () => {
  const control = await startControlPlane();
  const logged: unknown[][] = [];
  const consoleError = console.error;
  try {
    await sql`alter table api_keys rename to api_keys_gone`.execute(control.database.db.db);
    // A well-formed API key makes authentication look it up in the database.
    const token = generateSecret(API_KEY_PREFIX).secret;
    console.error = (...args: unknown[]) => logged.push(args);
    const answer = await control.post("{ __typename }", { token });
    console.error = consoleError;
    const requestId = answer.headers.get("x-request-id");
    assert.equal(answer.status, 500);
    assert.deepEqual(answer.errors, [{
      message: UNEXPECTED_MESSAGE,
      extensions: { code: "INTERNAL_SERVER_ERROR", requestId },
    }]);
    assert.equal(logged.length, 1, JSON.stringify(logged.map((args) => String(args[0]))));
    assert.equal(logged[0]![0], `Unexpected error in request ${requestId} before execution:`);
    assert.match(String(logged[0]![1]), /relation "api_keys" does not exist/);
  } finally {
    console.error = consoleError;
    await control.close();
  }
});

const INTROSPECT = "{ __schema { queryType { name } } }";

Deno.test("introspection follows TOLLGATE_GRAPHQL_INTROSPECTION for an operator over HTTP", async () => {
  for (const policy of INTROSPECTION_POLICIES) {
    const control = await startControlPlane({ introspection: policy });
    try {
      const answer = await control.post(INTROSPECT);
      if (policy === "off") {
        assert.equal(answer.status, 403);
        const error = onlyError(answer);
        assert.equal(error.message, "Introspection is turned off on this server.");
        assert.equal(error.extensions?.code, INTROSPECTION_DISABLED);
      } else {
        assert.deepEqual(answer.data, { __schema: { queryType: { name: "Query" } } }, policy);
      }
      // __typename is not introspection.
      const typename = await control.post("{ __typename }");
      assert.deepEqual(typename.data, { __typename: "Query" }, policy);
      // Anonymous: refused before anything runs.
      const anonymous = await control.post(INTROSPECT, { token: null });
      assert.equal(anonymous.status, 401, policy);
      assert.equal(anonymous.data, undefined, policy);
    } finally {
      await control.close();
    }
  }
});

const OPERATOR: Actor = { kind: "operator", id: "admin:configured" };
const USER: Actor = {
  kind: "user",
  id: "user:u1",
  userId: "u1",
  roles: new Map([["a1", "viewer"]]),
};
const MANAGEMENT_KEY: Actor = {
  kind: "api_key",
  id: "key:tg_abc",
  keyId: "k1",
  accountId: "a1",
  role: "admin",
};

const ACTORS: Actor[] = [OPERATOR, USER, MANAGEMENT_KEY];

/**
 * Yoga with our schema and plugins, and a context that is just `actor`: the
 * actors and anonymous callers the HTTP tests cannot sign in as yet.
 */
function yogaAs(settings: Partial<GraphQLSettings>, actor: Actor | null) {
  return createYogaServer({
    schema,
    maskedErrors: true,
    plugins: hardeningPlugins({ ...GRAPHQL_DEFAULTS, ...settings }, { requestIdOf: () => "test" }),
    context: () => ({ actor, requestId: "test" }),
  });
}

async function introspect(
  settings: Partial<GraphQLSettings>,
  actor: Actor | null,
  query = INTROSPECT,
): Promise<Answer> {
  const response = await yogaAs(settings, actor).fetch("http://control/graphql", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ query }),
  });
  return { status: response.status, headers: response.headers, ...await response.json() };
}

Deno.test("introspection is never open to anonymous callers, and per policy to the others", async () => {
  const expected: Record<IntrospectionPolicy, Record<Actor["kind"], boolean>> = {
    authenticated: { operator: true, user: true, api_key: true },
    operators: { operator: true, user: false, api_key: false },
    off: { operator: false, user: false, api_key: false },
  };
  for (const policy of INTROSPECTION_POLICIES) {
    for (const actor of ACTORS) {
      const allowed = expected[policy][actor.kind];
      assert.equal(mayIntrospect(policy, actor), allowed, `${policy} ${actor.kind}`);
      const answer = await introspect({ introspection: policy }, actor);
      if (allowed) {
        assert.equal(answer.errors, undefined, `${policy} ${actor.kind}`);
      } else {
        assert.equal(answer.status, 403, `${policy} ${actor.kind}`);
        assert.equal(onlyError(answer).extensions?.code, INTROSPECTION_DISABLED);
        assert.equal(answer.data, undefined, "nothing was executed");
      }
    }
    assert.equal(mayIntrospect(policy, null), false);
    const anonymous = await introspect({ introspection: policy }, null);
    assert.equal(anonymous.status, policy === "off" ? 403 : 401, policy);
    assert.equal(onlyError(anonymous).extensions?.code, INTROSPECTION_DISABLED);
  }

  const anonymous = onlyError(await introspect({}, null));
  assert.equal(
    anonymous.message,
    "Introspection needs authentication: send Authorization: Bearer <token>.",
  );
  const user = onlyError(await introspect({ introspection: "operators" }, USER));
  assert.equal(user.message, "Introspection is open to operators only on this server.");

  // __type is introspection too, also inside a fragment; __typename alone is not.
  const viaType = await introspect({}, null, '{ __type(name: "Query") { name } }');
  assert.equal(viaType.status, 401);
  const viaFragment = await introspect(
    {},
    null,
    "query { ...Root } fragment Root on Query { __schema { queryType { name } } }",
  );
  assert.equal(viaFragment.status, 401);
  const typename = await introspect({}, null, "{ __typename }");
  assert.deepEqual(typename.data, { __typename: "Query" });
});
