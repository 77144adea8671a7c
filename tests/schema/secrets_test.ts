import assert from "node:assert/strict";
import {
  deriveServerKeys,
  loadServerKeys,
  openCredential,
  sealCredential,
} from "../../schema/secrets.ts";

const keys = deriveServerKeys("s".repeat(40));

Deno.test("a sealed credential opens with the same key and owner", () => {
  const sealed = sealCredential("sk-upstream-1234", keys.credentials, "provider:1");
  assert.ok(!sealed.includes("sk-upstream"));
  assert.equal(openCredential(sealed, keys.credentials, "provider:1"), "sk-upstream-1234");
});

Deno.test("a sealed credential moved to another owner or tampered with does not open", () => {
  const sealed = sealCredential("sk-upstream-1234", keys.credentials, "provider:1");
  assert.throws(() => openCredential(sealed, keys.credentials, "provider:2"));
  const bytes = atob(sealed.slice(3));
  const flipped = bytes.slice(0, 20) + String.fromCharCode(bytes.charCodeAt(20) ^ 1) +
    bytes.slice(21);
  assert.throws(() => openCredential(`v1:${btoa(flipped)}`, keys.credentials, "provider:1"));
  assert.throws(() =>
    openCredential(sealed, deriveServerKeys("t".repeat(40)).credentials, "provider:1")
  );
});

Deno.test("without TOLLGATE_SECRET the data folder's secret file is created once and reused", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const first = await loadServerKeys({ dataDir: dir });
    const second = await loadServerKeys({ dataDir: dir });
    assert.deepEqual(first.hashing, second.hashing);
    assert.equal((await Deno.stat(`${dir}/secret`)).mode! & 0o777, 0o600);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
