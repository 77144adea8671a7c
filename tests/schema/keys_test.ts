import assert from "node:assert/strict";
import {
  ADMIN_TOKEN_PREFIX,
  generateSecret,
  hashSecret,
  isWellFormedSecret,
} from "../../schema/keys.ts";
import { deriveServerKeys } from "../../schema/secrets.ts";

Deno.test("an API key is tg_ plus 32 random base62 characters and a checksum", () => {
  const { secret, prefix, last4 } = generateSecret();
  assert.match(secret, /^tg_[0-9A-Za-z]{38}$/);
  assert.equal(prefix, secret.slice(0, 11));
  assert.equal(last4, secret.slice(-4));
  assert.ok(isWellFormedSecret(secret));
});

Deno.test("every one-character typo in a key is caught by its checksum", () => {
  const { secret } = generateSecret();
  let caught = 0;
  let tried = 0;
  for (let i = 3; i < secret.length; i++) {
    const replacement = secret[i] === "a" ? "b" : "a";
    tried++;
    if (!isWellFormedSecret(secret.slice(0, i) + replacement + secret.slice(i + 1))) caught++;
  }
  assert.equal(caught, tried);
  assert.equal(isWellFormedSecret(secret.slice(0, -1)), false, "a truncated key");
  assert.equal(isWellFormedSecret("sk-" + secret.slice(3)), false, "another vendor's prefix");
});

Deno.test("keys are unique and carry at least 128 bits of randomness", () => {
  const seen = new Set(Array.from({ length: 2000 }, () => generateSecret().secret));
  assert.equal(seen.size, 2000);
  // 32 characters over 62 symbols: 32 * log2(62) is about 190 bits.
  assert.ok(32 * Math.log2(62) >= 128);
});

Deno.test("admin tokens use their own prefix and are not API keys", () => {
  const { secret } = generateSecret(ADMIN_TOKEN_PREFIX);
  assert.ok(isWellFormedSecret(secret, ADMIN_TOKEN_PREFIX));
  assert.equal(isWellFormedSecret(secret), false);
});

Deno.test("the stored hash is keyed: another server secret gives another hash", () => {
  const { secret } = generateSecret();
  const a = hashSecret(secret, deriveServerKeys("a".repeat(40)).hashing);
  const b = hashSecret(secret, deriveServerKeys("b".repeat(40)).hashing);
  assert.match(a, /^[0-9a-f]{64}$/);
  assert.notEqual(a, b);
  assert.equal(a, hashSecret(secret, deriveServerKeys("a".repeat(40)).hashing));
});
