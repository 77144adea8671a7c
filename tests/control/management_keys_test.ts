/**
 * API keys on /graphql: a management-scoped key acts as an admin of its own
 * account and sees nothing of another; an inference key is refused with 403;
 * a revoked, expired or rotated-out key with 401.
 */
import assert from "node:assert/strict";
import { sql } from "kysely";
import { hashSecret } from "../../schema/keys.ts";
import { deriveServerKeys } from "../../schema/secrets.ts";
import { createAccount, createApiKey, createUser, dataOf } from "../helpers/console.ts";
import { type GraphQLResult, startStack, TEST_SECRET } from "../helpers/stack.ts";

const NO_SUCH_ID = "00000000-0000-4000-8000-000000000000";

function refusal(result: GraphQLResult<unknown>) {
  return {
    status: result.status,
    code: result.errors?.[0]?.extensions?.code,
    data: result.data ?? null,
  };
}

Deno.test("a management key acts as an admin of its own account and sees nothing of another", async () => {
  const stack = await startStack();
  const db = stack.database.db.db;
  try {
    const a = await createAccount(stack, "A");
    const b = await createAccount(stack, "B");
    const { secret, keyId } = await createApiKey(stack, a, ["management"]);
    const gql = <T>(query: string, variables: Record<string, unknown> = {}) =>
      stack.graphql<T>(query, variables, secret);

    const me = dataOf(
      await gql<{ me: { kind: string; id: string; apiKeyId: string; memberships: unknown } }>(
        "{ me { kind id apiKeyId memberships { edges { node { role account { id } } } } } }",
      ),
    ).me;
    assert.equal(me.kind, "api_key");
    assert.match(me.id, /^key:tg_[A-Za-z0-9]{8}$/);
    assert.equal(me.apiKeyId, keyId);
    assert.deepEqual(me.memberships, { edges: [{ node: { role: "admin", account: { id: a } } }] });

    const listed = dataOf(
      await gql<{ accounts: { edges: { node: { id: string } }[] } }>(
        "{ accounts { edges { node { id } } } }",
      ),
    );
    assert.deepEqual(listed.accounts.edges.map((e) => e.node.id), [a], "only its own account");
    assert.equal(
      dataOf(await gql<{ account: { name: string } }>(`{ account(id: "${a}") { name } }`)).account
        .name,
      "A",
    );

    // Another account answers exactly like one that does not exist.
    const account = (id: string) => gql(`{ account(id: "${id}") { id } }`);
    const members = (id: string) => gql(`{ members(accountId: "${id}") { edges { cursor } } }`);
    for (const query of [account, members]) {
      const other = await query(b);
      const missing = await query(NO_SUCH_ID);
      assert.equal(other.errors?.[0]?.extensions?.code, "NOT_FOUND");
      assert.deepEqual(
        { ...other, headers: null, errors: other.errors?.map((e) => e.message.replace(b, "<id>")) },
        {
          ...missing,
          headers: null,
          errors: missing.errors?.map((e) => e.message.replace(NO_SUCH_ID, "<id>")),
        },
      );
    }

    // As an admin: it adds members below owner, but creates no accounts and grants no owner.
    const { email } = await createUser(stack);
    const add = (accountId: string, role: string) =>
      gql<{ addMember: { __typename: string; message?: string } }>(
        `mutation ($input: AddMemberInput!) { addMember(input: $input) {
          __typename ... on Error { message } } }`,
        { input: { accountId, email, role } },
      );
    assert.equal(dataOf(await add(a, "owner")).addMember.__typename, "ForbiddenError");
    assert.equal(dataOf(await add(b, "viewer")).addMember.__typename, "NotFoundError");
    assert.equal(dataOf(await add(a, "member")).addMember.__typename, "Member");
    const created = await gql<{ createAccount: { __typename: string } }>(
      'mutation { createAccount(input: { name: "Mine" }) { __typename } }',
    );
    assert.equal(dataOf(created).createAccount.__typename, "ForbiddenError");

    // Audited under the key's prefix; its last use is recorded.
    const audit = await db.selectFrom("audit_log").select(["actor", "account_id"])
      .where("action", "=", "member.add").executeTakeFirstOrThrow();
    assert.equal(audit.actor, me.id);
    assert.equal(audit.account_id, a);
    const key = await db.selectFrom("api_keys").select("last_used_at").where("id", "=", keyId)
      .executeTakeFirstOrThrow();
    assert.ok(key.last_used_at && Date.now() - key.last_used_at.getTime() < 60_000);
  } finally {
    await stack.close();
  }
});

Deno.test("an inference key gets 403 on /graphql; revoked, expired and rotated-out keys get 401", async () => {
  const stack = await startStack();
  const db = stack.database.db.db;
  try {
    const a = await createAccount(stack, "A");
    const query = "{ me { kind } }";

    const inference = await createApiKey(stack, a, ["inference"]);
    const refused = await stack.graphql(query, {}, inference.secret);
    assert.deepEqual(refusal(refused), { status: 403, code: "FORBIDDEN", data: null });
    assert.match(
      refused.errors![0]!.message,
      /no management scope: it calls the model API \(\/v1\)/,
    );
    const mutation = await stack.graphql(
      'mutation { createAccount(input: { name: "x" }) { __typename } }',
      {},
      inference.secret,
    );
    assert.deepEqual(refusal(mutation), { status: 403, code: "FORBIDDEN", data: null });

    const both = await createApiKey(stack, a, ["inference", "management"]);
    assert.equal(
      dataOf(await stack.graphql<{ me: { kind: string } }>(query, {}, both.secret)).me.kind,
      "api_key",
    );

    const revoked = await createApiKey(stack, a, ["management"]);
    const revoke = await stack.graphql(
      `mutation ($id: ID!) { revokeApiKey(input: { id: $id }) { __typename } }`,
      { id: revoked.keyId },
    );
    assert.equal(revoke.errors, undefined);
    const afterRevoke = await stack.graphql(query, {}, revoked.secret);
    assert.deepEqual(refusal(afterRevoke), { status: 401, code: "UNAUTHENTICATED", data: null });
    assert.match(afterRevoke.errors![0]!.message, /was revoked/);
    // A revoked inference key is a 401 too, not a 403.
    await db.updateTable("api_keys").set({ status: "revoked" }).where("id", "=", inference.keyId)
      .execute();
    assert.equal((await stack.graphql(query, {}, inference.secret)).status, 401);

    const expired = await createApiKey(stack, a, ["management"]);
    await db.updateTable("api_keys").set({ expires_at: sql<Date>`now() - interval '1 second'` })
      .where("id", "=", expired.keyId).execute();
    const afterExpiry = await stack.graphql(query, {}, expired.secret);
    assert.deepEqual(refusal(afterExpiry), { status: 401, code: "UNAUTHENTICATED", data: null });
    assert.match(afterExpiry.errors![0]!.message, /has expired/);

    // A rotated key's previous secret works until its grace ends, then not.
    const rotated = await createApiKey(stack, a, ["management"]);
    const previousHash = hashSecret(rotated.secret, deriveServerKeys(TEST_SECRET).hashing);
    await db.updateTable("api_keys")
      .set({
        key_hash: "0".repeat(64),
        previous_key_hash: previousHash,
        previous_expires_at: sql<Date>`now() + interval '1 hour'`,
      })
      .where("id", "=", rotated.keyId).execute();
    assert.equal((await stack.graphql(query, {}, rotated.secret)).status, 200, "within the grace");
    await db.updateTable("api_keys").set({ previous_expires_at: sql<Date>`now()` })
      .where("id", "=", rotated.keyId).execute();
    const afterGrace = await stack.graphql(query, {}, rotated.secret);
    assert.deepEqual(refusal(afterGrace), { status: 401, code: "UNAUTHENTICATED", data: null });

    const unknown = await stack.graphql(query, {}, "tg_" + "A".repeat(32) + "000000");
    assert.equal(unknown.status, 401);
  } finally {
    await stack.close();
  }
});

Deno.test("a management key's IP allowlist applies on /graphql too", async () => {
  const stack = await startStack();
  const db = stack.database.db.db;
  try {
    const a = await createAccount(stack, "A");
    const key = await createApiKey(stack, a, ["management"]);
    const allow = (ranges: string[] | null) =>
      db.updateTable("api_keys").set({ allowed_ips: ranges }).where("id", "=", key.keyId)
        .execute();
    const status = async () => (await stack.graphql("{ me { kind } }", {}, key.secret)).status;

    await allow(["10.0.0.0/8", "2001:db8::/32"]);
    assert.equal(await status(), 403, "127.0.0.1 is not listed");
    await allow(["10.0.0.0/8", "127.0.0.0/8"]);
    assert.equal(await status(), 200);
    await allow(null);
    assert.equal(await status(), 200);
  } finally {
    await stack.close();
  }
});
