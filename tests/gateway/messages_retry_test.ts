/**
 * Upstream failures on /v1/messages as Anthropic's official SDKs, 1.x and
 * 0.x, live them: the Anthropic error each one sees, which it retries (what
 * the gateway marks x-should-retry: true, Retry-After honoured) and which it
 * does not, and what is metered: one row per request, and for a stream the
 * upstream cut short an estimate, never zero.
 */
import type { UsageEvent } from "../../schema/database.ts";
import assert from "node:assert/strict";
import type Anthropic from "@anthropic-ai/sdk";
import { anthropicError, startFakeAnthropic } from "../helpers/fake_anthropic.ts";
import { type FaultyUpstream, startFaultyUpstream } from "../helpers/faulty_upstream.ts";
import {
  ANTHROPIC_SDKS,
  type AnthropicSdk,
  SDK_MAJORS,
  type Stack,
  startStack,
  waitFor,
} from "../helpers/stack.ts";

/** Served by the fault-injecting OpenAI-compatible upstream, translated. */
const PLAIN = "plain-model";
/** Served by a fake Anthropic upstream, passed through. */
const NATIVE = "claude-fake";

interface Seen {
  status: number;
  shouldRetry: string | null;
}

interface Ctx {
  stack: Stack;
  upstream: FaultyUpstream;
  /** Answers NATIVE; a test sets how. */
  anthropic: ReturnType<typeof startFakeAnthropic>;
  /** A client of SDK major `sdk` with its own key, recording every answer it gets in `seen`. */
  client(sdk: AnthropicSdk, options?: { maxRetries?: number }): Promise<{
    client: Anthropic;
    seen: Seen[];
    keyId: string;
  }>;
  /** The usage rows added since the last call. */
  newRows(): Promise<UsageRow[]>;
}

type UsageRow = UsageEvent;

async function withUpstreams(test: (ctx: Ctx) => Promise<void>) {
  const stack = await startStack();
  const upstream = startFaultyUpstream("upstream");
  const anthropic = startFakeAnthropic();
  try {
    await stack.addModel({
      provider: "up",
      baseUrl: upstream.url,
      apiKey: "sk-up",
      model: PLAIN,
      upstreamName: "up-model",
    });
    await stack.addModel({
      provider: "claude",
      kind: "anthropic",
      baseUrl: anthropic.url,
      apiKey: "sk-ant",
      model: NATIVE,
      upstreamName: "claude-sonnet-4-5",
    });
    await waitFor(() => [PLAIN, NATIVE].every((m) => stack.gateway.policy.model(m)));
    let counted = 0;
    await test({
      stack,
      upstream,
      anthropic,
      async client(sdk, { maxRetries = 2 } = {}) {
        const { secret, keyId } = await stack.createKey({ accountName: `SDK ${sdk}` });
        const seen: Seen[] = [];
        const client = stack.anthropic(secret, {
          sdk,
          maxRetries,
          fetch: async (input: string | URL | Request, init?: RequestInit) => {
            const response = await fetch(input, init);
            seen.push({
              status: response.status,
              shouldRetry: response.headers.get("x-should-retry"),
            });
            return response;
          },
        });
        return { client, seen, keyId };
      },
      async newRows() {
        const rows = await stack.usageRows();
        const added = rows.slice(counted);
        counted = rows.length;
        return added;
      },
    });
  } finally {
    await anthropic.close();
    await upstream.close();
    await stack.close();
  }
}

const ask = (model = PLAIN) => ({
  model,
  max_tokens: 100,
  messages: [{ role: "user" as const, content: "hi" }],
});

const ANSWER = "Hello from upstream.";

function textOf(message: Anthropic.Message): string {
  return message.content.map((block) => block.type === "text" ? block.text : "").join("");
}

/** The APIError `call` failed with, of SDK `sdk`, and the Anthropic error type in its body. */
async function apiError(sdk: AnthropicSdk, call: Promise<unknown>) {
  const error = await call.then(() => null, (e) => e);
  assert.ok(error instanceof ANTHROPIC_SDKS[sdk].APIError, `SDK ${sdk}: ${error}`);
  const type = (error.error as { error?: { type?: string } } | undefined)?.error?.type;
  return { error, type };
}

Deno.test("upstream 429s and 5xxs reach each SDK as rate_limit_error, api_error or overloaded_error", async () => {
  await withUpstreams(async ({ upstream, client: clientFor, newRows }) => {
    const cases: [Parameters<typeof upstream.script.push>[0], number, string, string][] = [
      [
        { kind: "status", status: 429, retryAfter: "7" },
        429,
        "rate_limit_error",
        "upstream_rate_limited",
      ],
      [{ kind: "status", status: 500 }, 502, "api_error", "upstream_error"],
      [{ kind: "status", status: 503 }, 502, "api_error", "upstream_error"],
      [{ kind: "status", status: 529 }, 529, "overloaded_error", "upstream_overloaded"],
      [{ kind: "reset_before_first_byte" }, 502, "api_error", "upstream_error"],
    ];
    for (const sdk of SDK_MAJORS) {
      const { client, seen } = await clientFor(sdk, { maxRetries: 0 });
      for (const [fault, status, type, code] of cases) {
        upstream.script.push(fault);
        const { error, type: seenType } = await apiError(sdk, client.messages.create(ask()));
        assert.deepEqual([error.status, seenType], [status, type], `SDK ${sdk}: ${fault.kind}`);
        assert.match(error.requestID ?? "", /^req_/);
        assert.equal(seen.at(-1)!.shouldRetry, "true");
        if (status === 429) assert.equal(error.headers?.get("retry-after"), "7");
        const [row, ...more] = await newRows();
        assert.equal(more.length, 0, "one usage row per request");
        assert.deepEqual([row!.request_id, row!.error_code, row!.prompt_tokens], [
          error.requestID,
          code,
          0,
        ]);
      }
    }
    assert.equal(upstream.requests.length, cases.length * SDK_MAJORS.length);
  });
});

Deno.test("each SDK retries upstream 5xxs and a reset, then succeeds: one upstream hit per attempt", async () => {
  await withUpstreams(async ({ upstream, client: clientFor, newRows }) => {
    for (const sdk of SDK_MAJORS) {
      const { client, seen } = await clientFor(sdk);
      const before = upstream.requests.length;
      upstream.script.push({ kind: "status", status: 500 }, { kind: "reset_before_first_byte" });
      const message = await client.messages.create(ask());
      assert.equal(textOf(message), ANSWER);
      assert.deepEqual(seen, [
        { status: 502, shouldRetry: "true" },
        { status: 502, shouldRetry: "true" },
        { status: 200, shouldRetry: null },
      ]);
      assert.equal(upstream.requests.length - before, 3);
      const rows = await newRows();
      assert.deepEqual(rows.map((r) => [r.status, r.error_code]), [
        [502, "upstream_error"],
        [502, "upstream_error"],
        [200, null],
      ]);
      assert.deepEqual([rows[2]!.request_id, rows[2]!.completion_tokens], [
        message._request_id,
        4,
      ]);
    }
  });
});

Deno.test("each SDK gives up after maxRetries: three upstream hits, then the error", async () => {
  await withUpstreams(async ({ upstream, client: clientFor }) => {
    for (const sdk of SDK_MAJORS) {
      const { client, seen } = await clientFor(sdk);
      const before = upstream.requests.length;
      upstream.script.push(...Array(3).fill({ kind: "status", status: 500 }));
      const { error } = await apiError(sdk, client.messages.create(ask()));
      assert.ok(error instanceof ANTHROPIC_SDKS[sdk].InternalServerError);
      assert.equal(upstream.requests.length - before, 3);
      assert.deepEqual(seen.map((s) => s.status), [502, 502, 502]);
    }
  });
});

Deno.test("each SDK waits out the Retry-After of a 429, and retries a stream refused before its first byte", async () => {
  await withUpstreams(async ({ upstream, client: clientFor }) => {
    for (const sdk of SDK_MAJORS) {
      const { client, seen } = await clientFor(sdk);
      upstream.script.push({ kind: "status", status: 429, retryAfter: "1" });
      const started = performance.now();
      assert.equal(textOf(await client.messages.create(ask())), ANSWER);
      assert.ok(performance.now() - started >= 900, "the client waited about a second");
      assert.deepEqual(seen.map((s) => s.status), [429, 200]);

      upstream.script.push({ kind: "status", status: 503 });
      const final = await client.messages.stream(ask()).finalMessage();
      assert.equal(textOf(final), ANSWER);
      assert.deepEqual(seen.slice(2).map((s) => s.status), [502, 200]);
    }
  });
});

Deno.test("each SDK retries an overloaded Anthropic upstream (529) on a pass-through", async () => {
  await withUpstreams(async ({ anthropic, client: clientFor }) => {
    const normally = anthropic.reply;
    let failures = 0;
    anthropic.reply = (body, request) =>
      failures++ % 2 === 0 ? anthropicError(529, "overloaded_error", "Overloaded") : normally(
        body,
        request,
      );
    for (const sdk of SDK_MAJORS) {
      const { client, seen } = await clientFor(sdk);
      const before = anthropic.requests.length;
      const message = await client.messages.create(ask(NATIVE));
      assert.equal(message.stop_reason, "end_turn");
      assert.deepEqual(seen, [
        { status: 529, shouldRetry: "true" },
        { status: 200, shouldRetry: null },
      ]);
      assert.equal(anthropic.requests.length - before, 2);
    }
  });
});

Deno.test("what a retry cannot fix is not retried: 401, 403, 404 and the upstream's refusals", async () => {
  await withUpstreams(async ({ stack, upstream, client: clientFor }) => {
    for (const sdk of SDK_MAJORS) {
      const errors = ANTHROPIC_SDKS[sdk];
      const { client, seen, keyId } = await clientFor(sdk);
      const hits = upstream.requests.length;
      const once = async (call: Promise<unknown>, status: number, type: string) => {
        const before = seen.length;
        const { error, type: seenType } = await apiError(sdk, call);
        assert.deepEqual([error.status, seenType], [status, type], `SDK ${sdk}`);
        assert.deepEqual(seen.slice(before), [{ status, shouldRetry: "false" }]);
        return error;
      };

      // The provider refuses the operator's credential: a 502, but final.
      upstream.script.push({ kind: "status", status: 401 });
      await once(client.messages.create(ask()), 502, "api_error");
      // The upstream rejects the request itself.
      upstream.script.push({ kind: "status", status: 422, message: "bad" });
      const rejected = await once(client.messages.create(ask()), 400, "invalid_request_error");
      assert.ok(rejected instanceof errors.BadRequestError);
      assert.equal(upstream.requests.length - hits, 2);

      const unknown = await once(
        client.messages.create(ask("no-such-model")),
        404,
        "not_found_error",
      );
      assert.ok(unknown instanceof errors.NotFoundError);

      await stack.database.db.db.updateTable("api_keys").set({ allowed_models: [NATIVE] })
        .where("id", "=", keyId).execute();
      await waitFor(async () => {
        const listed = await client.models.list();
        return listed.data.every((model) => model.id !== PLAIN);
      });
      const denied = await once(client.messages.create(ask()), 403, "permission_error");
      assert.ok(denied instanceof errors.PermissionDeniedError);

      await stack.graphql(
        `mutation ($id: ID!) { revokeApiKey(input: { id: $id }) { __typename } }`,
        { id: keyId },
      );
      await waitFor(async () => {
        const listed = await client.models.list().then(() => null, (e) => e);
        return listed instanceof errors.AuthenticationError;
      });
      const revoked = await once(
        client.messages.create(ask(NATIVE)),
        401,
        "authentication_error",
      );
      assert.ok(revoked instanceof errors.AuthenticationError);
      assert.equal(upstream.requests.length - hits, 2, "none of these reached the upstream");
    }
  });
});

Deno.test("a stream the upstream cuts short is metered as estimated, and each SDK sees an error", async () => {
  await withUpstreams(async ({ stack, upstream, client: clientFor, newRows }) => {
    for (const sdk of SDK_MAJORS) {
      const { client } = await clientFor(sdk);
      const counted = await client.messages.countTokens({
        model: PLAIN,
        messages: ask().messages,
      });

      upstream.script.push({ kind: "truncate", events: 2 });
      const { data: raw, response } = await client.messages.create({ ...ask(), stream: true })
        .withResponse();
      const names: string[] = [];
      const { type } = await apiError(
        sdk,
        (async () => {
          for await (const event of raw) names.push(event.type);
        })(),
      );
      assert.equal(type, "api_error");
      assert.deepEqual(names.slice(0, 2), ["message_start", "content_block_start"]);
      assert.ok(!names.includes("message_stop"));

      upstream.script.push({ kind: "truncate", events: 2 });
      const stream = client.messages.stream(ask());
      await apiError(sdk, stream.finalMessage());

      await waitFor(async () =>
        (await stack.usageRows()).length >= 2 * (SDK_MAJORS.indexOf(sdk) + 1)
      );
      const rows = await newRows();
      assert.deepEqual(
        rows.map((r) => r.request_id).sort(),
        [
          response.headers.get("request-id"),
          stream.request_id,
        ].sort(),
      );
      for (const row of rows) {
        assert.deepEqual(
          [row.endpoint, row.stream, row.estimated, row.error_code, row.status],
          ["/v1/messages", true, true, "upstream_cut", 200],
        );
        // What streamed ("Hello from") is estimated; the prompt as count_tokens counts it.
        assert.equal(row.completion_tokens, 2);
        assert.equal(row.prompt_tokens, counted.input_tokens);
        assert.ok(row.cost > 0n);
      }
    }
  });
});
