/** The waits between fallback attempts, with a fake clock, sleep and random source. */
import assert from "node:assert/strict";
import { createDeadlines } from "../../gateway/routing/deadlines.ts";
import { GatewayError } from "../../gateway/errors.ts";
import type { ModelPolicy, ProviderPolicy } from "../../gateway/policy/snapshot.ts";
import type { Provider, UpstreamCall } from "../../gateway/providers/provider.ts";
import {
  backoffMs,
  createCooldowns,
  type FallbackDeps,
  sendWithFallback,
} from "../../gateway/routing/fallback.ts";
import type { Target } from "../../gateway/routing/resolve.ts";

type Outcome = "ok" | GatewayError;

/** Targets whose providers answer from a script, on a fake clock that sleeping advances. */
function harness(models: string[], script: Record<string, Outcome[]>) {
  let clock = 0;
  const slept: number[] = [];
  const calls: string[] = [];
  const providers = new Map<string, Provider>();
  const targets: Target[] = models.map((name) => {
    const provider: ProviderPolicy = {
      id: `p-${name}`,
      name: `provider-${name}`,
      kind: "mock",
      baseUrl: null,
      credential: null,
      preset: null,
    };
    const model: ModelPolicy = {
      id: `m-${name}`,
      name,
      providerId: provider.id,
      upstreamName: name,
      prices: { input: 0n, output: 0n, cachedInput: 0n },
      maxOutputTokens: null,
      createdAt: 0,
    };
    providers.set(provider.id, {
      kind: "mock",
      supports: () => true,
      send(call: UpstreamCall) {
        calls.push(String(call.body.model));
        const outcome = script[name]?.shift() ?? "ok";
        if (outcome !== "ok") return Promise.reject(outcome);
        return Promise.resolve({ stream: false, text: "{}", json: {} });
      },
    });
    return { model, provider };
  });
  const deps: FallbackDeps = {
    providerFor: (config) => providers.get(config.id)!,
    backoff: { baseMs: 100, maxMs: 1_000, maxRetryAfterMs: 5_000 },
    cooldowns: createCooldowns(),
    deadlines: createDeadlines(),
    now: () => clock,
    sleep: (ms) => {
      slept.push(ms);
      clock += ms;
      return Promise.resolve();
    },
    random: () => 1,
  };
  const send = (list = targets) =>
    sendWithFallback(list, {
      op: "chat",
      body: {},
      stream: false,
      timeoutMs: 1_000,
      bodyFor: (t) => ({ model: t.model.name }),
    }, deps);
  return {
    targets,
    deps,
    send,
    slept,
    calls,
    advance: (ms: number) => (clock += ms),
  };
}

const unavailable = () => new GatewayError("upstream_error", 502, "down");
const limited = (seconds: number) =>
  new GatewayError("upstream_rate_limited", 429, "slow down", { retryAfter: seconds });

Deno.test("backoff grows exponentially with full jitter, capped", () => {
  const config = { baseMs: 100, maxMs: 1_000, maxRetryAfterMs: 0 };
  assert.deepEqual([1, 2, 3, 4, 5].map((n) => backoffMs(n, config, () => 1)), [
    100,
    200,
    400,
    800,
    1_000,
  ]);
  assert.equal(backoffMs(3, config, () => 0), 0);
  assert.equal(backoffMs(3, config, () => 0.5), 200);
});

Deno.test("fallback waits a jittered backoff between attempts", async () => {
  const h = harness(["a", "b", "c"], { a: [unavailable()], b: [unavailable()] });
  const served = await h.send();
  assert.equal(served.target.model.name, "c");
  assert.equal(served.attempts, 3);
  assert.deepEqual(h.slept, [100, 200]);
});

Deno.test("a retry of the same model waits out a short Retry-After", async () => {
  const h = harness(["a"], { a: [limited(2)] });
  const served = await h.send([h.targets[0]!, h.targets[0]!]);
  assert.equal(served.attempts, 2);
  assert.deepEqual(h.slept, [2_000], "Retry-After (2 s) wins over the 100 ms backoff");
});

Deno.test("a Retry-After longer than the limit is not waited for", async () => {
  const h = harness(["a"], { a: [limited(60)] });
  const error = await h.send([h.targets[0]!, h.targets[0]!]).then(() => null, (e) => e);
  assert.ok(error instanceof GatewayError);
  assert.equal(error.status, 429);
  assert.ok(error.retryAfter !== undefined && error.retryAfter <= 60);
  assert.deepEqual(h.slept, []);
  assert.deepEqual(h.calls, ["a"]);
});

Deno.test("a cooling target is skipped while another can serve, and tried again once cool", async () => {
  const h = harness(["a", "b"], { a: [limited(3)] });
  await h.send();
  assert.deepEqual(h.calls, ["a", "b"]);
  await h.send();
  assert.deepEqual(h.calls, ["a", "b", "b"], "a is skipped while it cools down");
  h.advance(3_000);
  await h.send();
  assert.deepEqual(h.calls, ["a", "b", "b", "a"]);
});

Deno.test("a single cooling target is still tried: the upstream decides", async () => {
  const h = harness(["a"], { a: [limited(30)] });
  await h.send().catch(() => {});
  const served = await h.send();
  assert.equal(served.target.model.name, "a");
  assert.deepEqual(h.slept, []);
});

Deno.test("a non-retryable error stops the fallback at once", async () => {
  const h = harness(["a", "b"], {
    a: [new GatewayError("invalid_request_error", 400, "bad", { retryable: false })],
  });
  const error = await h.send().then(() => null, (e) => e);
  assert.equal(error?.status, 400);
  assert.deepEqual(h.calls, ["a"]);
});
