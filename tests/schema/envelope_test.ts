import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { randomBytes } from "node:crypto";
import { ConfigError } from "../../schema/config.ts";
import {
  EnvelopeError,
  type Kek,
  kekIdOf,
  type Keyring,
  openEnvelope,
  providerKeyAad,
  rewrapEnvelope,
  sealEnvelope,
} from "../../schema/envelope.ts";
import { DERIVED_KEK_ID, deriveServerKeys, type KekEnv } from "../../schema/secrets.ts";
import { namedVariables } from "../helpers/config_errors.ts";

const k1: Kek = { id: "k1", key: randomBytes(32) };
const k2: Kek = { id: "k2", key: randomBytes(32) };
const ring1: Keyring = { current: k1, previous: [] };
const AAD = providerKeyAad("acct-1", "prov-1");
const SECRET = "sk-live-customer-0123456789abcdef";

/** The envelope with one of its dot-separated fields replaced. */
function withField(sealed: string, index: number, replace: (field: string) => string): string {
  const fields = sealed.split(".");
  fields[index] = replace(fields[index]!);
  return fields.join(".");
}

/** A base64url field with one bit of byte `at` flipped (negative `at` counts from the end). */
function flipBit(field: string, at: number): string {
  const bytes = Buffer.from(field, "base64url");
  const index = at < 0 ? bytes.length + at : at;
  bytes[index]! ^= 1;
  return bytes.toString("base64url");
}

Deno.test("an envelope opens with the keyring and context it was sealed for", () => {
  assert.equal(AAD, "byok:acct-1:prov-1");
  const sealed = sealEnvelope(SECRET, ring1, AAD);
  assert.ok(!sealed.includes(SECRET));
  assert.match(sealed, /^v1\.k1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
  assert.equal(kekIdOf(sealed), "k1");
  assert.equal(openEnvelope(sealed, ring1, AAD), SECRET);
  assert.equal(openEnvelope(sealEnvelope("", ring1, AAD), ring1, AAD), "");
  const unicode = "clé-🔑-".repeat(100);
  assert.equal(openEnvelope(sealEnvelope(unicode, ring1, AAD), ring1, AAD), unicode);
});

Deno.test("two seals of the same secret share no part but the version and KEK id", () => {
  const a = sealEnvelope(SECRET, ring1, AAD).split(".");
  const b = sealEnvelope(SECRET, ring1, AAD).split(".");
  assert.deepEqual(a.slice(0, 2), b.slice(0, 2));
  for (const i of [2, 3, 4]) assert.notEqual(a[i], b[i], `field ${i}`);
});

Deno.test("tampering with any part of an envelope makes it fail to open", () => {
  const sealed = sealEnvelope(SECRET, { current: k1, previous: [k2] }, AAD);
  const ring = { current: k1, previous: [k2] };
  const tampered: Record<string, string> = {
    "version": withField(sealed, 0, () => "v2"),
    "kek id (to another known KEK)": withField(sealed, 1, () => "k2"),
    "kek id (to an unknown KEK)": withField(sealed, 1, () => "k9"),
    "wrap iv": withField(sealed, 2, (f) => flipBit(f, 0)),
    "wrapped data key": withField(sealed, 2, (f) => flipBit(f, 20)),
    "wrap tag": withField(sealed, 2, (f) => flipBit(f, -1)),
    "data iv": withField(sealed, 3, (f) => flipBit(f, 5)),
    "ciphertext": withField(sealed, 4, (f) => flipBit(f, 0)),
    "data tag": withField(sealed, 4, (f) => flipBit(f, -1)),
    "truncated ciphertext": withField(sealed, 4, (f) => f.slice(0, -4)),
    "swapped data from another envelope": withField(
      sealed,
      4,
      () => sealEnvelope(SECRET, ring1, AAD).split(".")[4]!,
    ),
    "a field too many": `${sealed}.AAAA`,
    "not base64url": withField(sealed, 3, (f) => f.replace(/.$/, "+")),
  };
  for (const [part, envelope] of Object.entries(tampered)) {
    assert.notEqual(envelope, sealed, part);
    assert.throws(() => openEnvelope(envelope, ring, AAD), EnvelopeError, part);
    assert.throws(() => rewrapEnvelope(envelope, { current: k2, previous: [k1] }, AAD), part);
  }
  assert.throws(
    () => openEnvelope(withField(sealed, 4, (f) => flipBit(f, 0)), ring, AAD),
    /ciphertext does not authenticate/,
  );
  assert.throws(
    () => openEnvelope(withField(sealed, 2, (f) => flipBit(f, 20)), ring, AAD),
    /data key does not authenticate under KEK "k1"/,
  );
});

Deno.test("an envelope does not open for another account or provider", () => {
  const sealed = sealEnvelope(SECRET, ring1, AAD);
  for (const other of ["byok:acct-2:prov-1", "byok:acct-1:prov-2", "byok:acct-1:prov-1 ", ""]) {
    assert.throws(() => openEnvelope(sealed, ring1, other), EnvelopeError, other);
    assert.throws(() => rewrapEnvelope(sealed, { current: k2, previous: [k1] }, other), other);
  }
});

Deno.test("an envelope under an unknown KEK fails with an error naming it", () => {
  const sealed = sealEnvelope(SECRET, ring1, AAD);
  assert.throws(
    () => openEnvelope(sealed, { current: k2, previous: [] }, AAD),
    (error: unknown) =>
      error instanceof EnvelopeError &&
      error.message === 'Cannot open envelope: unknown KEK id "k1" (the keyring holds k2)',
  );
  const impostor = { id: "k1", key: randomBytes(32) };
  assert.throws(
    () => openEnvelope(sealed, { current: impostor, previous: [] }, AAD),
    /does not authenticate under KEK "k1"/,
  );
});

Deno.test("rotating the KEK keeps old envelopes readable, and rewrap moves them to the new one", () => {
  const sealed = sealEnvelope(SECRET, ring1, AAD);
  const rotated: Keyring = { current: k2, previous: [k1] };
  assert.equal(openEnvelope(sealed, rotated, AAD), SECRET);
  assert.equal(kekIdOf(sealEnvelope(SECRET, rotated, AAD)), "k2");

  const rewrapped = rewrapEnvelope(sealed, rotated, AAD);
  assert.equal(kekIdOf(rewrapped), "k2");
  assert.equal(rewrapped.split(".")[4], sealed.split(".")[4], "the data ciphertext is unchanged");
  assert.equal(rewrapped.split(".")[3], sealed.split(".")[3], "and so is its iv");
  const onlyK2: Keyring = { current: k2, previous: [] };
  assert.equal(openEnvelope(rewrapped, onlyK2, AAD), SECRET);
  assert.throws(() => openEnvelope(sealed, onlyK2, AAD), /unknown KEK id "k1"/);
  assert.equal(rewrapEnvelope(rewrapped, onlyK2, AAD), rewrapped, "already current: unchanged");
});

Deno.test("without TOLLGATE_KEK the keyring's KEK is derived from the server secret", () => {
  const keys = deriveServerKeys("s".repeat(40));
  assert.equal(keys.keyring.current.id, DERIVED_KEK_ID);
  assert.deepEqual(keys.keyring.previous, []);
  assert.deepEqual(deriveServerKeys("s".repeat(40)).keyring, keys.keyring, "deterministic");
  assert.notDeepEqual(
    deriveServerKeys("t".repeat(40)).keyring.current.key,
    keys.keyring.current.key,
  );
  assert.notDeepEqual(keys.keyring.current.key, keys.credentials);
});

Deno.test("TOLLGATE_KEK* configure the keyring; the derived KEK stays readable as the oldest", () => {
  const quickstart = deriveServerKeys("s".repeat(40));
  const sealed = sealEnvelope(SECRET, quickstart.keyring, AAD);
  const keys = deriveServerKeys("s".repeat(40), {
    TOLLGATE_KEK: Buffer.from(k2.key).toString("base64"),
    TOLLGATE_KEK_ID: "k2",
    TOLLGATE_KEK_PREVIOUS: ` k1:${Buffer.from(k1.key).toString("base64url")} `,
  });
  assert.deepEqual(keys.keyring.current, { id: "k2", key: new Uint8Array(k2.key) });
  assert.deepEqual(keys.keyring.previous.map((k) => k.id), ["k1", DERIVED_KEK_ID]);
  assert.equal(openEnvelope(sealed, keys.keyring, AAD), SECRET);
  const defaultId = deriveServerKeys("s".repeat(40), {
    TOLLGATE_KEK: Buffer.from(k1.key).toString("base64"),
  });
  assert.equal(defaultId.keyring.current.id, "k1");
});

Deno.test("bad TOLLGATE_KEK* settings are a ConfigError naming each variable, never a key", () => {
  const key = Buffer.from(k1.key).toString("base64");
  const problems = (env: KekEnv) => {
    try {
      deriveServerKeys("s".repeat(40), env);
    } catch (error) {
      assert.ok(error instanceof ConfigError, String(error));
      assert.ok(!error.message.includes(key), "the message does not echo a key");
      return error;
    }
    assert.fail(`accepted ${JSON.stringify(env)}`);
  };
  const all = problems({
    TOLLGATE_KEK: "too-short",
    TOLLGATE_KEK_ID: "has.dot",
    TOLLGATE_KEK_PREVIOUS: `old:${key},nokey`,
  });
  assert.deepEqual(namedVariables(all), [
    "TOLLGATE_KEK",
    "TOLLGATE_KEK_ID",
    "TOLLGATE_KEK_PREVIOUS",
  ]);
  assert.match(all.message, /TOLLGATE_KEK: must be the base64 of 32 bytes/);
  assert.match(all.message, /TOLLGATE_KEK_PREVIOUS: entry 2 must be id:base64/);
  const cases: [KekEnv, RegExp][] = [
    [{ TOLLGATE_KEK: Buffer.alloc(16).toString("base64") }, /^TOLLGATE_KEK: must be the base64/],
    [{ TOLLGATE_KEK: key, TOLLGATE_KEK_ID: "derived" }, /^TOLLGATE_KEK_ID: "derived" is reserved/],
    [{ TOLLGATE_KEK_ID: "k2" }, /^TOLLGATE_KEK_ID: needs TOLLGATE_KEK/],
    [{ TOLLGATE_KEK: key, TOLLGATE_KEK_PREVIOUS: `k1:${key}` }, /names the current KEK id "k1"/],
    [{ TOLLGATE_KEK_PREVIOUS: `a:${key},a:${key}` }, /^TOLLGATE_KEK_PREVIOUS: names "a" twice/],
    [{ TOLLGATE_KEK_PREVIOUS: `a:${key.slice(1)}` }, /entry 1: the key must be the base64/],
    [{ TOLLGATE_KEK_PREVIOUS: `:${key}` }, /^TOLLGATE_KEK_PREVIOUS: entry 1: the id must be/],
  ];
  for (const [env, expected] of cases) {
    const error = problems(env);
    assert.equal(error.problems.length, 1, error.message);
    assert.match(error.problems[0]!, expected);
  }
});
