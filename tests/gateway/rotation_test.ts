/**
 * Key rotation against a running gateway: after rotateApiKey the new secret
 * works, the old one keeps working until its grace ends (by the gateway's
 * clock, with no notification needed) and is refused after; a grace of 0 ends
 * it at once; rotating again during a grace ends the earlier one.
 */
import assert from "node:assert/strict";
import { authenticate, createSecretHasher } from "../../gateway/auth/authenticate.ts";
import { GatewayError } from "../../gateway/errors.ts";
import { deriveServerKeys } from "../../schema/secrets.ts";
import { type Stack, startStack, TEST_SECRET, waitFor } from "../helpers/stack.ts";

interface Rotated {
  secret: string;
  apiKey: { id: string; previousSecretValidUntil: string | null };
}

async function rotate(stack: Stack, id: string, graceSeconds: number): Promise<Rotated> {
  const result = await stack.graphql<{ rotateApiKey: Rotated & { __typename: string } }>(
    `mutation ($id: ID!, $grace: Int!) { rotateApiKey(input: { id: $id, graceSeconds: $grace }) {
      __typename ... on RotatedApiKey { secret apiKey { id previousSecretValidUntil } }
      ... on Error { message } } }`,
    { id, grace: graceSeconds },
  );
  const rotated = result.data?.rotateApiKey;
  assert.equal(rotated?.__typename, "RotatedApiKey", JSON.stringify(result));
  return rotated!;
}

/** The status and error code of a chat completion with `secret`. */
async function call(stack: Stack, secret: string): Promise<{ status: number; code?: string }> {
  const response = await fetch(`${stack.gatewayUrl}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
    body: JSON.stringify({ model: "tollgate-mock", messages: [{ role: "user", content: "hi" }] }),
  });
  const body = await response.json();
  return { status: response.status, code: body.error?.code };
}

Deno.test("after a rotation both secrets work during the grace, and only the new one after it", async () => {
  const stack = await startStack();
  try {
    const { keyId, secret: old } = await stack.createKey();
    const rotated = await rotate(stack, keyId, 2);
    assert.equal(rotated.apiKey.id, keyId, "the same key");
    const graceEnd = Date.parse(rotated.apiKey.previousSecretValidUntil!);

    await waitFor(async () => (await call(stack, rotated.secret)).status === 200, 1_000);
    assert.equal((await call(stack, old)).status, 200, "the old secret still works");
    assert.ok(Date.now() < graceEnd, "checked inside the grace (make it longer if this fails)");

    // The snapshot decides by the clock it is given: up to the grace end, then not.
    const policy = stack.gateway.policy;
    const hash = createSecretHasher(deriveServerKeys(TEST_SECRET).hashing);
    const headers = new Headers({ authorization: `Bearer ${old}` });
    assert.equal(authenticate(headers, { policy, hash, now: graceEnd - 1 }).id, keyId);
    assert.throws(
      () => authenticate(headers, { policy, hash, now: graceEnd }),
      (error) => error instanceof GatewayError && error.code === "invalid_api_key",
    );

    await waitFor(() => Date.now() > graceEnd, 5_000);
    const refused = await call(stack, old);
    assert.deepEqual(refused, { status: 401, code: "invalid_api_key" });
    const error = await stack.openai(old).models.list().then(() => null, (e) => e);
    assert.match(error.message, /rotated and this secret's grace period has ended/);
    assert.equal((await call(stack, rotated.secret)).status, 200, "the new secret works on");

    // Both were the same key: every request was metered against it.
    const rows = await stack.usageRows();
    assert.ok(rows.length >= 3 && rows.every((r) => r.api_key_id === keyId));
  } finally {
    await stack.close();
  }
});

Deno.test("a rotation with a grace of 0 ends the old secret as soon as the gateway is notified", async () => {
  const stack = await startStack();
  try {
    const { keyId, secret: old } = await stack.createKey();
    const rotated = await rotate(stack, keyId, 0);
    assert.equal(rotated.apiKey.previousSecretValidUntil, null);
    const elapsed = await waitFor(async () => (await call(stack, old)).status === 401, 1_000);
    assert.ok(elapsed < 1_000);
    assert.equal((await call(stack, rotated.secret)).status, 200);
  } finally {
    await stack.close();
  }
});

Deno.test("rotating again during a grace ends the earlier grace: only the latest replaced secret works", async () => {
  const stack = await startStack();
  try {
    const { keyId, secret: first } = await stack.createKey();
    const second = await rotate(stack, keyId, 600);
    await waitFor(async () => (await call(stack, second.secret)).status === 200, 1_000);
    assert.equal((await call(stack, first)).status, 200, "in its grace");

    const third = await rotate(stack, keyId, 600);
    await waitFor(async () => (await call(stack, third.secret)).status === 200, 1_000);
    assert.deepEqual(await call(stack, first), { status: 401, code: "invalid_api_key" });
    assert.equal((await call(stack, second.secret)).status, 200, "the latest replaced secret");

    // Revoking the key ends every secret of it, in a grace or not.
    await stack.graphql(`mutation ($id: ID!) { revokeApiKey(input: { id: $id }) { __typename } }`, {
      id: keyId,
    });
    await waitFor(async () => (await call(stack, third.secret)).status === 401, 1_000);
    assert.deepEqual(await call(stack, second.secret), { status: 401, code: "revoked_api_key" });
  } finally {
    await stack.close();
  }
});
