import assert from "node:assert/strict";
import { POSTGRES_URL } from "../helpers/database.ts";
import { type PlaneProcess, startPlaneProcess } from "../helpers/process.ts";
import { type Stack, startStack, TEST_SECRET, waitFor } from "../helpers/stack.ts";

/** A stack on its own Postgres database, plus a gateway in another process on it. */
async function withGatewayProcess(
  env: Record<string, string>,
  test: (stack: Stack, gateway: PlaneProcess) => Promise<void>,
): Promise<void> {
  const stack = await startStack();
  const gateway = await startPlaneProcess("gateway/main.ts", {
    DATABASE_URL: stack.database.url!,
    TOLLGATE_SECRET: TEST_SECRET,
    TOLLGATE_GATEWAY_PORT: "0",
    TOLLGATE_HOST: "127.0.0.1",
    // Its own spool: the repository's must not collect (and later replay) test events.
    TOLLGATE_SPOOL_DIR: await Deno.makeTempDir({ prefix: "tollgate-spool-" }),
    ...env,
  });
  try {
    await test(stack, gateway);
  } finally {
    await gateway.stop();
    await stack.close();
  }
}

Deno.test({
  name: "a key revoked through GraphQL is refused by a gateway in another process within a second",
  ignore: !POSTGRES_URL, // the embedded PGlite is single-process
  async fn() {
    await withGatewayProcess({}, async (stack, gateway) => {
      const { secret, keyId } = await stack.createKey();
      const status = async () => {
        const response = await fetch(`${gateway.url}/v1/models`, {
          headers: { authorization: `Bearer ${secret}` },
        });
        await response.body?.cancel();
        return response.status;
      };
      await waitFor(async () => (await status()) === 200, 10_000);

      const revoked = await stack.graphql(
        `mutation ($id: ID!) { revokeApiKey(input: { id: $id }) { __typename } }`,
        { id: keyId },
      );
      assert.deepEqual(revoked.data, { revokeApiKey: { __typename: "ApiKey" } });
      const elapsed = await waitFor(async () => (await status()) === 401, 1_000, 5);
      assert.ok(elapsed < 1_000, `refused after ${elapsed.toFixed(0)} ms`);

      const body = await (await fetch(`${gateway.url}/v1/models`, {
        headers: { authorization: `Bearer ${secret}` },
      })).json();
      assert.equal(body.error.code, "revoked_api_key");
    });
  },
});

Deno.test({
  name: "a gateway process on Postgres meters a completion that the control plane then reports",
  ignore: !POSTGRES_URL,
  async fn() {
    await withGatewayProcess({ TOLLGATE_USAGE_FLUSH_MS: "20" }, async (stack, gateway) => {
      const { secret } = await stack.createKey();
      const call = () =>
        fetch(`${gateway.url}/v1/chat/completions`, {
          method: "POST",
          headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
          body: JSON.stringify({
            model: "tollgate-mock",
            messages: [{ role: "user", content: "hi" }],
          }),
        });
      let requestId = "";
      await waitFor(async () => {
        const response = await call();
        await response.body?.cancel();
        requestId = response.headers.get("x-request-id") ?? "";
        return response.status === 200;
      }, 10_000);
      const usage = await waitFor(async () => {
        const result = await stack.graphql<
          { requestLogs: { edges: { node: { requestId: string } }[] } }
        >(`{ requestLogs { edges { node { requestId } } } }`);
        return result.data?.requestLogs.edges.some((e) => e.node.requestId === requestId) ??
          false;
      }, 5_000);
      assert.ok(usage < 5_000);
    });
  },
});
