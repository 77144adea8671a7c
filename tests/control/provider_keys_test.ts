/**
 * Customers' own provider keys (BYOK) through GraphQL: stored
 * envelope-encrypted, bound to account and provider, shown only by their last
 * 4, audited without the secret, and re-wrapped when the KEK rotates.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { randomBytes } from "node:crypto";
import { loadConfig } from "../../control/config.ts";
import { startControl } from "../../control/server.ts";
import { verifyAuditChain } from "../../control/services/audit.ts";
import { openEnvelope, providerKeyAad } from "../../schema/envelope.ts";
import { deriveServerKeys, type ServerKeys } from "../../schema/secrets.ts";
import {
  ADMIN_TOKEN,
  type GraphQLResult,
  type Stack,
  startStack,
  TEST_SECRET,
  waitFor,
} from "../helpers/stack.ts";

const KEY_FIELDS = "id accountId providerId last4 kekId createdAt updatedAt";
const RESULT_ERRORS = "... on Error { message } ... on InvalidInputError { field }";
const NO_SUCH_ID = "00000000-0000-4000-8000-000000000000";

interface ProviderKey {
  id: string;
  accountId: string;
  providerId: string;
  last4: string;
  kekId: string;
  createdAt: string;
  updatedAt: string;
}

type Result = Partial<ProviderKey> & { __typename: string; message?: string; field?: string };
type GraphQL = Stack["graphql"];

/** Every response body a test saw, to search for secrets afterwards. */
function recording(graphql: GraphQL, seen: string[]): GraphQL {
  return async <T>(query: string, variables?: Record<string, unknown>, token?: string | null) => {
    const result = await graphql<T>(query, variables, token);
    seen.push(JSON.stringify(result));
    return result;
  };
}

function dataOf<T>(result: GraphQLResult<T>): T {
  assert.equal(result.status, 200, JSON.stringify(result));
  assert.equal(result.errors, undefined, JSON.stringify(result.errors));
  assert.ok(result.data, "the response has data");
  return result.data;
}

async function setKey(graphql: GraphQL, input: Record<string, unknown>): Promise<Result> {
  return dataOf(
    await graphql<{ setProviderKey: Result }>(
      `mutation ($input: SetProviderKeyInput!) { setProviderKey(input: $input) {
        __typename ... on ProviderKey { ${KEY_FIELDS} } ${RESULT_ERRORS} } }`,
      { input },
    ),
  ).setProviderKey;
}

async function deleteKey(graphql: GraphQL, id: string): Promise<Result> {
  return dataOf(
    await graphql<{ deleteProviderKey: Result }>(
      `mutation ($id: ID!) { deleteProviderKey(input: { id: $id }) {
        __typename ... on ProviderKey { ${KEY_FIELDS} } ... on Error { message } } }`,
      { id },
    ),
  ).deleteProviderKey;
}

async function listKeys(graphql: GraphQL, accountId: string): Promise<ProviderKey[]> {
  return dataOf(
    await graphql<{ providerKeys: { edges: { node: ProviderKey }[] } }>(
      `query ($accountId: ID!) { providerKeys(accountId: $accountId) {
        edges { node { __typename ${KEY_FIELDS} } } } }`,
      { accountId },
    ),
  ).providerKeys.edges.map((edge) => edge.node);
}

async function rewrap(graphql: GraphQL) {
  return dataOf(
    await graphql<{
      rewrapProviderKeys: {
        __typename: string;
        rewrapped?: number;
        kekId?: string;
        id?: string;
        message?: string;
      };
    }>(
      `mutation { rewrapProviderKeys {
        __typename ... on RewrapProviderKeysResult { rewrapped kekId }
        ... on UnreadableProviderKeyError { id message } } }`,
    ),
  ).rewrapProviderKeys;
}

async function createAccount(graphql: GraphQL, name: string): Promise<string> {
  const result = await graphql<{ createAccount: { id: string } }>(
    `mutation ($name: String!) { createAccount(input: { name: $name }) { ... on Account { id } } }`,
    { name },
  );
  return dataOf(result).createAccount.id;
}

/** Two accounts and two providers (the seeded mock and one more). */
async function setUp(stack: Stack, graphql: GraphQL) {
  await stack.addModel({
    provider: "upstream",
    baseUrl: "http://127.0.0.1:9/v1",
    apiKey: "sk-operator-credential",
    model: "upstream-model",
    upstreamName: "m",
  });
  const providers = dataOf(
    await graphql<{ providers: { edges: { node: { id: string; name: string } }[] } }>(
      `{ providers { edges { node { id name } } } }`,
    ),
  ).providers.edges.map((edge) => edge.node);
  const providerId = (name: string) => providers.find((p) => p.name === name)!.id;
  return {
    acme: await createAccount(graphql, "Acme"),
    globex: await createAccount(graphql, "Globex"),
    mock: providerId("mock"),
    upstream: providerId("upstream"),
  };
}

/** A second control plane on the stack's database, with other server keys. */
async function controlWith(stack: Stack, keys: ServerKeys) {
  const config = loadConfig({
    TOLLGATE_DATA_DIR: "memory://",
    TOLLGATE_SECRET: TEST_SECRET,
    TOLLGATE_CONTROL_PORT: "0",
    TOLLGATE_ADMIN_TOKEN: ADMIN_TOKEN,
  });
  const control = await startControl({ db: stack.database.db.db, keys, config });
  const graphql: GraphQL = async (query, variables = {}) => {
    const response = await fetch(`${control.url}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${ADMIN_TOKEN}` },
      body: JSON.stringify({ query, variables }),
    });
    return { status: response.status, headers: response.headers, ...await response.json() };
  };
  return { graphql, close: () => control.shutdown() };
}

function storedKey(stack: Stack, id: string) {
  return stack.database.db.db.selectFrom("customer_provider_keys").selectAll()
    .where("id", "=", id).executeTakeFirstOrThrow();
}

async function auditRows(stack: Stack) {
  return await stack.database.db.db.selectFrom("audit_log").selectAll().orderBy("id").execute();
}

function stringify(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? v.toString() : v));
}

Deno.test("provider keys are set, listed, replaced and deleted, and only their last 4 ever come out", async () => {
  const stack = await startStack();
  const seen: string[] = [];
  const graphql = recording(stack.graphql, seen);
  try {
    const { acme, globex, mock, upstream } = await setUp(stack, graphql);
    const first = "sk-acme-first-" + crypto.randomUUID();
    const second = "sk-acme-second-" + crypto.randomUUID();
    const other = "sk-acme-other-" + crypto.randomUUID();

    const created = await setKey(graphql, { accountId: acme, providerId: mock, apiKey: first });
    assert.equal(created.__typename, "ProviderKey", JSON.stringify(created));
    assert.deepEqual(
      { accountId: created.accountId, providerId: created.providerId, last4: created.last4 },
      { accountId: acme, providerId: mock, last4: first.slice(-4) },
    );
    assert.equal(created.kekId, "derived", "the quickstart KEK, derived from the server secret");
    assert.deepEqual(await listKeys(graphql, acme), [created]);
    assert.deepEqual(await listKeys(graphql, globex), []);

    const replaced = await setKey(graphql, { accountId: acme, providerId: mock, apiKey: second });
    assert.equal(replaced.id, created.id, "one key per account and provider: replaced in place");
    assert.equal(replaced.last4, second.slice(-4));
    assert.equal(replaced.createdAt, created.createdAt);
    assert.ok(replaced.updatedAt! >= created.updatedAt!);
    const another = await setKey(graphql, { accountId: acme, providerId: upstream, apiKey: other });
    assert.deepEqual((await listKeys(graphql, acme)).map((k) => k.last4), [
      second.slice(-4),
      other.slice(-4),
    ]);

    const row = await storedKey(stack, created.id!);
    assert.ok(!row.ciphertext.includes(second) && !row.ciphertext.includes(first));
    assert.equal(row.kek_id, "derived");
    const keyring = deriveServerKeys(TEST_SECRET).keyring;
    assert.equal(openEnvelope(row.ciphertext, keyring, providerKeyAad(acme, mock)), second);
    assert.throws(() => openEnvelope(row.ciphertext, keyring, providerKeyAad(globex, mock)));
    assert.throws(() => openEnvelope(row.ciphertext, keyring, providerKeyAad(acme, upstream)));

    const deleted = await deleteKey(graphql, another.id!);
    assert.deepEqual(deleted, another);
    assert.deepEqual((await listKeys(graphql, acme)).map((k) => k.id), [created.id]);
    assert.equal((await deleteKey(graphql, another.id!)).__typename, "NotFoundError");
    assert.equal((await deleteKey(graphql, "not-a-uuid")).__typename, "NotFoundError");

    const audit = await auditRows(stack);
    const actions = audit.filter((r) => r.target_type === "provider_key");
    assert.deepEqual(actions.map((r) => r.action), [
      "provider_key.create",
      "provider_key.replace",
      "provider_key.create",
      "provider_key.delete",
    ]);
    assert.deepEqual(actions[1]!.diff, {
      accountId: acme,
      providerId: mock,
      last4: second.slice(-4),
      kekId: "derived",
    });
    assert.deepEqual(await verifyAuditChain(stack.database.db.db), {
      ok: true,
      rows: audit.length,
    });

    const everything = seen.join("\n") + stringify(audit);
    for (const secret of [first, second, other]) {
      assert.ok(!everything.includes(secret), "the secret is in no response and no audit row");
      assert.ok(!everything.includes(secret.slice(0, -4)), "nor is any more of it than its last 4");
    }
  } finally {
    await stack.close();
  }
});

Deno.test("a provider key must be a plausible secret for an existing account and provider", async () => {
  const stack = await startStack();
  try {
    const { acme, mock } = await setUp(stack, stack.graphql);
    const refused = async (apiKey: string) => {
      const result = await setKey(stack.graphql, { accountId: acme, providerId: mock, apiKey });
      assert.equal(result.__typename, "InvalidInputError", JSON.stringify(result));
      assert.equal(result.field, "apiKey");
      if (apiKey.trim()) assert.ok(!result.message!.includes(apiKey.trim()));
      return result.message!;
    };
    assert.match(await refused(""), /at least 8 characters/);
    assert.match(await refused("   "), /at least 8 characters/);
    assert.match(await refused("sk-abc def-ghi"), /without whitespace/);
    assert.match(await refused("sk-abc\tdef-ghi"), /without whitespace/);
    assert.match(await refused("sk-clé-0123456"), /printable ASCII/);
    assert.match(await refused("x".repeat(4097)), /at most 4096 characters/);

    const padded = await setKey(stack.graphql, {
      accountId: acme,
      providerId: mock,
      apiKey: `  sk-${"y".repeat(4092)}Z\n`,
    });
    assert.equal(padded.last4, "yyyZ", "surrounding whitespace is trimmed; 4096 is allowed");

    for (
      const [accountId, providerId, missing] of [
        [NO_SUCH_ID, mock, /account "[^"]+" not found/],
        ["nope", mock, /account "nope" not found/],
        [acme, NO_SUCH_ID, /No provider/],
      ] as const
    ) {
      const result = await setKey(stack.graphql, { accountId, providerId, apiKey: "sk-valid-key" });
      assert.equal(result.__typename, "NotFoundError");
      assert.match(result.message!, missing);
    }
    assert.equal((await listKeys(stack.graphql, acme)).length, 1);
    const malformed = await stack.graphql(
      `{ providerKeys(accountId: "not-a-uuid") { edges { cursor } } }`,
    );
    assert.equal(malformed.errors?.[0]?.extensions?.code, "NOT_FOUND");

    const anonymous = await stack.graphql(
      `{ providerKeys(accountId: "${acme}") { edges { cursor } } }`,
      {},
      null,
    );
    assert.equal(anonymous.status, 401, "the control plane needs an operator token");
  } finally {
    await stack.close();
  }
});

Deno.test("after a KEK rotation rewrapProviderKeys moves every key to the new KEK, which alone opens them", async () => {
  const stack = await startStack();
  const k2 = Buffer.from(randomBytes(32)).toString("base64");
  const rotated = await controlWith(
    stack,
    deriveServerKeys(TEST_SECRET, { TOLLGATE_KEK: k2, TOLLGATE_KEK_ID: "k2" }),
  );
  const k3 = Buffer.from(randomBytes(32)).toString("base64");
  const k2Lost = await controlWith(
    stack,
    deriveServerKeys(TEST_SECRET, { TOLLGATE_KEK: k3, TOLLGATE_KEK_ID: "k3" }),
  );
  try {
    const { acme, globex, mock, upstream } = await setUp(stack, stack.graphql);
    const secrets = new Map<string, string>();
    for (const [accountId, providerId] of [[acme, mock], [acme, upstream], [globex, mock]]) {
      const apiKey = `sk-${crypto.randomUUID()}`;
      const key = await setKey(stack.graphql, { accountId, providerId, apiKey });
      secrets.set(key.id!, apiKey);
    }
    const before = await Promise.all([...secrets.keys()].map((id) => storedKey(stack, id)));
    assert.ok(before.every((row) => row.kek_id === "derived"));

    // The rotated keyring still opens what the old KEK sealed, and seals new keys under k2.
    assert.deepEqual(await rewrap(rotated.graphql), {
      __typename: "RewrapProviderKeysResult",
      rewrapped: 3,
      kekId: "k2",
    });
    assert.deepEqual(await rewrap(rotated.graphql), {
      __typename: "RewrapProviderKeysResult",
      rewrapped: 0,
      kekId: "k2",
    });
    const onlyK2 = {
      current: { id: "k2", key: new Uint8Array(Buffer.from(k2, "base64")) },
      previous: [],
    };
    for (const old of before) {
      const row = await storedKey(stack, old.id);
      assert.equal(row.kek_id, "k2");
      assert.equal(row.ciphertext.split(".")[4], old.ciphertext.split(".")[4], "data untouched");
      const aad = providerKeyAad(row.account_id, row.provider_id);
      assert.equal(openEnvelope(row.ciphertext, onlyK2, aad), secrets.get(row.id));
    }
    assert.ok((await listKeys(rotated.graphql, acme)).every((key) => key.kekId === "k2"));
    const fresh = await setKey(rotated.graphql, {
      accountId: globex,
      providerId: upstream,
      apiKey: "sk-sealed-under-k2",
    });
    assert.equal(fresh.kekId, "k2");

    // Dropping k2 before re-wrapping under k3 leaves keys no keyring opens: named, not lost.
    const unreadable = await rewrap(k2Lost.graphql);
    assert.equal(unreadable.__typename, "UnreadableProviderKeyError");
    assert.ok(secrets.has(unreadable.id!) || unreadable.id === fresh.id);
    assert.match(unreadable.message!, /unknown KEK id "k2"/);

    const rewraps = (await auditRows(stack)).filter((r) => r.action === "provider_key.rewrap");
    assert.deepEqual(rewraps.map((r) => r.diff), [
      { kekId: "k2", count: 3, from: ["derived"] },
      { kekId: "k2", count: 0, from: [] },
    ]);
  } finally {
    await rotated.close();
    await k2Lost.close();
    await stack.close();
  }
});

Deno.test("writes to provider keys notify the gateways, and an account's keys go with it", async () => {
  const stack = await startStack();
  const seen: { table: string; op: string }[] = [];
  const unlisten = await stack.database.db.listen(
    "tollgate_policy",
    (payload) => seen.push(JSON.parse(payload)),
  );
  try {
    const { acme, mock } = await setUp(stack, stack.graphql);
    seen.length = 0;
    const key = await setKey(stack.graphql, {
      accountId: acme,
      providerId: mock,
      apiKey: "sk-notify-me-1",
    });
    await setKey(stack.graphql, { accountId: acme, providerId: mock, apiKey: "sk-notify-me-2" });
    await deleteKey(stack.graphql, key.id!);
    await waitFor(() => seen.filter((s) => s.table === "customer_provider_keys").length === 3);
    assert.deepEqual(
      seen.filter((s) => s.table === "customer_provider_keys").map((s) => s.op),
      ["INSERT", "UPDATE", "DELETE"],
    );

    await setKey(stack.graphql, { accountId: acme, providerId: mock, apiKey: "sk-cascade-1" });
    await stack.database.db.db.deleteFrom("accounts").where("id", "=", acme).execute();
    const left = await stack.database.db.db.selectFrom("customer_provider_keys").select("id")
      .execute();
    assert.deepEqual(left, []);
  } finally {
    await unlisten();
    await stack.close();
  }
});
