/**
 * README's "Rotating a key" recipe, run as written: its fenced shell block
 * is taken out of README.md and run with bash against a running stack, with
 * only the environment variables the recipe documents set (where the
 * control plane and gateway are, the token, the key and the grace). Then the
 * new secret must work at the gateway and, after the grace, the old must not.
 */
import assert from "node:assert/strict";
import { ADMIN_TOKEN, startStack, waitFor } from "../helpers/stack.ts";

const README = new URL("../../README.md", import.meta.url);

/** The first ```sh block under the "### Rotating a key" heading. */
async function recipe(): Promise<string> {
  const text = await Deno.readTextFile(README);
  const section = text.split(/^### Rotating a key$/m)[1];
  assert.ok(section, 'README.md has a "### Rotating a key" section');
  const block = /^```sh\n([\s\S]*?)^```$/m.exec(section.split(/^##+ /m)[0]!);
  assert.ok(block, "the section has a ```sh block");
  return block[1]!;
}

async function gatewayStatus(gatewayUrl: string, secret: string): Promise<number> {
  const response = await fetch(`${gatewayUrl}/v1/models`, {
    headers: { authorization: `Bearer ${secret}` },
  });
  await response.body?.cancel();
  return response.status;
}

Deno.test("README's key rotation recipe rotates a key with curl alone: the new secret works, the old stops after the grace", async () => {
  const script = await recipe();
  const stack = await startStack();
  try {
    const { keyId, secret: old } = await stack.createKey();
    const grace = 3;
    const started = Date.now();
    const run = await new Deno.Command("bash", {
      args: ["-e", "-c", script],
      clearEnv: true,
      env: {
        PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
        TOLLGATE_GRAPHQL: `${stack.controlUrl}/graphql`,
        TOLLGATE_GATEWAY: stack.gatewayUrl,
        TOLLGATE_TOKEN: ADMIN_TOKEN,
        KEY_ID: keyId,
        GRACE_SECONDS: String(grace),
      },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(run.stdout);
    const stderr = new TextDecoder().decode(run.stderr);
    assert.equal(run.code, 0, `the recipe failed:\n${stdout}\n${stderr}`);

    const secret = /^new secret \(shown once\): (tg_\w{38})$/m.exec(stdout)?.[1];
    assert.ok(secret, `the recipe prints the new secret:\n${stdout}`);
    assert.notEqual(secret, old);
    assert.match(stdout, /"__typename":"RotatedApiKey"/);
    assert.match(stdout, /^new secret at the gateway: HTTP 200$/m, "its own check passed");

    // The same key, with a new secret that works and an old one that works for the grace only.
    const key = await stack.database.db.db.selectFrom("api_keys").select(["id", "last4"])
      .executeTakeFirstOrThrow();
    assert.deepEqual(key, { id: keyId, last4: secret.slice(-4) });
    assert.equal(await gatewayStatus(stack.gatewayUrl, secret), 200);
    const graceEnd = started + grace * 1000;
    if (Date.now() < graceEnd - 500) {
      assert.equal(await gatewayStatus(stack.gatewayUrl, old), 200, "inside the grace");
    }
    await waitFor(async () => (await gatewayStatus(stack.gatewayUrl, old)) === 401, 10_000, 100);
    assert.ok(
      Date.now() >= graceEnd - 1_000,
      "the old secret stopped at the grace end, not before",
    );
    assert.equal(await gatewayStatus(stack.gatewayUrl, secret), 200, "the new one works on");
  } finally {
    await stack.close();
  }
});
