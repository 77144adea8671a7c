/**
 * Aliases and fallback, driven by fault-injecting upstreams: a retryable
 * failure before the first byte moves on to the next target; a failure after
 * it belongs to the stream that already started.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { type FaultyUpstream, startFaultyUpstream } from "../helpers/faulty_upstream.ts";
import { type Stack, startStack, waitFor } from "../helpers/stack.ts";

const ALIAS = "tollgate-fast";

interface Setup {
  stack: Stack;
  alpha: FaultyUpstream;
  beta: FaultyUpstream;
  client: OpenAI;
}

/** An alias over two models on two fault-injecting providers, alpha first. */
async function withAlias(
  test: (setup: Setup) => Promise<void>,
  route: { timeoutMs?: number } = {},
): Promise<void> {
  const stack = await startStack();
  const alpha = startFaultyUpstream("alpha");
  const beta = startFaultyUpstream("beta");
  try {
    const upstreams = [["alpha", alpha, "1", "2"], ["beta", beta, "3", "4"]] as const;
    for (const [name, upstream, inputPrice, outputPrice] of upstreams) {
      await stack.addModel({
        provider: name,
        baseUrl: upstream.url,
        apiKey: `sk-${name}`,
        model: `${name}-model`,
        upstreamName: `${name}-upstream`,
        inputPrice,
        outputPrice,
      });
    }
    await stack.database.db.db.insertInto("routes").values({
      name: ALIAS,
      targets: ["alpha-model", "beta-model"],
      timeout_ms: route.timeoutMs ?? null,
    }).execute();
    const { secret } = await stack.createKey();
    await waitFor(() =>
      stack.gateway.policy.route(ALIAS) !== undefined &&
      stack.gateway.policy.model("beta-model") !== undefined
    );
    await test({ stack, alpha, beta, client: stack.openai(secret) });
  } finally {
    await alpha.close();
    await beta.close();
    await stack.close();
  }
}

const ask = { model: ALIAS, messages: [{ role: "user" as const, content: "hi" }] };

Deno.test("a 5xx before the first byte falls back to the next target, which is named and billed", async () => {
  await withAlias(async ({ stack, alpha, beta, client }) => {
    alpha.script.push({ kind: "status", status: 503 });
    const { data, response } = await client.chat.completions.create(ask).withResponse();
    assert.equal(data.choices[0]!.message.content, "Hello from beta.");
    assert.equal(response.headers.get("x-tollgate-provider"), "beta");
    assert.equal(response.headers.get("x-tollgate-upstream-model"), "beta-upstream");
    assert.equal(response.headers.get("x-tollgate-route"), ALIAS);
    assert.equal(response.headers.get("x-tollgate-attempts"), "2");
    assert.equal(alpha.requests.length, 1);
    assert.equal(beta.requests[0]!.model, "beta-upstream");

    const [row] = await stack.usageRows();
    assert.equal(row!.model, ALIAS);
    assert.equal(row!.provider_name, "beta");
    assert.equal(row!.status, 200);
    assert.equal(row!.prompt_tokens, 9);
    // beta's prices: $3 and $4 per million tokens, in 1e-8 USD units.
    assert.equal(row!.cost, 9n * 300n + 4n * 400n);
  });
});

Deno.test("connection resets before the first byte fall back, streaming and not", async () => {
  await withAlias(async ({ alpha, beta, client }) => {
    alpha.script.push({ kind: "reset_before_first_byte" }, { kind: "reset_after_first_byte" });
    const plain = await client.chat.completions.create(ask);
    assert.equal(plain.choices[0]!.message.content, "Hello from beta.");
    // A non-streaming body cut halfway has sent the caller nothing yet: fall back too.
    const half = await client.chat.completions.create(ask);
    assert.equal(half.choices[0]!.message.content, "Hello from beta.");

    alpha.script.push({ kind: "reset_before_first_byte" });
    const stream = await client.chat.completions.create({ ...ask, stream: true });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
    assert.equal(text, "Hello from beta.");
    assert.equal(alpha.requests.length, 3);
    assert.equal(beta.requests.length, 3);
  });
});

Deno.test("a target slower than the route's timeout falls back", async () => {
  await withAlias(async ({ alpha, client }) => {
    alpha.script.push({ kind: "hang" });
    const started = performance.now();
    const { data, response } = await client.chat.completions.create(ask).withResponse();
    assert.equal(data.choices[0]!.message.content, "Hello from beta.");
    assert.equal(response.headers.get("x-tollgate-attempts"), "2");
    assert.ok(performance.now() - started < 5_000);
  }, { timeoutMs: 300 });
});

Deno.test("a 429 with Retry-After cools its target down: later requests go straight to the next", async () => {
  await withAlias(async ({ alpha, beta, client }) => {
    alpha.script.push({ kind: "status", status: 429, retryAfter: "30" });
    const first = await client.chat.completions.create(ask).withResponse();
    assert.equal(first.response.headers.get("x-tollgate-provider"), "beta");
    const second = await client.chat.completions.create(ask).withResponse();
    assert.equal(second.response.headers.get("x-tollgate-provider"), "beta");
    assert.equal(second.response.headers.get("x-tollgate-attempts"), "1");
    assert.equal(alpha.requests.length, 1, "alpha is not asked again while it cools down");
    assert.equal(beta.requests.length, 2);
  });
});

Deno.test("an error a retry cannot fix is not sent to the next target", async () => {
  await withAlias(async ({ stack, alpha, beta, client }) => {
    alpha.script.push({ kind: "status", status: 400, message: "bad field" });
    const error = await client.chat.completions.create(ask).then(() => null, (e) => e);
    assert.ok(error instanceof OpenAI.BadRequestError);
    assert.equal(error.headers?.get("x-should-retry"), "false");
    assert.equal(beta.requests.length, 0);

    alpha.script.push({ kind: "status", status: 401 });
    const refused = await client.chat.completions.create(ask).then(() => null, (e) => e);
    assert.ok(refused instanceof OpenAI.APIError);
    assert.equal(refused.status, 502);
    assert.equal(refused.headers?.get("x-should-retry"), "false");
    assert.equal(beta.requests.length, 0);
    assert.deepEqual((await stack.usageRows()).map((r) => r.cost), [0n, 0n]);
  });
});

Deno.test("when every target fails, the caller gets the last error with its Retry-After", async () => {
  await withAlias(async ({ stack, alpha, beta, client }) => {
    alpha.script.push({ kind: "status", status: 500 });
    beta.script.push({ kind: "status", status: 429, retryAfter: "1" });
    const error = await client.chat.completions.create(ask).then(() => null, (e) => e);
    assert.ok(error instanceof OpenAI.RateLimitError);
    assert.equal(error.code, "upstream_rate_limited");
    assert.equal(error.headers?.get("retry-after"), "1");
    assert.equal(error.headers?.get("x-should-retry"), "true");
    assert.match(String(error.headers?.get("x-request-id")), /^req_/);
    const [row] = await stack.usageRows();
    assert.equal(row!.status, 429);
    assert.equal(row!.cost, 0n);
  });
});

Deno.test("a stream reset after its first byte is not switched: in-band error, usage estimated", async () => {
  await withAlias(async ({ stack, alpha, beta, client }) => {
    alpha.script.push({ kind: "reset_after_first_byte" });
    const stream = await client.chat.completions.create({ ...ask, stream: true });
    const error = await (async () => {
      for await (const _ of stream) { /* drain */ }
    })().then(() => null, (e) => e);
    assert.ok(error instanceof OpenAI.APIError, String(error));
    assert.match(error.message, /upstream stream from "alpha" failed/);
    assert.equal(beta.requests.length, 0, "no silent switch to another provider");

    const [row] = await stack.usageRows();
    assert.equal(row!.provider_name, "alpha");
    assert.equal(row!.error_code, "upstream_error");
    assert.equal(row!.estimated, true);
    assert.ok(row!.prompt_tokens > 0, "the prompt is estimated, never billed as zero");
    assert.ok(row!.cost > 0n);
  });
});

Deno.test("a truncated stream ends for the client and is metered as estimated", async () => {
  await withAlias(async ({ stack, alpha, beta, client }) => {
    alpha.script.push({ kind: "truncate", events: 2 });
    const stream = await client.chat.completions.create({ ...ask, stream: true });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
    assert.equal(text, "Hello from");
    assert.equal(beta.requests.length, 0);

    const [row] = await stack.usageRows();
    assert.equal(row!.error_code, "upstream_cut");
    assert.equal(row!.estimated, true);
    assert.equal(row!.completion_tokens, 2);
    assert.ok(row!.cost > 0n);
  });
});

Deno.test("a delayed target is waited for within the timeout", async () => {
  await withAlias(async ({ alpha, beta, client }) => {
    alpha.script.push({ kind: "delay", ms: 150 });
    const { data, response } = await client.chat.completions.create(ask).withResponse();
    assert.equal(data.choices[0]!.message.content, "Hello from alpha.");
    assert.equal(response.headers.get("x-tollgate-attempts"), "1");
    assert.equal(beta.requests.length, 0);
  }, { timeoutMs: 5_000 });
});
