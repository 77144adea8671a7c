/**
 * The official SDK's retry behaviour against the gateway: it retries what
 * the gateway marks retryable (x-should-retry: true, Retry-After honoured),
 * and never what a retry cannot fix (x-should-retry: false).
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { type FaultyUpstream, startFaultyUpstream } from "../helpers/faulty_upstream.ts";
import { type Stack, startStack, waitFor } from "../helpers/stack.ts";

const MODEL = "plain-model";

interface Seen {
  status: number;
  shouldRetry: string | null;
}

/** A plain model on a fault-injecting upstream, and an SDK client that records every answer. */
async function withClient(
  test: (ctx: { stack: Stack; upstream: FaultyUpstream; client: OpenAI; seen: Seen[] }) => Promise<
    void
  >,
): Promise<void> {
  const stack = await startStack();
  const upstream = startFaultyUpstream("upstream");
  try {
    await stack.addModel({
      provider: "up",
      baseUrl: upstream.url,
      apiKey: "sk-up",
      model: MODEL,
      upstreamName: "up-model",
      outputPrice: "1",
    });
    const { secret } = await stack.createKey();
    await waitFor(() => stack.gateway.policy.model(MODEL) !== undefined);
    const seen: Seen[] = [];
    const client = new OpenAI({
      apiKey: secret,
      baseURL: `${stack.gatewayUrl}/v1`,
      maxRetries: 2,
      fetch: async (input: string | URL | Request, init?: RequestInit) => {
        const response = await fetch(input, init);
        seen.push({ status: response.status, shouldRetry: response.headers.get("x-should-retry") });
        return response;
      },
    });
    await test({ stack, upstream, client, seen });
  } finally {
    await upstream.close();
    await stack.close();
  }
}

const ask = { model: MODEL, messages: [{ role: "user" as const, content: "hi" }] };

Deno.test("the SDK retries upstream 5xx answers and then succeeds", async () => {
  await withClient(async ({ upstream, client, seen }) => {
    upstream.script.push({ kind: "status", status: 503 }, { kind: "reset_before_first_byte" });
    const completion = await client.chat.completions.create(ask);
    assert.equal(completion.choices[0]!.message.content, "Hello from upstream.");
    assert.deepEqual(seen, [
      { status: 502, shouldRetry: "true" },
      { status: 502, shouldRetry: "true" },
      { status: 200, shouldRetry: null },
    ]);
    assert.equal(upstream.requests.length, 3);
  });
});

Deno.test("the SDK waits out the Retry-After the gateway passes on from a 429", async () => {
  await withClient(async ({ upstream, client, seen }) => {
    upstream.script.push({ kind: "status", status: 429, retryAfter: "1" });
    const started = performance.now();
    const completion = await client.chat.completions.create(ask);
    assert.equal(completion.choices[0]!.message.content, "Hello from upstream.");
    assert.ok(performance.now() - started >= 900, "the client waited about a second");
    assert.deepEqual(seen.map((s) => s.status), [429, 200]);
  });
});

Deno.test("the SDK does not retry what a retry cannot fix", async () => {
  await withClient(async ({ stack, upstream, client, seen }) => {
    // The provider refuses the operator's credential: a 502, but final.
    upstream.script.push({ kind: "status", status: 401 });
    const refused = await client.chat.completions.create(ask).then(() => null, (e) => e);
    assert.ok(refused instanceof OpenAI.APIError);
    assert.equal(refused.status, 502);
    assert.deepEqual(seen, [{ status: 502, shouldRetry: "false" }]);

    // The upstream rejects the request itself.
    upstream.script.push({ kind: "status", status: 422, message: "bad" });
    const rejected = await client.chat.completions.create(ask).then(() => null, (e) => e);
    assert.ok(rejected instanceof OpenAI.BadRequestError);
    assert.equal(seen.length, 2);

    // An unknown model.
    const unknown = await client.chat.completions.create({ ...ask, model: "nope" })
      .then(() => null, (e) => e);
    assert.ok(unknown instanceof OpenAI.NotFoundError);
    assert.equal(seen.length, 3);
    assert.equal(seen[2]!.shouldRetry, "false");
    assert.equal(upstream.requests.length, 2);

    // A revoked key.
    const keyId = (await stack.database.db.db.selectFrom("api_keys").select("id")
      .executeTakeFirstOrThrow()).id;
    await stack.graphql(`mutation ($id: ID!) { revokeApiKey(input: { id: $id }) { __typename } }`, {
      id: keyId,
    });
    await waitFor(async () => {
      const error = await client.models.list().then(() => null, (e) => e);
      return error instanceof OpenAI.AuthenticationError;
    });
    const before = seen.length;
    const revoked = await client.chat.completions.create(ask).then(() => null, (e) => e);
    assert.ok(revoked instanceof OpenAI.AuthenticationError);
    assert.equal(revoked.code, "revoked_api_key");
    assert.deepEqual(seen.slice(before), [{ status: 401, shouldRetry: "false" }]);
  });
});
