/**
 * Console sign-in over HTTP against a running control plane on a fresh
 * database: password sign-in, access tokens, refresh rotation with reuse
 * detection, sign-out, password changes and the sign-in rate limit.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { scrypt } from "node:crypto";
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from "jose";
import {
  consoleUser,
  createAccount,
  createUser,
  dataOf,
  DEFAULT_PASSWORD,
  refreshResult,
  resultOf,
  signIn,
  signInResult,
} from "../helpers/console.ts";
import { type Stack, startStack } from "../helpers/stack.ts";

const ME = `{ me { kind id user { id email hasPassword }
  memberships { edges { node { role account { id name } } } } } }`;

interface Me {
  kind: string;
  id: string;
  user: { id: string; email: string; hasPassword: boolean } | null;
  memberships: { edges: { node: { role: string; account: { id: string; name: string } } }[] };
}

async function me(stack: Stack, token: string | null) {
  return await stack.graphql<{ me: Me }>(ME, {}, token);
}

async function signOut(stack: Stack, token: string, everywhere = false) {
  const result = await stack.graphql(
    `mutation ($everywhere: Boolean) { signOut(input: { everywhere: $everywhere }) {
      __typename ... on SignOutResult { revokedSessions } ... on Error { message } } }`,
    { everywhere },
    token,
  );
  return resultOf<{ revokedSessions: number }>(result, "signOut", "SignOutResult");
}

async function setPassword(
  stack: Stack,
  token: string,
  currentPassword: string,
  newPassword: string,
) {
  const result = await stack.graphql<{ setPassword: { __typename: string; message?: string } }>(
    `mutation ($input: SetPasswordInput!) { setPassword(input: $input) {
      __typename ... on Error { message } } }`,
    { input: { currentPassword, newPassword } },
    token,
  );
  return dataOf(result).setPassword;
}

function assertUnauthenticated(
  result: { status: number; errors?: { extensions?: Record<string, unknown> }[] },
  what: string,
) {
  assert.equal(result.status, 401, what);
  assert.equal(result.errors?.[0]?.extensions?.code, "UNAUTHENTICATED", what);
}

Deno.test("a user signs in with email and password and gets a 15-minute EdDSA access token that opens /graphql as them", async () => {
  const stack = await startStack();
  try {
    const accountId = await createAccount(stack, "Acme");
    await createAccount(stack, "Someone else");
    const user = await consoleUser(stack, accountId, "admin", { email: "Ada@Example.com" });
    assert.equal(user.email, "Ada@Example.com");

    // The token is an EdDSA JWT whose kid is the one published at /.well-known/jwks.json.
    const header = decodeProtectedHeader(user.token);
    assert.equal(header.alg, "EdDSA");
    assert.equal(header.typ, "at+jwt");
    const jwksResponse = await fetch(`${stack.controlUrl}/.well-known/jwks.json`);
    assert.equal(jwksResponse.status, 200);
    const jwks = await jwksResponse.json() as { keys: Record<string, string>[] };
    assert.equal(jwks.keys.length, 1);
    const [key] = jwks.keys;
    assert.deepEqual(
      { kty: key!.kty, crv: key!.crv, alg: key!.alg, use: key!.use, kid: key!.kid },
      { kty: "OKP", crv: "Ed25519", alg: "EdDSA", use: "sig", kid: header.kid },
    );
    assert.equal(key!.d, undefined, "no private part is published");
    const jwksSet = createRemoteJWKSet(new URL(`${stack.controlUrl}/.well-known/jwks.json`));
    const { payload } = await jwtVerify(user.token, jwksSet, {
      issuer: "tollgate",
      audience: "tollgate-control",
    });
    assert.equal(payload.sub, user.userId);
    assert.equal(payload.exp! - payload.iat!, 15 * 60);

    const answer = dataOf(await me(stack, user.token)).me;
    assert.equal(answer.kind, "user");
    assert.equal(answer.id, `user:${user.userId}`);
    assert.deepEqual(answer.user, { id: user.userId, email: "ada@example.com", hasPassword: true });
    assert.deepEqual(answer.memberships.edges.map((e) => e.node), [
      { role: "admin", account: { id: accountId, name: "Acme" } },
    ]);

    // The email is matched whatever its case and surrounding spaces.
    const again = await signInResult(stack, "  ADA@example.COM ", DEFAULT_PASSWORD);
    assert.equal(again.__typename, "Session");
    assert.equal(again.user?.id, user.userId);

    const operator = dataOf(await stack.graphql<{ me: Me }>(ME)).me;
    assert.equal(operator.kind, "operator");
    assert.equal(operator.user, null);
    assert.deepEqual(operator.memberships.edges, [], "an operator acts everywhere, as no member");
  } finally {
    await stack.close();
  }
});

Deno.test("an unknown email and a wrong password get the same answer, after the same scrypt work", async () => {
  const stack = await startStack();
  try {
    const { email } = await createUser(stack);
    const timed = async (address: string) => {
      const start = performance.now();
      const result = await signInResult(stack, address, "not the password at all");
      return { result, ms: performance.now() - start };
    };
    const wrong = [await timed(email), await timed(email), await timed(email)];
    const unknown = [
      await timed("nobody@example.com"),
      await timed("nobody@example.com"),
      await timed("nobody@example.com"),
    ];
    for (const { result } of [...wrong, ...unknown]) {
      assert.equal(result.__typename, "InvalidCredentialsError");
      assert.equal(result.message, "The email or password is incorrect");
    }
    // scrypt (N=2^15, r=8, p=3) dominates: an unknown email is not answered markedly faster.
    const median = (runs: { ms: number }[]) => runs.map((r) => r.ms).sort((a, b) => a - b)[1]!;
    assert.ok(
      median(unknown) > 0.5 * median(wrong),
      `unknown email ${median(unknown)} ms vs wrong password ${median(wrong)} ms`,
    );
    const malformed = await signInResult(stack, "not-an-email", "whatever password");
    assert.equal(malformed.__typename, "InvalidCredentialsError");
  } finally {
    await stack.close();
  }
});

Deno.test("refreshing rotates the refresh token; presenting a used one again ends the whole session", async () => {
  const stack = await startStack();
  const db = stack.database.db.db;
  try {
    const accountId = await createAccount(stack);
    const user = await consoleUser(stack, accountId, "viewer");

    const second = await refreshResult(stack, user.refreshToken);
    assert.equal(second.__typename, "Session");
    assert.notEqual(second.refreshToken, user.refreshToken, "a new refresh token each time");
    assert.equal(dataOf(await me(stack, second.accessToken!)).me.user?.id, user.userId);
    const third = await refreshResult(stack, second.refreshToken!);
    assert.equal(third.__typename, "Session");
    assert.equal(dataOf(await me(stack, third.accessToken!)).me.kind, "user");

    // The first token, used already, comes back: someone copied it.
    const reused = await refreshResult(stack, user.refreshToken);
    assert.equal(reused.__typename, "InvalidRefreshTokenError");
    assert.match(reused.message!, /sign in again/);
    // The whole family is revoked: the latest refresh token and every access token of the session.
    assert.equal(
      (await refreshResult(stack, third.refreshToken!)).__typename,
      "InvalidRefreshTokenError",
    );
    for (const token of [user.token, second.accessToken!, third.accessToken!]) {
      assertUnauthenticated(await me(stack, token), "an access token of the revoked session");
    }
    const session = await db.selectFrom("sessions").select(["revoked_reason"])
      .where("user_id", "=", user.userId).executeTakeFirstOrThrow();
    assert.equal(session.revoked_reason, "reuse");
    const actions = (await db.selectFrom("audit_log").select("action")
      .where("actor", "=", `user:${user.userId}`).orderBy("id").execute()).map((r) => r.action);
    assert.deepEqual(actions, [
      "session.sign_in",
      "session.refresh",
      "session.refresh",
      "session.reuse_detected",
    ]);

    // Only keyed hashes are stored, and unknown or malformed tokens are simply refused.
    const stored = await db.selectFrom("refresh_tokens").select("token_hash").execute();
    assert.ok(stored.length >= 1);
    for (const { token_hash } of stored) {
      assert.match(token_hash, /^[0-9a-f]{64}$/);
      assert.ok(![user.refreshToken, second.refreshToken, third.refreshToken].includes(token_hash));
    }
    for (const bogus of ["", "tgr_nope", user.refreshToken.slice(0, -1) + "x", user.token]) {
      assert.equal((await refreshResult(stack, bogus)).__typename, "InvalidRefreshTokenError");
    }

    // A new sign-in opens a new session that works.
    const fresh = await signIn(stack, user.email);
    assert.equal(dataOf(await me(stack, fresh.token)).me.user?.id, user.userId);
  } finally {
    await stack.close();
  }
});

Deno.test("signing out ends that session at once; everywhere ends them all", async () => {
  const stack = await startStack();
  try {
    const accountId = await createAccount(stack);
    const user = await consoleUser(stack, accountId, "member");
    const laptop = await signIn(stack, user.email);
    const phone = await signIn(stack, user.email);

    assert.equal((await signOut(stack, user.token)).revokedSessions, 1);
    assertUnauthenticated(await me(stack, user.token), "the signed-out access token");
    assert.equal(
      (await refreshResult(stack, user.refreshToken)).__typename,
      "InvalidRefreshTokenError",
    );
    assert.equal(dataOf(await me(stack, laptop.token)).me.kind, "user", "other sessions go on");

    assert.equal((await signOut(stack, phone.token, true)).revokedSessions, 2);
    for (const token of [laptop.token, phone.token]) {
      assertUnauthenticated(await me(stack, token), "after signing out everywhere");
    }
    assert.equal(
      (await refreshResult(stack, laptop.refreshToken)).__typename,
      "InvalidRefreshTokenError",
    );

    // Operators and API keys have no session to end.
    const refused = await stack.graphql<{ signOut: { __typename: string } }>(
      "mutation { signOut { __typename } }",
    );
    assert.equal(dataOf(refused).signOut.__typename, "ForbiddenError");
  } finally {
    await stack.close();
  }
});

Deno.test("setPassword needs the current password, signs out the other sessions, and the new one signs in", async () => {
  const stack = await startStack();
  const db = stack.database.db.db;
  try {
    const accountId = await createAccount(stack);
    const user = await consoleUser(stack, accountId, "viewer");
    const other = await signIn(stack, user.email);
    const newPassword = "a much better passphrase";

    const wrong = await setPassword(stack, user.token, "not my password", newPassword);
    assert.equal(wrong.__typename, "InvalidCredentialsError");
    assert.equal(wrong.message, "The current password is incorrect");
    const short = await setPassword(stack, user.token, DEFAULT_PASSWORD, "short");
    assert.equal(short.__typename, "InvalidInputError");
    assert.match(short.message!, /^newPassword: must be at least 10 characters/);
    assert.equal(dataOf(await me(stack, other.token)).me.kind, "user", "nothing changed yet");

    const changed = await setPassword(stack, user.token, DEFAULT_PASSWORD, newPassword);
    assert.equal(changed.__typename, "User");
    assert.equal(dataOf(await me(stack, user.token)).me.kind, "user", "this session stays");
    assertUnauthenticated(await me(stack, other.token), "the other session");
    assert.equal(
      (await refreshResult(stack, other.refreshToken)).__typename,
      "InvalidRefreshTokenError",
    );

    assert.equal(
      (await signInResult(stack, user.email, DEFAULT_PASSWORD)).__typename,
      "InvalidCredentialsError",
    );
    assert.equal((await signInResult(stack, user.email, newPassword)).__typename, "Session");

    const stored = await db.selectFrom("users").select("password_hash")
      .where("id", "=", user.userId).executeTakeFirstOrThrow();
    assert.match(
      stored.password_hash!,
      /^\$scrypt\$ln=15,r=8,p=3\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/,
    );
    const audit = await db.selectFrom("audit_log").select(["diff"])
      .where("action", "=", "user.set_password").executeTakeFirstOrThrow();
    assert.deepEqual(audit.diff, { otherSessionsRevoked: 1 });

    // An operator has no password of its own to change.
    const operator = await stack.graphql<{ setPassword: { __typename: string } }>(
      `mutation { setPassword(input: { currentPassword: "x", newPassword: "yyyyyyyyyyyy" }) {
        __typename } }`,
    );
    assert.equal(dataOf(operator).setPassword.__typename, "ForbiddenError");
  } finally {
    await stack.close();
  }
});

Deno.test("failed sign-ins are limited per email and address; a success clears the count", async () => {
  const stack = await startStack();
  try {
    const a = await createUser(stack);
    const b = await createUser(stack);
    for (let i = 0; i < 5; i++) {
      assert.equal(
        (await signInResult(stack, a.email, "wrong password")).__typename,
        "InvalidCredentialsError",
      );
    }
    const limited = await signInResult(stack, a.email, a.password);
    assert.equal(limited.__typename, "TooManyAttemptsError", "even with the right password");
    assert.ok(limited.retryAfterSeconds! > 0 && limited.retryAfterSeconds! <= 15 * 60);
    assert.match(limited.message!, /try again in \d+ seconds/);
    // Same for an email nobody has: the limit says nothing about which emails exist.
    for (let i = 0; i < 5; i++) await signInResult(stack, "ghost@example.com", "wrong password");
    assert.equal(
      (await signInResult(stack, "ghost@example.com", "x")).__typename,
      "TooManyAttemptsError",
    );

    // Another email from the same address is not affected, and a success resets its count.
    for (let i = 0; i < 4; i++) await signInResult(stack, b.email, "wrong password");
    assert.equal((await signInResult(stack, b.email, b.password)).__typename, "Session");
    for (let i = 0; i < 4; i++) await signInResult(stack, b.email, "wrong password");
    assert.equal((await signInResult(stack, b.email, b.password)).__typename, "Session");
  } finally {
    await stack.close();
  }
});

Deno.test("only signIn and refreshSession run without a credential; a stale credential does not block them", async () => {
  const stack = await startStack();
  try {
    const { email, password } = await createUser(stack);
    const anonymous = [
      "{ me { kind } }",
      "{ __schema { queryType { name } } }",
      'mutation { createAccount(input: { name: "x" }) { __typename } }',
      // signIn alongside anything else is not anonymous any more.
      `mutation { signIn(input: { email: "${email}", password: "${password}" }) { __typename }
        createAccount(input: { name: "x" }) { __typename } }`,
    ];
    for (const query of anonymous) {
      const result = await stack.graphql(query, {}, null);
      assertUnauthenticated(result, query);
      assert.equal(result.data ?? null, null, `no data: ${query}`);
    }

    for (const stale of [null, "garbage", "tg_" + "x".repeat(38), "eyJhbGciOiJub25lIn0.e30."]) {
      const result = await stack.graphql<{ signIn: { __typename: string } }>(
        `mutation In($email: String!, $password: String!) {
          signIn(input: { email: $email, password: $password }) { __typename } }`,
        { email, password },
        stale,
      );
      assert.equal(dataOf(result).signIn.__typename, "Session", `with ${stale}`);
    }
    // In a document of several operations, the one chosen by operationName decides.
    const document = `query Other { me { kind } }
      mutation In { signIn(input: { email: "${email}", password: "${password}" }) { __typename } }`;
    const post = (operationName: string) =>
      fetch(`${stack.controlUrl}/graphql`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ query: document, operationName }),
      });
    const other = await post("Other");
    assert.equal(other.status, 401);
    assert.equal((await other.json()).data ?? null, null);
    const chosen = await post("In");
    assert.equal(chosen.status, 200);
    assert.deepEqual((await chosen.json()).data, { signIn: { __typename: "Session" } });
  } finally {
    await stack.close();
  }
});

Deno.test("sign-in, sessions, users and members are audited without any password, hash or token", async () => {
  const stack = await startStack();
  const db = stack.database.db.db;
  try {
    const accountId = await createAccount(stack);
    const user = await consoleUser(stack, accountId, "owner");
    const refreshed = await refreshResult(stack, user.refreshToken);
    assert.equal(
      (await setPassword(stack, refreshed.accessToken!, DEFAULT_PASSWORD, "another long password"))
        .__typename,
      "User",
    );
    await signOut(stack, refreshed.accessToken!);

    const rows = await db.selectFrom("audit_log").select(["actor", "action", "target_id", "diff"])
      .orderBy("id").execute();
    const actions = rows.map((r) => r.action);
    for (
      const action of [
        "account.create",
        "user.create",
        "member.add",
        "session.sign_in",
        "session.refresh",
        "user.set_password",
        "session.sign_out",
      ]
    ) assert.ok(actions.includes(action), `${action} in ${actions}`);
    const created = rows.find((r) => r.action === "user.create")!;
    assert.deepEqual(created.diff, { email: user.email.toLowerCase(), name: "Test User" });
    assert.equal(created.target_id, user.userId);
    const signedIn = rows.find((r) => r.action === "session.sign_in")!;
    assert.equal(signedIn.actor, `user:${user.userId}`);

    const everything = JSON.stringify(rows);
    const stored = await db.selectFrom("users").select("password_hash")
      .where("id", "=", user.userId).executeTakeFirstOrThrow();
    for (
      const secret of [
        DEFAULT_PASSWORD,
        "another long password",
        stored.password_hash!,
        user.token,
        user.refreshToken,
        refreshed.refreshToken!,
        refreshed.accessToken!,
      ]
    ) assert.ok(!everything.includes(secret), "no secret in the audit log");
    assert.ok(!everything.includes("$scrypt$"));
  } finally {
    await stack.close();
  }
});

Deno.test("a password hashed with older scrypt parameters still signs in, and is upgraded", async () => {
  const stack = await startStack();
  const db = stack.database.db.db;
  try {
    const salt = crypto.getRandomValues(new Uint8Array(16));
    const hash = await new Promise<Uint8Array>((resolve, reject) =>
      scrypt(
        DEFAULT_PASSWORD,
        salt,
        32,
        { N: 1024, r: 8, p: 1 },
        (e, key) => e ? reject(e) : resolve(key),
      )
    );
    const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64").replace(/=+$/, "");
    const weak = `$scrypt$ln=10,r=8,p=1$${b64(salt)}$${b64(hash)}`;
    await db.insertInto("users")
      .values({ email: "old@example.com", name: "Old", password_hash: weak }).execute();

    assert.equal(
      (await signInResult(stack, "old@example.com", DEFAULT_PASSWORD)).__typename,
      "Session",
    );
    const upgraded = await db.selectFrom("users").select("password_hash")
      .where("email", "=", "old@example.com").executeTakeFirstOrThrow();
    assert.match(upgraded.password_hash!, /^\$scrypt\$ln=15,r=8,p=3\$/);
    assert.equal(
      (await signInResult(stack, "old@example.com", DEFAULT_PASSWORD)).__typename,
      "Session",
    );
  } finally {
    await stack.close();
  }
});
