/**
 * Forged, confused and stale JWTs against /graphql. Each attack is a token
 * that differs from an accepted one in exactly one way, and each accepted
 * twin is checked first, so a refusal is the check under test and not some
 * other mistake. The OIDC cases run against a tiny JWKS server on 127.0.0.1.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  base64url,
  decodeJwt,
  exportJWK,
  exportPKCS8,
  generateKeyPair,
  type JWK,
  type JWTPayload,
  SignJWT,
} from "jose";
import { loadConfig } from "../../control/config.ts";
import { loadAccessTokenKeys } from "../../control/credentials/jwt.ts";
import { startControl } from "../../control/server.ts";
import { deriveServerKeys } from "../../schema/secrets.ts";
import { addMember, consoleUser, createAccount, createUser, dataOf } from "../helpers/console.ts";
import { ADMIN_TOKEN, type Stack, startStack, TEST_SECRET } from "../helpers/stack.ts";

const ISSUER = "tollgate";
const AUDIENCE = "tollgate-control";
const OIDC_ISSUER = "https://idp.example.test";
const OIDC_AUDIENCE = "tollgate-console";
const ME =
  "{ me { kind user { id email name oidcIssuer } memberships { edges { node { role account { id } } } } } }";

interface Me {
  kind: string;
  user: { id: string; email: string | null; name: string | null; oidcIssuer: string | null };
  memberships: { edges: { node: { role: string; account: { id: string } } }[] };
}

/** POSTs `{ me }` to a control plane with `token`; returns the status and body. */
async function meWith(url: string, token: string) {
  const response = await fetch(`${url}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify({ query: ME }),
  });
  const body = await response.json() as {
    data?: { me: Me };
    errors?: { message: string; extensions?: { code?: string } }[];
  };
  return { status: response.status, body };
}

async function assertAccepted(url: string, token: string, what: string): Promise<Me> {
  const { status, body } = await meWith(url, token);
  assert.equal(status, 200, `${what}: ${JSON.stringify(body)}`);
  assert.equal(body.data?.me.kind, "user", what);
  return body.data!.me;
}

async function assertRefused(url: string, token: string, what: string): Promise<void> {
  const { status, body } = await meWith(url, token);
  assert.equal(status, 401, `${what}: ${JSON.stringify(body)}`);
  assert.equal(body.errors?.[0]?.extensions?.code, "UNAUTHENTICATED", what);
  assert.equal(body.data ?? null, null, what);
}

/** An unsigned JWT: header and payload as given, and the signature part as given. */
function rawJwt(header: Record<string, unknown>, payload: JWTPayload, signature = ""): string {
  const part = (value: unknown) => base64url.encode(JSON.stringify(value));
  return `${part(header)}.${part(payload)}.${signature}`;
}

async function hmac(key: Uint8Array<ArrayBuffer>, text: string): Promise<string> {
  const cryptoKey = await crypto.subtle.importKey(
    "raw",
    key,
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  return base64url.encode(
    new Uint8Array(await crypto.subtle.sign("HMAC", cryptoKey, new TextEncoder().encode(text))),
  );
}

Deno.test("our access tokens: every forged, confused or stale variant of an accepted token is refused", async () => {
  const stack = await startStack();
  try {
    const accountId = await createAccount(stack);
    const user = await consoleUser(stack, accountId, "owner");
    const other = await consoleUser(stack, accountId, "viewer");
    const url = stack.controlUrl;
    const keys = await loadAccessTokenKeys({
      seed: deriveServerKeys(TEST_SECRET).signingSeed,
      issuer: ISSUER,
    });
    const { sid } = decodeJwt(user.token) as { sid: string };
    const now = Math.floor(Date.now() / 1000);
    const claims = (): JWTPayload => ({
      iss: ISSUER,
      aud: AUDIENCE,
      sub: user.userId,
      sid,
      iat: now,
      nbf: now,
      exp: now + 600,
    });
    const header = { alg: "EdDSA", kid: keys.kid, typ: "at+jwt" };
    const sign = (payload: JWTPayload, protectedHeader: Record<string, unknown> = header) =>
      new SignJWT(payload).setProtectedHeader(protectedHeader as { alg: string })
        .sign(keys.privateKey);

    // The controls: the real token, and one we mint the same way, are accepted.
    await assertAccepted(url, user.token, "the issued token");
    await assertAccepted(url, await sign(claims()), "a well-formed token signed with our key");
    // Within the 30-second clock tolerance.
    await assertAccepted(
      url,
      await sign({ ...claims(), iat: now - 600, nbf: now - 600, exp: now - 10 }),
      "expired 10 s ago",
    );
    await assertAccepted(
      url,
      await sign({ ...claims(), nbf: now + 10, iat: now }),
      "valid in 10 s",
    );

    const [head, body] = user.token.split(".");
    const publicJwk = keys.jwks.keys[0]!;
    const publicBytes = new Uint8Array(Buffer.from(publicJwk.x!, "base64url"));
    const signingInput = (h: Record<string, unknown>, payload: JWTPayload) =>
      `${base64url.encode(JSON.stringify(h))}.${base64url.encode(JSON.stringify(payload))}`;
    const hs256 = async (key: Uint8Array<ArrayBuffer>) => {
      const h = { alg: "HS256", kid: keys.kid, typ: "at+jwt" };
      const input = signingInput(h, claims());
      return `${input}.${await hmac(key, input)}`;
    };
    const rsa = await generateKeyPair("RS256");
    const otherEd = await generateKeyPair("EdDSA");

    const attacks: [string, string][] = [
      ['alg "none", no signature', rawJwt({ alg: "none", typ: "at+jwt", kid: keys.kid }, claims())],
      [
        'alg "none" with the real signature kept',
        `${rawJwt({ alg: "none", typ: "at+jwt", kid: keys.kid }, claims())}${
          user.token.split(".")[2]
        }`,
      ],
      ["HS256 keyed with the public key's raw bytes", await hs256(publicBytes)],
      [
        "HS256 keyed with the public JWK as published",
        await hs256(new TextEncoder().encode(JSON.stringify(publicJwk))),
      ],
      [
        "HS256 keyed with the public key's x as text",
        await hs256(new TextEncoder().encode(publicJwk.x!)),
      ],
      [
        "RS256 where EdDSA is expected (our kid, another key)",
        await new SignJWT(claims()).setProtectedHeader({
          alg: "RS256",
          kid: keys.kid,
          typ: "at+jwt",
        })
          .sign(rsa.privateKey),
      ],
      [
        "EdDSA from another key under our kid",
        await new SignJWT(claims()).setProtectedHeader(header).sign(otherEd.privateKey),
      ],
      ["another audience", await sign({ ...claims(), aud: "someone-else" })],
      ["no audience", await sign({ ...claims(), aud: undefined })],
      [
        "another issuer, signed with our key",
        await sign({ ...claims(), iss: "https://evil.example" }),
      ],
      [
        "expired beyond the tolerance",
        await sign({ ...claims(), iat: now - 900, nbf: now - 900, exp: now - 60 }),
      ],
      ["not valid for another minute", await sign({ ...claims(), nbf: now + 60 })],
      [
        "issued in the future",
        await sign({ ...claims(), iat: now + 3600, nbf: now, exp: now + 4000 }),
      ],
      ["valid far longer than 15 minutes", await sign({ ...claims(), exp: now + 30 * 24 * 3600 })],
      ["an unknown kid", await sign(claims(), { ...header, kid: "not-our-key" })],
      ["no kid", await sign(claims(), { alg: "EdDSA", typ: "at+jwt" })],
      ["another token type (an ID token)", await sign(claims(), { ...header, typ: "JWT" })],
      ["no session id", await sign({ ...claims(), sid: undefined })],
      ["a session that does not exist", await sign({ ...claims(), sid: crypto.randomUUID() })],
      ["another user's session", await sign({ ...claims(), sub: other.userId })],
      ["a subject that is not a uuid", await sign({ ...claims(), sub: "admin" })],
      [
        "tampered payload: the subject swapped, signature kept",
        `${head}.${
          base64url.encode(JSON.stringify({ ...decodeJwt(user.token), sub: other.userId }))
        }.${user.token.split(".")[2]}`,
      ],
      [
        "tampered header: the kid changed, signature kept",
        `${base64url.encode(JSON.stringify({ ...header, kid: "x" }))}.${body}.${
          user.token.split(".")[2]
        }`,
      ],
      ["a truncated signature", user.token.slice(0, -4)],
    ];
    for (const [what, token] of attacks) await assertRefused(url, token, what);
  } finally {
    await stack.close();
  }
});

/** A JWKS server on 127.0.0.1 serving the public keys given; counts its requests. */
function jwksServer(keys: JWK[]) {
  let requests = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => {
    requests++;
    return Response.json({ keys });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/jwks.json`,
    requests: () => requests,
    close: () => server.shutdown(),
  };
}

/** A control plane on the stack's database that trusts the OIDC issuer at `jwksUrl`. */
async function startOidcControl(stack: Stack, jwksUrl: string, algorithms?: string) {
  const config = loadConfig({
    TOLLGATE_DATA_DIR: "memory://",
    TOLLGATE_SECRET: TEST_SECRET,
    TOLLGATE_CONTROL_PORT: "0",
    TOLLGATE_ADMIN_TOKEN: ADMIN_TOKEN,
    TOLLGATE_OIDC_ISSUER: OIDC_ISSUER,
    TOLLGATE_OIDC_AUDIENCE: OIDC_AUDIENCE,
    TOLLGATE_OIDC_JWKS_URL: jwksUrl,
    TOLLGATE_OIDC_ALGORITHMS: algorithms,
  });
  return await startControl({
    db: stack.database.db.db,
    keys: deriveServerKeys(TEST_SECRET),
    config,
  });
}

Deno.test("OIDC: a trusted issuer's token maps to a user by (issuer, subject); tokens from an untrusted JWKS are refused", async () => {
  const stack = await startStack();
  const idp = await generateKeyPair("RS256", { extractable: true });
  const idpEs = await generateKeyPair("ES256", { extractable: true });
  const idpPs = await generateKeyPair("PS256", { extractable: true });
  const rogue = await generateKeyPair("RS256", { extractable: true });
  const publicJwk = async (key: CryptoKey, kid: string) => ({ ...await exportJWK(key), kid });
  const trusted = jwksServer([
    await publicJwk(idp.publicKey, "idp-1"),
    await publicJwk(idpEs.publicKey, "idp-2"),
    await publicJwk(idpPs.publicKey, "idp-3"),
  ]);
  const untrusted = jwksServer([await publicJwk(rogue.publicKey, "rogue-1")]);
  const control = await startOidcControl(stack, trusted.url);
  try {
    const url = control.url;
    const now = Math.floor(Date.now() / 1000);
    const claims = (extra: JWTPayload = {}): JWTPayload => ({
      iss: OIDC_ISSUER,
      aud: OIDC_AUDIENCE,
      sub: "idp|alice",
      email: "Alice@Example.com",
      email_verified: true,
      name: "Alice",
      iat: now,
      exp: now + 600,
      ...extra,
    });
    const signRs = (payload: JWTPayload, kid = "idp-1", key = idp.privateKey, alg = "RS256") =>
      new SignJWT(payload).setProtectedHeader({ alg, kid }).sign(key);

    // First sight provisions the user; the same (issuer, subject) is the same user afterwards.
    const alice = await assertAccepted(url, await signRs(claims()), "a trusted RS256 token");
    assert.deepEqual(
      { email: alice.user.email, name: alice.user.name, oidcIssuer: alice.user.oidcIssuer },
      { email: "alice@example.com", name: "Alice", oidcIssuer: OIDC_ISSUER },
    );
    assert.deepEqual(alice.memberships.edges, [], "memberships are granted inside Tollgate");
    const again = await assertAccepted(
      url,
      await signRs(claims({ email: "changed@example.com" }), "idp-2", idpEs.privateKey, "ES256"),
      "a trusted ES256 token",
    );
    assert.equal(again.user.id, alice.user.id, "matched by subject, not by email");
    const provisioned = await stack.database.db.db.selectFrom("audit_log").select(["actor", "diff"])
      .where("action", "=", "user.provision").execute();
    assert.equal(provisioned.length, 1);

    // The operator grants a membership by the provisioned email; it applies at once.
    const accountId = await createAccount(stack, "Alice's team");
    await addMember(stack, accountId, "alice@example.com", "member");
    const member = await assertAccepted(url, await signRs(claims()), "after addMember");
    assert.deepEqual(member.memberships.edges.map((e) => e.node), [
      { role: "member", account: { id: accountId } },
    ]);

    // Identities are never linked by email: a password user's email gives no access to it.
    const victim = await createUser(stack, { email: "victim@example.com" });
    const victimAccount = await createAccount(stack, "Victim's");
    await addMember(stack, victimAccount, victim.email, "owner");
    const impostor = await assertAccepted(
      url,
      await signRs(claims({ sub: "idp|mallory", email: "victim@example.com", name: "Mallory" })),
      "a new subject claiming a taken email",
    );
    assert.notEqual(impostor.user.id, victim.userId);
    assert.equal(impostor.user.email, null, "the taken email is not given to it");
    assert.deepEqual(impostor.memberships.edges, []);
    // An unverified email is not taken either.
    const unverified = await assertAccepted(
      url,
      await signRs(claims({ sub: "idp|bob", email: "bob@example.com", email_verified: false })),
      "an unverified email",
    );
    assert.equal(unverified.user.email, null);

    const hsWithPublicKey = async () => {
      const jwk = await exportJWK(idp.publicKey);
      const input = `${base64url.encode(JSON.stringify({ alg: "HS256", kid: "idp-1" }))}.${
        base64url.encode(JSON.stringify(claims()))
      }`;
      return `${input}.${await hmac(new TextEncoder().encode(JSON.stringify(jwk)), input)}`;
    };
    const attacks: [string, string][] = [
      [
        "signed by a key from an untrusted JWKS",
        await signRs(claims(), "rogue-1", rogue.privateKey),
      ],
      ["an untrusted key under a trusted kid", await signRs(claims(), "idp-1", rogue.privateKey)],
      ["another audience", await signRs(claims({ aud: "another-client" }))],
      ["another issuer", await signRs(claims({ iss: "https://evil.example" }))],
      ["expired", await signRs(claims({ iat: now - 900, exp: now - 120 }))],
      ["not yet valid", await signRs(claims({ nbf: now + 120 }))],
      ["no subject", await signRs(claims({ sub: undefined }))],
      ['alg "none"', rawJwt({ alg: "none", kid: "idp-1" }, claims())],
      ["HS256 keyed with the issuer's public JWK", await hsWithPublicKey()],
      [
        "PS256 from a trusted key, but not an allowed algorithm",
        await signRs(claims(), "idp-3", idpPs.privateKey, "PS256"),
      ],
    ];
    const before = await stack.database.db.db.selectFrom("users").select("id").execute();
    for (const [what, token] of attacks) await assertRefused(url, token, what);
    const after = await stack.database.db.db.selectFrom("users").select("id").execute();
    assert.equal(after.length, before.length, "no refused token provisioned anyone");
    assert.equal(untrusted.requests(), 0, "the untrusted JWKS is never consulted");

    // The configured algorithms are the allowlist: with RS256 and PS256, ES256 is refused.
    const strict = await startOidcControl(stack, trusted.url, "RS256, PS256");
    try {
      await assertAccepted(strict.url, await signRs(claims()), "RS256 where allowed");
      await assertAccepted(
        strict.url,
        await signRs(claims(), "idp-3", idpPs.privateKey, "PS256"),
        "PS256 where allowed",
      );
      await assertRefused(
        strict.url,
        await signRs(claims(), "idp-2", idpEs.privateKey, "ES256"),
        "ES256 where only RS256 and PS256 are allowed",
      );
    } finally {
      await strict.shutdown();
    }

    // Without OIDC configured, the same valid token is not trusted at all.
    await assertRefused(stack.controlUrl, await signRs(claims()), "OIDC not configured");
  } finally {
    await control.shutdown();
    await trusted.close();
    await untrusted.close();
    await stack.close();
  }
});

Deno.test("TOLLGATE_JWT_PRIVATE_KEY signs the access tokens, and its public key is the one published", async () => {
  const stack = await startStack();
  const { privateKey, publicKey } = await generateKeyPair("EdDSA", { extractable: true });
  const config = loadConfig({
    TOLLGATE_DATA_DIR: "memory://",
    TOLLGATE_SECRET: TEST_SECRET,
    TOLLGATE_CONTROL_PORT: "0",
    TOLLGATE_ADMIN_TOKEN: ADMIN_TOKEN,
    // As an environment variable may carry it: newlines written as \n.
    TOLLGATE_JWT_PRIVATE_KEY: (await exportPKCS8(privateKey)).replaceAll("\n", "\\n"),
    TOLLGATE_JWT_ISSUER: "https://console.example.test",
  });
  const control = await startControl({
    db: stack.database.db.db,
    keys: deriveServerKeys(TEST_SECRET),
    config,
  });
  try {
    const { email } = await createUser(stack);
    const response = await fetch(`${control.url}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        query: `mutation ($email: String!) { signIn(input: { email: $email,
          password: "correct horse battery staple" }) { ... on Session { accessToken } } }`,
        variables: { email },
      }),
    });
    const token = (await response.json()).data.signIn.accessToken as string;
    assert.equal(decodeJwt(token).iss, "https://console.example.test");
    const jwks = await (await fetch(`${control.url}/.well-known/jwks.json`)).json();
    assert.equal(jwks.keys[0].x, (await exportJWK(publicKey)).x);
    await assertAccepted(control.url, token, "a token signed with the configured key");
    // The stack's plane (the derived key, issuer "tollgate") does not accept it.
    await assertRefused(stack.controlUrl, token, "on a plane with another key and issuer");
    const derived = dataOf(
      await stack.graphql<{ me: { kind: string } }>("{ me { kind } }", {}, ADMIN_TOKEN),
    );
    assert.equal(derived.me.kind, "operator");
  } finally {
    await control.shutdown();
    await stack.close();
  }
});
