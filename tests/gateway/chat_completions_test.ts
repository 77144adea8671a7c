import assert from "node:assert/strict";
import OpenAI from "openai";
import { startStack, waitFor } from "../helpers/stack.ts";

Deno.test("the openai client gets a chat completion with usage, and it is metered", async () => {
  const stack = await startStack();
  try {
    const { secret, accountId, keyId } = await stack.createKey();
    const client = stack.openai(secret);
    const { data, response } = await client.chat.completions
      .create({ model: "tollgate-mock", messages: [{ role: "user", content: "Say hello" }] })
      .withResponse();
    assert.match(data.choices[0]!.message.content!, /You said: "Say hello"/);
    assert.equal(data.choices[0]!.finish_reason, "stop");
    assert.ok(data.usage!.prompt_tokens > 0 && data.usage!.completion_tokens > 0);
    assert.match(response.headers.get("x-request-id")!, /^req_[0-9a-f]{32}$/);
    assert.equal(response.headers.get("x-tollgate-provider"), "mock");
    assert.equal(response.headers.get("x-tollgate-upstream-model"), "mock-1");

    const [row, ...rest] = await stack.usageRows();
    assert.equal(rest.length, 0);
    assert.equal(row!.request_id, response.headers.get("x-request-id"));
    assert.equal(row!.account_id, accountId);
    assert.equal(row!.api_key_id, keyId);
    assert.equal(row!.status, 200);
    assert.equal(row!.prompt_tokens, data.usage!.prompt_tokens);
    assert.equal(row!.completion_tokens, data.usage!.completion_tokens);
    assert.equal(row!.estimated, false);
    // The mock model costs $0.15 and $0.60 per million tokens: 15 and 60 microcents a token.
    assert.equal(
      row!.cost,
      BigInt(data.usage!.prompt_tokens * 15 + data.usage!.completion_tokens * 60),
    );
  } finally {
    await stack.close();
  }
});

Deno.test("a streamed completion arrives whole; the usage chunk only when asked for", async () => {
  const stack = await startStack();
  try {
    const { secret } = await stack.createKey();
    const client = stack.openai(secret);
    const request = {
      model: "tollgate-mock",
      messages: [{ role: "user" as const, content: "Stream it" }],
    };

    const plain = await client.chat.completions.create({ ...request, stream: true });
    let text = "";
    let usageChunks = 0;
    for await (const chunk of plain) {
      text += chunk.choices[0]?.delta?.content ?? "";
      if (chunk.usage) usageChunks++;
    }
    assert.match(text, /You said: "Stream it"/);
    assert.equal(usageChunks, 0, "the client did not ask for usage");

    const withUsage = await client.chat.completions.create({
      ...request,
      stream: true,
      stream_options: { include_usage: true },
    });
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of withUsage) if (chunk.usage) usage = chunk.usage;
    assert.ok(usage && usage.completion_tokens > 0);

    const rows = await stack.usageRows();
    assert.equal(rows.length, 2);
    for (const row of rows) {
      assert.equal(row.stream, true);
      assert.equal(row.estimated, false);
      assert.equal(
        row.completion_tokens,
        usage.completion_tokens,
        "both streams are metered alike",
      );
      assert.ok(row.cost > 0n);
    }
  } finally {
    await stack.close();
  }
});

Deno.test("max_tokens cuts the answer and the usage counts exactly what was sent", async () => {
  const stack = await startStack();
  try {
    const { secret } = await stack.createKey();
    const completion = await stack.openai(secret).chat.completions.create({
      model: "tollgate-mock",
      messages: [{ role: "user", content: "Hi" }],
      max_tokens: 5,
    });
    assert.equal(completion.choices[0]!.finish_reason, "length");
    assert.equal(completion.usage!.completion_tokens, 5);
  } finally {
    await stack.close();
  }
});

Deno.test("errors use OpenAI's shape with a request id, and nothing is metered", async () => {
  const stack = await startStack({ maxBodyBytes: 4096 });
  try {
    const { secret } = await stack.createKey();
    const client = stack.openai(secret);
    const expectError = async (
      call: Promise<unknown>,
      status: number,
      code: string,
      param?: string,
    ) => {
      const error = await call.then(() => null, (e) => e);
      assert.ok(error instanceof OpenAI.APIError, `expected an APIError, got ${error}`);
      assert.equal(error.status, status);
      assert.equal(error.code, code);
      if (param) assert.equal(error.param, param);
      assert.match(error.requestID ?? "", /^req_/);
    };
    await expectError(
      client.chat.completions.create({
        model: "no-such-model",
        messages: [{ role: "user", content: "x" }],
      }),
      404,
      "model_not_found",
      "model",
    );
    await expectError(
      client.chat.completions.create({ model: "tollgate-mock", messages: [] }),
      400,
      "invalid_request_error",
      "messages",
    );
    await expectError(
      client.chat.completions.create(
        {
          model: "tollgate-mock",
          messages: [{ role: "wizard", content: "x" }],
        } as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming,
      ),
      400,
      "invalid_request_error",
      "messages[0].role",
    );
    await expectError(
      client.chat.completions.create({
        model: "tollgate-mock",
        messages: [{ role: "user", content: "x".repeat(5000) }],
      }),
      413,
      "request_too_large",
    );
    await expectError(stack.openai("tg_notakey").models.list(), 401, "invalid_api_key");

    const raw = await fetch(`${stack.gatewayUrl}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
      body: "{not json",
    });
    assert.equal(raw.status, 400);
    assert.equal((await raw.json()).error.code, "invalid_json");
    assert.equal(raw.headers.get("x-should-retry"), "false");

    const missing = await fetch(`${stack.gatewayUrl}/v1/nothing-here`);
    assert.equal(missing.status, 404);
    assert.deepEqual(Object.keys((await missing.json()).error).sort(), [
      "code",
      "message",
      "param",
      "type",
    ]);
    assert.match(missing.headers.get("x-request-id")!, /^req_/);

    assert.equal((await stack.usageRows()).length, 0);
  } finally {
    await stack.close();
  }
});

Deno.test("GET /v1/models lists the configured models in OpenAI's shape", async () => {
  const stack = await startStack();
  try {
    const { secret } = await stack.createKey();
    const models = await stack.openai(secret).models.list();
    assert.deepEqual(models.data.map((m) => [m.id, m.object, m.owned_by]), [[
      "tollgate-mock",
      "model",
      "mock",
    ]]);
  } finally {
    await stack.close();
  }
});

Deno.test("a key revoked through GraphQL is refused by the running gateway within a second", async () => {
  const stack = await startStack();
  try {
    const { secret, keyId } = await stack.createKey();
    const client = stack.openai(secret);
    await client.models.list();
    const revoked = await stack.graphql(
      `mutation ($id: ID!) { revokeApiKey(input: { id: $id }) { __typename } }`,
      { id: keyId },
    );
    assert.equal(
      (revoked.data as { revokeApiKey: { __typename: string } }).revokeApiKey.__typename,
      "ApiKey",
    );
    const elapsed = await waitFor(async () => {
      const r = await fetch(`${stack.gatewayUrl}/v1/models`, {
        headers: { authorization: `Bearer ${secret}` },
      });
      await r.body?.cancel();
      return r.status === 401;
    }, 1_000);
    assert.ok(elapsed < 1_000);
    const error = await client.models.list().then(() => null, (e) => e);
    assert.equal(error.code, "revoked_api_key");
  } finally {
    await stack.close();
  }
});
