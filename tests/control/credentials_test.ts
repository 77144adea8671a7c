/**
 * The sign-in building blocks on their own: the TOLLGATE_JWT_* and
 * TOLLGATE_OIDC_* settings, password hashes, and the sign-in limiter's
 * window on a fake clock.
 */
import assert from "node:assert/strict";
import { exportPKCS8, generateKeyPair } from "jose";
import { loadConfig } from "../../control/config.ts";
import { hashPassword, needsRehash, verifyPassword } from "../../control/credentials/passwords.ts";
import { createSignInLimiter } from "../../control/credentials/rate_limit.ts";
import { configErrorFor as configErrorWith, namedVariables } from "../helpers/config_errors.ts";

const configErrorFor = (env: Record<string, string>) => configErrorWith(loadConfig, env);

const OIDC = {
  TOLLGATE_OIDC_ISSUER: "https://idp.example.com",
  TOLLGATE_OIDC_AUDIENCE: "tollgate",
  TOLLGATE_OIDC_JWKS_URL: "https://idp.example.com/.well-known/jwks.json",
};

Deno.test("OIDC settings go together, allow only asymmetric algorithms, and fetch keys over https", () => {
  assert.deepEqual(loadConfig(OIDC).auth?.oidc, {
    issuer: "https://idp.example.com",
    audience: "tollgate",
    jwksUrl: "https://idp.example.com/.well-known/jwks.json",
    algorithms: ["RS256", "ES256", "EdDSA"],
  });
  assert.deepEqual(
    loadConfig({ ...OIDC, TOLLGATE_OIDC_ALGORITHMS: " ES384 , PS256,ES384" }).auth?.oidc
      ?.algorithms,
    ["ES384", "PS256"],
  );
  assert.equal(
    loadConfig({ ...OIDC, TOLLGATE_OIDC_JWKS_URL: "http://127.0.0.1:9000/jwks" }).auth?.oidc
      ?.jwksUrl,
    "http://127.0.0.1:9000/jwks",
    "plain http only on this host",
  );
  assert.equal(loadConfig({}).auth?.oidc, undefined);

  const partial = configErrorFor({ TOLLGATE_OIDC_ISSUER: OIDC.TOLLGATE_OIDC_ISSUER });
  assert.deepEqual(namedVariables(partial), ["TOLLGATE_OIDC_AUDIENCE", "TOLLGATE_OIDC_JWKS_URL"]);
  assert.match(partial.message, /is required with the other TOLLGATE_OIDC_\* settings/);
  assert.deepEqual(
    namedVariables(configErrorFor({ TOLLGATE_OIDC_ALGORITHMS: "RS256" })),
    ["TOLLGATE_OIDC_AUDIENCE", "TOLLGATE_OIDC_ISSUER", "TOLLGATE_OIDC_JWKS_URL"],
  );
  for (const algorithms of ["HS256", "none", "RS256,HS512", ","]) {
    const error = configErrorFor({ ...OIDC, TOLLGATE_OIDC_ALGORITHMS: algorithms });
    assert.deepEqual(namedVariables(error), ["TOLLGATE_OIDC_ALGORITHMS"], algorithms);
  }
  for (const url of ["http://idp.example.com/jwks", "ftp://idp.example.com/jwks", "not a url"]) {
    const error = configErrorFor({ ...OIDC, TOLLGATE_OIDC_JWKS_URL: url });
    assert.deepEqual(namedVariables(error), ["TOLLGATE_OIDC_JWKS_URL"], url);
  }
  const same = configErrorFor({ ...OIDC, TOLLGATE_JWT_ISSUER: OIDC.TOLLGATE_OIDC_ISSUER });
  assert.deepEqual(namedVariables(same), ["TOLLGATE_OIDC_ISSUER"]);
});

Deno.test("TOLLGATE_JWT_PRIVATE_KEY must be an Ed25519 PKCS8 PEM", async () => {
  const ed = await generateKeyPair("EdDSA", { extractable: true });
  const pem = await exportPKCS8(ed.privateKey);
  assert.equal(loadConfig({ TOLLGATE_JWT_PRIVATE_KEY: pem }).auth?.jwtPrivateKey, pem.trim());
  assert.equal(
    loadConfig({ TOLLGATE_JWT_PRIVATE_KEY: pem.trim().replaceAll("\n", "\\n") }).auth
      ?.jwtPrivateKey,
    pem.trim(),
    "newlines written as \\n",
  );
  const rsa = await generateKeyPair("RS256", { extractable: true });
  for (const bad of [await exportPKCS8(rsa.privateKey), "not a key", pem.replace("M", "X")]) {
    const error = configErrorFor({ TOLLGATE_JWT_PRIVATE_KEY: bad });
    assert.deepEqual(namedVariables(error), ["TOLLGATE_JWT_PRIVATE_KEY"]);
    assert.match(error.message, /Ed25519 private key in PKCS8 PEM/);
    assert.ok(!error.message.includes("PRIVATE KEY-----\n"), "the key is not echoed");
  }
});

Deno.test("passwords: salted scrypt PHC strings, checked in constant time, rehashed when parameters change", async () => {
  const first = await hashPassword("correct horse battery staple");
  const second = await hashPassword("correct horse battery staple");
  assert.notEqual(first, second, "a fresh salt each time");
  assert.match(first, /^\$scrypt\$ln=15,r=8,p=3\$/);
  assert.equal(await verifyPassword("correct horse battery staple", first), true);
  assert.equal(await verifyPassword("correct horse battery stapl", first), false);
  assert.equal(await verifyPassword("", first), false);
  assert.equal(
    await verifyPassword("anything", null),
    false,
    "no hash: false, after the same work",
  );
  assert.equal(await verifyPassword("anything", "$scrypt$garbage"), false);
  assert.equal(needsRehash(first), false);
  // A hash made with weaker parameters still verifies, and asks to be upgraded.
  const weak = "$scrypt$ln=10,r=8,p=1$" + first.split("$")[3] + "$" + first.split("$")[4];
  assert.equal(needsRehash(weak), true);
  // Parameters that would take gigabytes are refused, not run.
  assert.equal(
    await verifyPassword("x", "$scrypt$ln=30,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$" + "A".repeat(43)),
    false,
  );
});

Deno.test("the sign-in limiter refuses after 5 failures within 15 minutes, per email and address", () => {
  let now = 0;
  const limiter = createSignInLimiter({ now: () => now });
  for (let i = 0; i < 4; i++) limiter.failed("a@example.com", "10.0.0.1");
  assert.equal(limiter.retryAfter("a@example.com", "10.0.0.1"), 0, "4 failures: still allowed");
  limiter.failed("A@Example.com ", "10.0.0.1");
  assert.equal(
    limiter.retryAfter("a@example.com", "10.0.0.1"),
    15 * 60,
    "the email's case does not matter",
  );
  assert.equal(limiter.retryAfter("a@example.com", "10.0.0.2"), 0, "another address");
  assert.equal(limiter.retryAfter("b@example.com", "10.0.0.1"), 0, "another email");
  now += 14 * 60_000;
  assert.equal(limiter.retryAfter("a@example.com", "10.0.0.1"), 60);
  now += 60_000;
  assert.equal(limiter.retryAfter("a@example.com", "10.0.0.1"), 0, "the window is over");
  limiter.failed("a@example.com", "10.0.0.1");
  assert.equal(limiter.retryAfter("a@example.com", "10.0.0.1"), 0, "a new window starts at 1");

  for (let i = 0; i < 4; i++) limiter.failed("c@example.com", null);
  limiter.succeeded("c@example.com", null);
  limiter.failed("c@example.com", null);
  assert.equal(limiter.retryAfter("c@example.com", null), 0, "a success clears the count");
});
