/**
 * The API key lifecycle in the control plane: creation with limits, updates
 * (omitted fields kept, null clearing), rotation with a grace period,
 * revocation, the derived status, the keyset-paged list, the audit trail
 * (never a secret or hash), and who may do each (control/access.ts). The
 * services are called with Actor values for the roles; the GraphQL surface is
 * exercised over HTTP against a running stack.
 */
import assert from "node:assert/strict";
import { type Kysely, sql } from "kysely";
import type { Actor, Role } from "../../control/access.ts";
import { ForbiddenError, InvalidInputError, NotFoundError } from "../../control/errors.ts";
import {
  apiKeyCursor,
  apiKeyStatus,
  createApiKey,
  type CreateApiKeyInput,
  getApiKey,
  listApiKeys,
  MAX_GRACE_SECONDS,
  revokeApiKey,
  rotateApiKey,
  updateApiKey,
} from "../../control/services/api_keys.ts";
import type { AuditMeta } from "../../control/services/audit.ts";
import type { ApiKey, Database } from "../../schema/database.ts";
import { hashSecret } from "../../schema/keys.ts";
import { deriveServerKeys } from "../../schema/secrets.ts";
import { freshDatabase } from "../helpers/database.ts";
import { type Stack, startStack, TEST_SECRET } from "../helpers/stack.ts";

const keys = deriveServerKeys(TEST_SECRET);
const OPERATOR: Actor = { kind: "operator", id: "admin:configured" };
const NO_SUCH_ID = "00000000-0000-4000-8000-000000000000";
const audit: AuditMeta = { actor: "test", ip: null, requestId: null };

function user(roles: Record<string, Role>): Actor {
  return { kind: "user", id: "user:u", userId: "u", roles: new Map(Object.entries(roles)) };
}

async function withDb(run: (db: Kysely<Database>) => Promise<void>): Promise<void> {
  const database = await freshDatabase();
  try {
    await run(database.db.db);
  } finally {
    await database.drop();
  }
}

async function account(db: Kysely<Database>, name = "Acme"): Promise<string> {
  const row = await db.insertInto("accounts").values({ name }).returning("id")
    .executeTakeFirstOrThrow();
  return row.id;
}

function create(
  db: Kysely<Database>,
  input: CreateApiKeyInput,
  actor: Actor = OPERATOR,
) {
  return createApiKey(db, input, { keys, actor, audit });
}

/** The error `run` rejects with. */
async function failure(run: () => Promise<unknown>): Promise<Error> {
  try {
    await run();
  } catch (error) {
    assert.ok(error instanceof Error);
    return error;
  }
  assert.fail("expected a refusal");
}

/** Every audit diff as one string, to search for secrets and hashes. */
async function auditText(db: Kysely<Database>): Promise<string> {
  const rows = await db.selectFrom("audit_log").select(["action", "diff"]).orderBy("id").execute();
  return JSON.stringify(rows);
}

Deno.test("createApiKey stores every limit, canonical and deduplicated; bad limits name their field", async () => {
  await withDb(async (db) => {
    const accountId = await account(db);
    const expiresAt = new Date(Date.now() + 86_400_000);
    const { apiKey, secret } = await create(db, {
      accountId,
      name: "ci",
      expiresAt,
      allowedModels: ["gpt", "gpt"],
      allowedIps: ["10.0.0.0/8", " 2001:DB8::/32", "10.0.0.0/8", "::ffff:192.0.2.1"],
      spendLimit: 2_500_000_000n,
      rpmLimit: 60,
      tpmLimit: 100_000,
    });
    assert.match(secret, /^tg_/);
    assert.deepEqual(
      {
        ips: apiKey.allowed_ips,
        models: apiKey.allowed_models,
        spend: apiKey.spend_limit,
        rpm: apiKey.rpm_limit,
        tpm: apiKey.tpm_limit,
        expires: apiKey.expires_at?.getTime(),
        previous: apiKey.previous_key_hash,
      },
      {
        ips: ["10.0.0.0/8", "2001:db8::/32", "192.0.2.1"],
        models: ["gpt"],
        spend: 2_500_000_000n,
        rpm: 60,
        tpm: 100_000,
        expires: expiresAt.getTime(),
        previous: null,
      },
    );
    const plain = (await create(db, { accountId, name: "plain" })).apiKey;
    assert.deepEqual(
      [plain.allowed_ips, plain.spend_limit, plain.rpm_limit, plain.tpm_limit, plain.expires_at],
      [null, null, null, null, null],
      "every limit is optional",
    );

    const refusals: [Partial<CreateApiKeyInput>, string, RegExp][] = [
      [{ allowedIps: ["10.1.2.3/8"] }, "allowedIps.0", /the range is 10\.0\.0\.0\/8/],
      [{ allowedIps: ["10.0.0.0/8", "my-laptop"] }, "allowedIps.1", /not an IPv4 or IPv6/],
      [{ allowedIps: [] }, "allowedIps", /at least one address.*null allows any/],
      [{ allowedIps: Array(101).fill("10.0.0.1") }, "allowedIps", /at most 100/],
      [{ rpmLimit: 0 }, "rpmLimit", /at least 1/],
      [{ rpmLimit: 2_000_000 }, "rpmLimit", /at most 1000000/],
      [{ tpmLimit: 1.5 }, "tpmLimit", /whole number/],
      [{ spendLimit: -1n }, "spendLimit", /negative/],
      [{ expiresAt: new Date(Date.now() - 1000) }, "expiresAt", /future/],
    ];
    for (const [input, field, message] of refusals) {
      const error = await failure(() => create(db, { accountId, name: "bad", ...input }));
      assert.ok(error instanceof InvalidInputError, `${field}: ${error.message}`);
      assert.equal(error.field, field);
      assert.match(error.message, message);
    }
    assert.equal((await db.selectFrom("api_keys").select("id").execute()).length, 2);
  });
});

Deno.test("updateApiKey keeps omitted fields, clears those given as null, and audits only what changed", async () => {
  await withDb(async (db) => {
    const accountId = await account(db);
    const { apiKey } = await create(db, {
      accountId,
      name: "ci",
      allowedIps: ["10.0.0.0/8"],
      spendLimit: 100n,
      rpmLimit: 10,
      tpmLimit: 1000,
    });
    const options = { actor: OPERATOR, audit };
    const renamed = await updateApiKey(db, { id: apiKey.id, name: "deploys" }, options);
    assert.equal(renamed.name, "deploys");
    assert.deepEqual(
      [renamed.allowed_ips, renamed.spend_limit, renamed.rpm_limit, renamed.tpm_limit],
      [["10.0.0.0/8"], 100n, 10, 1000],
      "omitted: unchanged",
    );
    const cleared = await updateApiKey(
      db,
      { id: apiKey.id, allowedIps: null, rpmLimit: null, spendLimit: 5n },
      options,
    );
    assert.deepEqual(
      [cleared.allowed_ips, cleared.spend_limit, cleared.rpm_limit, cleared.tpm_limit],
      [null, 5n, null, 1000],
    );
    assert.ok(cleared.updated_at >= apiKey.updated_at);

    const error = await failure(() =>
      updateApiKey(db, { id: apiKey.id, allowedIps: ["300.0.0.1"] }, options)
    );
    assert.ok(error instanceof InvalidInputError);
    assert.equal(error.field, "allowedIps.0");
    const missing = await failure(() => updateApiKey(db, { id: NO_SUCH_ID, name: "x" }, options));
    assert.ok(missing instanceof NotFoundError);

    const updates = await db.selectFrom("audit_log").select("diff")
      .where("action", "=", "api_key.update").orderBy("id").execute();
    assert.deepEqual(updates.map((u) => u.diff), [
      { name: ["ci", "deploys"] },
      { allowedIps: [["10.0.0.0/8"], null], rpmLimit: [10, null], spendLimit: ["100", "5"] },
    ]);
  });
});

Deno.test("rotateApiKey gives the same key a new secret and keeps the old one's hash for the grace period", async () => {
  await withDb(async (db) => {
    const accountId = await account(db);
    const created = await create(db, { accountId, name: "ci", rpmLimit: 5 });
    const options = { keys, actor: OPERATOR, audit };
    const hash = (secret: string) => hashSecret(secret, keys.hashing);

    const before = Date.now();
    const first = await rotateApiKey(db, { id: created.apiKey.id, graceSeconds: 3600 }, options);
    assert.equal(first.apiKey.id, created.apiKey.id, "the same key");
    assert.notEqual(first.secret, created.secret);
    assert.equal(first.apiKey.key_hash, hash(first.secret));
    assert.equal(first.apiKey.prefix, first.secret.slice(0, 11));
    assert.equal(first.apiKey.last4, first.secret.slice(-4));
    assert.equal(first.apiKey.previous_key_hash, hash(created.secret));
    const graceEnd = first.apiKey.previous_expires_at!.getTime();
    assert.ok(graceEnd >= before + 3_599_000 && graceEnd <= Date.now() + 3_601_000);
    assert.equal(first.apiKey.rpm_limit, 5, "limits are kept");

    // Rotating again during the grace ends it: only the latest replaced secret is kept.
    const second = await rotateApiKey(db, { id: created.apiKey.id, graceSeconds: 60 }, options);
    assert.equal(second.apiKey.key_hash, hash(second.secret));
    assert.equal(second.apiKey.previous_key_hash, hash(first.secret));
    const stored = await db.selectFrom("api_keys").select(["key_hash", "previous_key_hash"])
      .execute();
    assert.ok(
      !stored.some((r) => [r.key_hash, r.previous_key_hash].includes(hash(created.secret))),
      "the first secret's hash is gone",
    );

    const third = await rotateApiKey(db, { id: created.apiKey.id, graceSeconds: 0 }, options);
    assert.deepEqual(
      [third.apiKey.previous_key_hash, third.apiKey.previous_expires_at],
      [null, null],
      "grace 0: the replaced secret stops at once",
    );

    for (const graceSeconds of [-1, MAX_GRACE_SECONDS + 1, 1.5]) {
      const error = await failure(() =>
        rotateApiKey(db, { id: created.apiKey.id, graceSeconds }, options)
      );
      assert.ok(error instanceof InvalidInputError, String(graceSeconds));
      assert.equal(error.field, "graceSeconds");
    }
    const week = await rotateApiKey(
      db,
      { id: created.apiKey.id, graceSeconds: MAX_GRACE_SECONDS },
      options,
    );
    assert.ok(week.apiKey.previous_expires_at! > new Date(Date.now() + 6.9 * 86_400_000));

    await revokeApiKey(db, { id: created.apiKey.id }, { actor: OPERATOR, audit });
    const revoked = await failure(() =>
      rotateApiKey(db, { id: created.apiKey.id, graceSeconds: 0 }, options)
    );
    assert.ok(revoked instanceof InvalidInputError);
    assert.match(revoked.message, /revoked key cannot be rotated/);

    const rotations = await db.selectFrom("audit_log").select(["diff", "account_id"])
      .where("action", "=", "api_key.rotate").orderBy("id").execute();
    assert.equal(rotations.length, 4);
    assert.deepEqual(rotations[1]!.diff.prefix, [first.apiKey.prefix, second.apiKey.prefix]);
    assert.equal(rotations[1]!.diff.graceSeconds, 60);
    assert.equal(
      rotations[1]!.diff.graceEndsAt,
      second.apiKey.previous_expires_at!.toISOString(),
    );
    assert.equal(
      rotations[1]!.diff.endedEarlierGrace,
      first.apiKey.previous_expires_at!.toISOString(),
      "the grace cut short is recorded",
    );
    assert.equal(rotations[2]!.diff.graceEndsAt, null, "grace 0");
    assert.ok(rotations.every((r) => r.account_id === accountId));

    // No secret, and no hash of one (current or previous), anywhere in the audit log.
    const text = await auditText(db);
    for (const secret of [created.secret, first.secret, second.secret, third.secret]) {
      assert.ok(!text.includes(secret.slice(3, 30)), "no secret");
      assert.ok(!text.includes(hash(secret)), "no hash");
    }
  });
});

Deno.test("a key's status is derived: active, expired from its expiry on, revoked once revoked", () => {
  const key = (fields: Partial<ApiKey>) =>
    ({ status: "active", expires_at: null, ...fields }) as ApiKey;
  const now = new Date("2027-01-01T00:00:00Z");
  assert.equal(apiKeyStatus(key({}), now), "active");
  assert.equal(apiKeyStatus(key({ expires_at: new Date("2027-01-01T00:00:01Z") }), now), "active");
  assert.equal(apiKeyStatus(key({ expires_at: now }), now), "expired");
  assert.equal(
    apiKeyStatus(key({ status: "revoked", expires_at: new Date(0) }), now),
    "revoked",
    "revoked wins over expired",
  );
});

Deno.test("viewers read keys, members manage inference keys, admins management keys; other tenants' keys look missing", async () => {
  await withDb(async (db) => {
    const a = await account(db, "A");
    const b = await account(db, "B");
    const inference = (await create(db, { accountId: a, name: "inference" })).apiKey;
    const management = (await create(db, { accountId: a, name: "m", scopes: ["management"] }))
      .apiKey;
    const page = { limit: 10, inverted: false };
    const as = (actor: Actor) => ({ keys, actor, audit });

    const viewer = user({ [a]: "viewer" });
    assert.equal((await listApiKeys(db, a, page, { actor: viewer })).length, 2);
    assert.equal((await getApiKey(db, inference.id, { actor: viewer }))?.id, inference.id);
    for (
      const attempt of [
        () => create(db, { accountId: a, name: "x" }, viewer),
        () => updateApiKey(db, { id: inference.id, name: "x" }, as(viewer)),
        () => rotateApiKey(db, { id: inference.id, graceSeconds: 0 }, as(viewer)),
        () => revokeApiKey(db, { id: inference.id }, as(viewer)),
      ]
    ) {
      const error = await failure(attempt);
      assert.ok(error instanceof ForbiddenError, error.message);
      assert.match(error.message, /needs the member role.*you are viewer/);
    }

    const member = user({ [a]: "member" });
    const made = await create(db, { accountId: a, name: "by member", rpmLimit: 5 }, member);
    await updateApiKey(db, { id: made.apiKey.id, tpmLimit: 10 }, as(member));
    await rotateApiKey(db, { id: made.apiKey.id, graceSeconds: 10 }, as(member));
    await revokeApiKey(db, { id: made.apiKey.id }, as(member));
    for (
      const attempt of [
        () => create(db, { accountId: a, name: "x", scopes: ["inference", "management"] }, member),
        () => updateApiKey(db, { id: management.id, name: "x" }, as(member)),
        () => rotateApiKey(db, { id: management.id, graceSeconds: 0 }, as(member)),
        () => revokeApiKey(db, { id: management.id }, as(member)),
      ]
    ) {
      const error = await failure(attempt);
      assert.ok(error instanceof ForbiddenError, error.message);
      assert.match(error.message, /needs the admin role/);
    }

    const admin = user({ [a]: "admin" });
    await create(db, { accountId: a, name: "m2", scopes: ["management"] }, admin);
    await rotateApiKey(db, { id: management.id, graceSeconds: 0 }, as(admin));
    // A management key acts in its own account as an admin.
    const asKey: Actor = {
      kind: "api_key",
      id: "key:tg_x",
      keyId: management.id,
      accountId: a,
      role: "admin",
    };
    await updateApiKey(db, { id: inference.id, rpmLimit: 7 }, as(asKey));

    // Another tenant's account and keys are reported exactly as missing ones are.
    const outsider = user({ [b]: "owner" });
    const same = (error: Error, id: string) => error.message.replaceAll(id, "<id>");
    const hidden = await failure(() => listApiKeys(db, a, page, { actor: outsider }));
    const absent = await failure(() => listApiKeys(db, NO_SUCH_ID, page, { actor: OPERATOR }));
    assert.ok(hidden instanceof NotFoundError && absent instanceof NotFoundError);
    assert.equal(same(hidden, a), same(absent, NO_SUCH_ID));
    const bKey = (await create(db, { accountId: b, name: "b key" })).apiKey.id;
    const missingKey = await failure(() =>
      updateApiKey(db, { id: NO_SUCH_ID, name: "x" }, as(OPERATOR))
    );
    const attempts: [string, (id: string) => Promise<unknown>][] = [
      [inference.id, (id) => updateApiKey(db, { id, name: "x" }, as(outsider))],
      [inference.id, (id) => revokeApiKey(db, { id }, as(outsider))],
      // A management key of account A cannot reach B's keys.
      [bKey, (id) => rotateApiKey(db, { id, graceSeconds: 0 }, as(asKey))],
    ];
    for (const [target, attempt] of attempts) {
      const hiddenKey = await failure(() => attempt(target));
      assert.ok(hiddenKey instanceof NotFoundError, hiddenKey.message);
      assert.equal(same(hiddenKey, target), same(missingKey, NO_SUCH_ID));
    }
    const createdElsewhere = await failure(() => create(db, { accountId: a, name: "x" }, outsider));
    const createdNowhere = await failure(() => create(db, { accountId: NO_SUCH_ID, name: "x" }));
    assert.equal(same(createdElsewhere, a), same(createdNowhere, NO_SUCH_ID));
    assert.equal(await getApiKey(db, inference.id, { actor: outsider }), null);
    assert.equal(await getApiKey(db, "not-a-uuid", { actor: OPERATOR }), null);
  });
});

Deno.test("listApiKeys pages newest first by (created_at, id), exact even for keys made in the same microsecond", async () => {
  await withDb(async (db) => {
    const accountId = await account(db);
    const other = await account(db, "Other");
    const at = "2026-11-22T10:00:00.123456Z";
    // Three keys share one instant; ids then decide, descending.
    const rows = [
      { name: "old", created_at: "2026-11-22T09:00:00.000001Z" },
      { name: "tie1", created_at: at },
      { name: "tie2", created_at: at },
      { name: "tie3", created_at: at },
      { name: "new", created_at: "2026-11-22T10:00:00.123457Z" },
    ];
    let n = 0;
    for (const row of rows) {
      await db.insertInto("api_keys").values({
        account_id: accountId,
        key_hash: `hash${n}`,
        prefix: "tg_x",
        last4: String(n++).padStart(4, "0"),
        name: row.name,
        // As text: Postgres.js would send a string bound to a timestamptz as a Date, in ms.
        created_at: sql<Date>`${row.created_at}::text::timestamptz`,
      }).execute();
    }
    await create(db, { accountId: other, name: "someone else's" });
    const all = await db.selectFrom("api_keys").selectAll().where("account_id", "=", accountId)
      .execute();
    // Newest first; a Date drops the microseconds, so the instants are ranked by name.
    const rank = (name: string) => name === "old" ? 0 : name === "new" ? 2 : 1;
    const expected = [...all].sort((x, y) => rank(y.name) - rank(x.name) || (x.id < y.id ? 1 : -1))
      .map((k) => k.id);
    assert.equal(expected.length, 5);

    const actor = { actor: OPERATOR };
    const seen: string[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await listApiKeys(db, accountId, { limit: 2, inverted: false, after }, actor);
      seen.push(...page.map((k) => k.id));
      if (page.length < 2) break;
      after = apiKeyCursor(page[page.length - 1]!);
    }
    assert.deepEqual(seen, expected, "forwards, page by page, nothing skipped or repeated");

    // Backwards from the oldest: the nearest first (the caller flips the page).
    const before = apiKeyCursor(all.find((k) => k.name === "old")!);
    const back = await listApiKeys(db, accountId, { limit: 3, inverted: true, before }, actor);
    assert.deepEqual(back.map((k) => k.id), expected.slice(1, 4).reverse());

    const bad = await failure(() =>
      listApiKeys(db, accountId, { limit: 2, inverted: false, after: "nonsense" }, actor)
    );
    assert.ok(bad instanceof InvalidInputError);
    assert.equal(bad.field, "after");
  });
});

// ---- Over GraphQL ----

const KEY_FIELDS = "id name prefix last4 status expiresAt lastUsedAt rotatedAt " +
  "previousSecretValidUntil allowedIps spendLimit rpmLimit tpmLimit";
const RESULT_ERRORS = "... on Error { message } ... on InvalidInputError { field }";

interface KeyNode {
  id: string;
  name: string;
  prefix: string;
  last4: string;
  status: string;
  expiresAt: string | null;
  lastUsedAt: string | null;
  rotatedAt: string | null;
  previousSecretValidUntil: string | null;
  allowedIps: string[] | null;
  spendLimit: string | null;
  rpmLimit: number | null;
  tpmLimit: number | null;
}

interface Connection {
  edges: { cursor: string; node: KeyNode }[];
  pageInfo: { hasNextPage: boolean; endCursor: string };
}

async function page(stack: Stack, accountId: string, after?: string): Promise<Connection> {
  const result = await stack.graphql<{ apiKeys: Connection }>(
    `query ($accountId: ID!, $after: String) {
      apiKeys(accountId: $accountId, first: 2, after: $after) {
        edges { cursor node { ${KEY_FIELDS} } } pageInfo { hasNextPage endCursor } } }`,
    { accountId, after },
  );
  assert.equal(result.errors, undefined, JSON.stringify(result.errors));
  return result.data!.apiKeys;
}

Deno.test("over GraphQL: keys with limits, a Relay connection of them, apiKey(id), updates and rotation", async () => {
  const stack = await startStack();
  try {
    const { accountId, keyId: firstId } = await stack.createKey();
    const created = await stack.graphql<
      { createApiKey: { __typename: string; secret: string; apiKey: KeyNode } }
    >(
      `mutation ($input: CreateApiKeyInput!) { createApiKey(input: $input) {
        __typename ... on CreatedApiKey { secret apiKey { ${KEY_FIELDS} } } ${RESULT_ERRORS} } }`,
      {
        input: {
          accountId,
          name: "limited",
          allowedIps: ["192.0.2.0/24", "2001:DB8::1"],
          spendLimit: "12.5",
          rpmLimit: 30,
          tpmLimit: 40000,
        },
      },
    );
    const limited = created.data!.createApiKey;
    assert.equal(limited.__typename, "CreatedApiKey", JSON.stringify(created));
    assert.deepEqual(
      [limited.apiKey.allowedIps, limited.apiKey.spendLimit, limited.apiKey.rpmLimit],
      [["192.0.2.0/24", "2001:db8::1"], "12.50000000", 30],
    );
    assert.equal(limited.apiKey.status, "active");
    const third = await stack.graphql<{ createApiKey: { apiKey: KeyNode } }>(
      `mutation ($accountId: ID!) { createApiKey(input: { accountId: $accountId, name: "third" }) {
        ... on CreatedApiKey { apiKey { id } } } }`,
      { accountId },
    );
    const thirdId = third.data!.createApiKey.apiKey.id;

    const first = await page(stack, accountId);
    assert.deepEqual(first.edges.map((e) => e.node.id), [thirdId, limited.apiKey.id]);
    assert.equal(first.pageInfo.hasNextPage, true);
    const second = await page(stack, accountId, first.pageInfo.endCursor);
    assert.deepEqual(second.edges.map((e) => e.node.id), [firstId]);
    assert.equal(second.pageInfo.hasNextPage, false);

    const invalid = await stack.graphql(
      `query ($accountId: ID!) { apiKeys(accountId: $accountId, first: 5000) { edges { cursor } } }`,
      { accountId },
    );
    assert.equal(invalid.errors?.[0]?.extensions?.code, "BAD_USER_INPUT");
    const missing = await stack.graphql(
      `query ($accountId: ID!) { apiKeys(accountId: $accountId) { edges { cursor } } }`,
      { accountId: NO_SUCH_ID },
    );
    assert.equal(missing.errors?.[0]?.extensions?.code, "NOT_FOUND");

    const update = await stack.graphql<{ updateApiKey: KeyNode & { __typename: string } }>(
      `mutation ($input: UpdateApiKeyInput!) { updateApiKey(input: $input) {
        __typename ... on ApiKey { ${KEY_FIELDS} } ${RESULT_ERRORS} } }`,
      { input: { id: limited.apiKey.id, rpmLimit: null, name: "renamed" } },
    );
    assert.equal(update.data!.updateApiKey.__typename, "ApiKey", JSON.stringify(update));
    assert.deepEqual(
      [update.data!.updateApiKey.name, update.data!.updateApiKey.rpmLimit],
      ["renamed", null],
    );
    assert.equal(update.data!.updateApiKey.tpmLimit, 40000, "omitted: kept");
    const badIp = await stack.graphql<{ updateApiKey: { __typename: string; field: string } }>(
      `mutation ($input: UpdateApiKeyInput!) { updateApiKey(input: $input) {
        __typename ${RESULT_ERRORS} } }`,
      { input: { id: limited.apiKey.id, allowedIps: ["192.0.2.1/24"] } },
    );
    assert.deepEqual(badIp.data!.updateApiKey, {
      __typename: "InvalidInputError",
      message: 'allowedIps.0: "192.0.2.1/24" has bits set past its prefix: the range is ' +
        "192.0.2.0/24",
      field: "allowedIps.0",
    });

    const rotate = (graceSeconds: number) =>
      stack.graphql<{ rotateApiKey: { __typename: string; secret: string; apiKey: KeyNode } }>(
        `mutation ($id: ID!, $grace: Int!) { rotateApiKey(input: { id: $id, graceSeconds: $grace }) {
          __typename ... on RotatedApiKey { secret apiKey { ${KEY_FIELDS} } } ${RESULT_ERRORS} } }`,
        { id: limited.apiKey.id, grace: graceSeconds },
      );
    const rotated = (await rotate(600)).data!.rotateApiKey;
    assert.equal(rotated.__typename, "RotatedApiKey");
    assert.equal(rotated.apiKey.id, limited.apiKey.id);
    assert.notEqual(rotated.secret, limited.secret);
    assert.equal(rotated.apiKey.last4, rotated.secret.slice(-4));
    const graceEnd = Date.parse(rotated.apiKey.previousSecretValidUntil!);
    assert.ok(Math.abs(graceEnd - (Date.now() + 600_000)) < 10_000);
    assert.ok(rotated.apiKey.rotatedAt);
    const tooLong = (await rotate(MAX_GRACE_SECONDS + 1)).data!.rotateApiKey;
    assert.equal(tooLong.__typename, "InvalidInputError");

    const one = await stack.graphql<{ apiKey: KeyNode | null }>(
      `query ($id: ID!) { apiKey(id: $id) { ${KEY_FIELDS} } }`,
      { id: limited.apiKey.id },
    );
    assert.equal(one.data!.apiKey?.prefix, rotated.apiKey.prefix);
    const none = await stack.graphql<{ apiKey: KeyNode | null }>(
      `query ($id: ID!) { apiKey(id: $id) { id } }`,
      { id: NO_SUCH_ID },
    );
    assert.deepEqual(none.data, { apiKey: null });
  } finally {
    await stack.close();
  }
});
