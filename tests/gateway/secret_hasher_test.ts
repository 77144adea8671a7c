/** The hot path's secret hashing: the same HMAC as stored, remembered per secret. */
import assert from "node:assert/strict";
import { createSecretHasher } from "../../gateway/auth/authenticate.ts";
import { generateSecret, hashSecret } from "../../schema/keys.ts";

const KEY = new Uint8Array(32).fill(3);

Deno.test("a well-formed secret hashes to its stored hash, cached or not", () => {
  const hash = createSecretHasher(KEY);
  const { secret } = generateSecret();
  assert.equal(hash(secret), hashSecret(secret, KEY));
  assert.equal(hash(secret), hashSecret(secret, KEY), "the cached hash differs");
});

Deno.test("a malformed secret or one with a bad checksum gets null and is not remembered", () => {
  const hash = createSecretHasher(KEY);
  const { secret } = generateSecret();
  const typo = secret.slice(0, -1) + (secret.endsWith("a") ? "b" : "a");
  for (const bad of ["", "sk-openai-key", typo, secret + "x"]) assert.equal(hash(bad), null, bad);
});

Deno.test("the cache is bounded: past its size it starts over and still answers right", () => {
  const hash = createSecretHasher(KEY, 3);
  const secrets = Array.from({ length: 7 }, () => generateSecret().secret);
  for (const secret of secrets) assert.equal(hash(secret), hashSecret(secret, KEY));
  for (const secret of secrets) assert.equal(hash(secret), hashSecret(secret, KEY));
});
