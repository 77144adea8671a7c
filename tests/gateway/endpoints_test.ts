/**
 * Conformance of every OpenAI endpoint with the official `openai` client:
 * the documented response shape, streaming where the endpoint streams, the
 * request id, and one priced usage event per request.
 */
import assert from "node:assert/strict";
import type OpenAI from "openai";
import { completion, type FakeUpstream, startFakeUpstream } from "../helpers/fake_upstream.ts";
import { type Stack, startStack, waitFor } from "../helpers/stack.ts";

const MODEL = "tollgate-mock";
const REQUEST_ID = /^req_[0-9a-f]{32}$/;

/** A stack with an inference key, and the official client for it. */
async function withClient(test: (stack: Stack, client: OpenAI) => Promise<void>) {
  const stack = await startStack();
  try {
    const { secret } = await stack.createKey();
    await test(stack, stack.openai(secret));
  } finally {
    await stack.close();
  }
}

/** The usage events once `count` of them are written. */
async function usageRows(stack: Stack, count: number) {
  const read = async () => {
    await stack.gateway.usage.flush();
    return await stack.database.db.db.selectFrom("usage_events").selectAll().orderBy("created_at")
      .execute();
  };
  await waitFor(async () => (await read()).length >= count, 2_000);
  const rows = await read();
  assert.equal(rows.length, count);
  return rows;
}

/** The mock model costs $0.15 and $0.60 per million tokens: 15 and 60 microcents a token. */
function mockCost(prompt: number, completion: number): bigint {
  return BigInt(prompt * 15 + completion * 60);
}

function assertMetered(
  row: Awaited<ReturnType<typeof usageRows>>[number],
  expected: {
    requestId: string;
    endpoint: string;
    prompt: number;
    completion: number;
    stream: boolean;
  },
) {
  assert.equal(row.request_id, expected.requestId);
  assert.equal(row.endpoint, expected.endpoint);
  assert.equal(row.status, 200);
  assert.equal(row.stream, expected.stream);
  assert.equal(row.estimated, false);
  assert.equal(row.error_code, null);
  assert.ok(expected.prompt > 0, "the prompt has tokens");
  assert.equal(row.prompt_tokens, expected.prompt);
  assert.equal(row.completion_tokens, expected.completion);
  assert.equal(row.cost, mockCost(expected.prompt, expected.completion));
  assert.ok(row.cost > 0n);
}

Deno.test("completions: a text completion with usage, metered on /v1/completions", async () => {
  await withClient(async (stack, client) => {
    const { data, response } = await client.completions
      .create({ model: MODEL, prompt: "Say hello", max_tokens: 100 })
      .withResponse();
    assert.equal(data.object, "text_completion");
    assert.equal(data.choices.length, 1);
    assert.match(data.choices[0]!.text, /You said: "Say hello"/);
    assert.equal(data.choices[0]!.finish_reason, "stop");
    assert.ok(data.usage!.prompt_tokens > 0 && data.usage!.completion_tokens > 0);
    assert.equal(
      data.usage!.total_tokens,
      data.usage!.prompt_tokens + data.usage!.completion_tokens,
    );
    assert.match(response.headers.get("x-request-id")!, REQUEST_ID);

    const [row] = await usageRows(stack, 1);
    assertMetered(row!, {
      requestId: response.headers.get("x-request-id")!,
      endpoint: "/v1/completions",
      prompt: data.usage!.prompt_tokens,
      completion: data.usage!.completion_tokens,
      stream: false,
    });

    // Several prompts, one as token ids: one choice each, max_tokens counted exactly.
    const many = await client.completions.create({
      model: MODEL,
      prompt: [[9906, 1917], [40, 1]],
      max_tokens: 3,
    });
    assert.equal(many.choices.length, 2);
    assert.deepEqual(many.choices.map((c) => c.finish_reason), ["length", "length"]);
    assert.equal(many.usage!.prompt_tokens, 4);
    assert.equal(many.usage!.completion_tokens, 6);
  });
});

Deno.test("completions: a stream of choices[].text, with the usage chunk only when asked for", async () => {
  await withClient(async (stack, client) => {
    const { data: plain, response } = await client.completions
      .create({ model: MODEL, prompt: "Stream it", stream: true })
      .withResponse();
    assert.match(response.headers.get("x-request-id")!, REQUEST_ID);
    let text = "";
    let finish: string | null = null;
    for await (const chunk of plain) {
      assert.equal(chunk.object, "text_completion");
      assert.equal(chunk.usage ?? null, null, "the client did not ask for usage");
      text += chunk.choices[0]?.text ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    assert.match(text, /You said: "Stream it"/);
    assert.equal(finish, "stop");

    const withUsage = await client.completions.create({
      model: MODEL,
      prompt: "Stream it",
      stream: true,
      stream_options: { include_usage: true },
    });
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of withUsage) if (chunk.usage) usage = chunk.usage;
    assert.ok(usage && usage.completion_tokens > 0);

    const rows = await usageRows(stack, 2);
    assert.equal(rows[0]!.request_id, response.headers.get("x-request-id"));
    for (const row of rows) {
      assertMetered(row, {
        requestId: row.request_id,
        endpoint: "/v1/completions",
        prompt: usage.prompt_tokens,
        completion: usage.completion_tokens,
        stream: true,
      });
    }
  });
});

Deno.test("embeddings: unit vectors as floats or base64, dimensions honoured, metered", async () => {
  await withClient(async (stack, client) => {
    const { data: floats, response } = await client.embeddings
      .create({ model: MODEL, input: "The food was delicious", encoding_format: "float" })
      .withResponse();
    assert.match(response.headers.get("x-request-id")!, REQUEST_ID);
    assert.equal(floats.object, "list");
    assert.equal(floats.data.length, 1);
    assert.equal(floats.data[0]!.object, "embedding");
    assert.equal(floats.data[0]!.index, 0);
    const vector = floats.data[0]!.embedding;
    assert.equal(vector.length, 256);
    assert.ok(Math.abs(Math.hypot(...vector) - 1) < 1e-5, "a unit vector");
    assert.ok(floats.usage.prompt_tokens > 0);
    assert.equal(floats.usage.total_tokens, floats.usage.prompt_tokens);

    // The client's default asks for base64 and decodes it: the same float32 values.
    const decoded = await client.embeddings.create({
      model: MODEL,
      input: "The food was delicious",
    });
    assert.deepEqual(decoded.data[0]!.embedding, vector);

    // Asked for base64 explicitly, the client hands over float32 little-endian bytes.
    const raw = await client.embeddings.create({
      model: MODEL,
      input: "The food was delicious",
      encoding_format: "base64",
    });
    const b64 = raw.data[0]!.embedding as unknown as string;
    assert.equal(typeof b64, "string");
    const bytes = decodeBase64(b64);
    const view = new DataView(bytes.buffer);
    assert.deepEqual(Array.from({ length: 256 }, (_, i) => view.getFloat32(i * 4, true)), vector);

    const several = await client.embeddings.create({
      model: MODEL,
      input: ["first", "second"],
      dimensions: 64,
      encoding_format: "float",
    });
    assert.deepEqual(several.data.map((d) => [d.index, d.embedding.length]), [[0, 64], [1, 64]]);
    assert.notDeepEqual(several.data[0]!.embedding, several.data[1]!.embedding);

    const rows = await usageRows(stack, 4);
    assertMetered(rows[0]!, {
      requestId: response.headers.get("x-request-id")!,
      endpoint: "/v1/embeddings",
      prompt: floats.usage.prompt_tokens,
      completion: 0,
      stream: false,
    });
    assert.equal(rows[3]!.prompt_tokens, several.usage.prompt_tokens);
  });
});

Deno.test("images: a PNG as b64_json or a data URL, usage in gpt-image-1's shape, metered", async () => {
  await withClient(async (stack, client) => {
    const { data, response } = await client.images
      .generate({ model: MODEL, prompt: "A lighthouse at dawn" })
      .withResponse();
    assert.match(response.headers.get("x-request-id")!, REQUEST_ID);
    assert.ok(data.created > 0);
    assert.equal(data.data!.length, 1);
    await assertPng(decodeBase64(data.data![0]!.b64_json!));
    const usage = data.usage!;
    assert.ok(usage.input_tokens > 0 && usage.output_tokens > 0);
    assert.equal(usage.total_tokens, usage.input_tokens + usage.output_tokens);

    const urls = await client.images.generate({
      model: MODEL,
      prompt: "A lighthouse at dawn",
      n: 2,
      response_format: "url",
    });
    assert.equal(urls.data!.length, 2);
    for (const image of urls.data!) {
      assert.match(image.url!, /^data:image\/png;base64,/);
      await assertPng(decodeBase64(image.url!.split(",")[1]!));
    }

    const rows = await usageRows(stack, 2);
    assertMetered(rows[0]!, {
      requestId: response.headers.get("x-request-id")!,
      endpoint: "/v1/images/generations",
      prompt: usage.input_tokens,
      completion: usage.output_tokens,
      stream: false,
    });
    assert.equal(rows[1]!.completion_tokens, 2 * usage.output_tokens);
  });
});

Deno.test("images: a stream of generation events is metered from its completed event", async () => {
  await withClient(async (stack, client) => {
    const { data: stream, response } = await client.images
      .generate({ model: MODEL, prompt: "A lighthouse at dawn", stream: true, partial_images: 1 })
      .withResponse();
    const types: string[] = [];
    let completed: OpenAI.Images.ImageGenCompletedEvent | undefined;
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === "image_generation.completed") completed = event;
    }
    assert.deepEqual(types, ["image_generation.partial_image", "image_generation.completed"]);
    await assertPng(decodeBase64(completed!.b64_json));

    const [row] = await usageRows(stack, 1);
    assertMetered(row!, {
      requestId: response.headers.get("x-request-id")!,
      endpoint: "/v1/images/generations",
      prompt: completed!.usage.input_tokens,
      completion: completed!.usage.output_tokens,
      stream: true,
    });
  });
});

Deno.test("responses: a response with an output message and usage, metered on /v1/responses", async () => {
  await withClient(async (stack, client) => {
    const { data, response } = await client.responses
      .create({
        model: MODEL,
        instructions: "Be brief.",
        input: [{ role: "user", content: [{ type: "input_text", text: "Say hello" }] }],
      })
      .withResponse();
    assert.match(response.headers.get("x-request-id")!, REQUEST_ID);
    assert.equal(data.object, "response");
    assert.equal(data.status, "completed");
    assert.equal(data.instructions, "Be brief.");
    const message = data.output[0]!;
    assert.equal(message.type, "message");
    assert.match(data.output_text, /You said: "Say hello"/);
    const usage = data.usage!;
    assert.ok(usage.input_tokens > 0 && usage.output_tokens > 0);
    assert.equal(usage.total_tokens, usage.input_tokens + usage.output_tokens);

    const cut = await client.responses.create({
      model: MODEL,
      input: "Say hello",
      max_output_tokens: 4,
    });
    assert.equal(cut.status, "incomplete");
    assert.deepEqual(cut.incomplete_details, { reason: "max_output_tokens" });
    assert.equal(cut.usage!.output_tokens, 4);

    const rows = await usageRows(stack, 2);
    assertMetered(rows[0]!, {
      requestId: response.headers.get("x-request-id")!,
      endpoint: "/v1/responses",
      prompt: usage.input_tokens,
      completion: usage.output_tokens,
      stream: false,
    });
    assert.equal(rows[1]!.completion_tokens, 4);
  });
});

Deno.test("responses: a stream of the documented events, metered from response.completed", async () => {
  await withClient(async (stack, client) => {
    const { data: stream, response } = await client.responses
      .create({ model: MODEL, input: "Stream it", stream: true })
      .withResponse();
    assert.match(response.headers.get("x-request-id")!, REQUEST_ID);
    const types: string[] = [];
    const sequence: number[] = [];
    let text = "";
    let final: OpenAI.Responses.Response | undefined;
    for await (const event of stream) {
      types.push(event.type);
      sequence.push(event.sequence_number);
      if (event.type === "response.output_text.delta") text += event.delta;
      if (event.type === "response.completed") final = event.response;
    }
    const deltas = types.filter((t) => t === "response.output_text.delta").length;
    assert.ok(deltas > 1, "one delta per token");
    assert.deepEqual(types.filter((t) => t !== "response.output_text.delta"), [
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.content_part.added",
      "response.output_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.completed",
    ]);
    assert.deepEqual(sequence, types.map((_, i) => i));
    assert.match(text, /You said: "Stream it"/);
    const usage = final!.usage!;
    assert.equal(usage.output_tokens, deltas);

    // The client's stream helper accumulates the same events into the final response.
    const helper = client.responses.stream({ model: MODEL, input: "Stream it" });
    const accumulated = await helper.finalResponse();
    assert.equal(accumulated.output_text, text);
    assert.deepEqual(accumulated.usage, usage);

    const rows = await usageRows(stack, 2);
    for (const row of rows) {
      assertMetered(row, {
        requestId: row.request_id,
        endpoint: "/v1/responses",
        prompt: usage.input_tokens,
        completion: usage.output_tokens,
        stream: true,
      });
    }
    assert.equal(rows[0]!.request_id, response.headers.get("x-request-id"));
  });
});

Deno.test("models: list and retrieve carry a request id and are not metered", async () => {
  await withClient(async (stack, client) => {
    const { data: list, response } = await client.models.list().withResponse();
    assert.match(response.headers.get("x-request-id")!, REQUEST_ID);
    assert.deepEqual(list.data.map((m) => m.id), [MODEL]);
    const { data: model, response: retrieved } = await client.models.retrieve(MODEL)
      .withResponse();
    assert.equal(model.id, MODEL);
    assert.equal(model.object, "model");
    assert.match(retrieved.headers.get("x-request-id")!, REQUEST_ID);
    await stack.gateway.usage.flush();
    const rows = await stack.database.db.db.selectFrom("usage_events").selectAll().execute();
    assert.equal(rows.length, 0);
  });
});

/** A stack whose model `fake-gpt` is served by a fake OpenAI-compatible upstream. */
async function withUpstream(
  test: (stack: Stack, fake: FakeUpstream, client: OpenAI) => Promise<void>,
) {
  const stack = await startStack();
  const fake = startFakeUpstream();
  try {
    await stack.addModel({
      provider: "fake",
      baseUrl: fake.url,
      apiKey: "sk-up",
      model: "fake-gpt",
      upstreamName: "gpt-upstream",
    });
    const { secret } = await stack.createKey();
    const client = stack.openai(secret);
    await waitFor(async () => (await client.models.list()).data.some((m) => m.id === "fake-gpt"));
    await test(stack, fake, client);
  } finally {
    await fake.close();
    await stack.close();
  }
}

Deno.test("chat: tools, response_format, n, stop, seed, logprobs and parallel_tool_calls reach the upstream unchanged", async () => {
  await withUpstream(async (stack, fake, client) => {
    const toolCall = {
      id: "call_1",
      type: "function",
      function: { name: "get_weather", arguments: '{"city":"Paris"}' },
    };
    fake.reply = (body) => {
      const reply = completion(String(body.model), "", {
        prompt_tokens: 30,
        completion_tokens: 12,
      });
      const choice = {
        ...reply.choices[0]!,
        message: { role: "assistant", content: null, tool_calls: [toolCall] },
        finish_reason: "tool_calls",
        logprobs: { content: [] },
      };
      return Response.json({ ...reply, choices: [choice, { ...choice, index: 1 }] });
    };
    const request = {
      model: "fake-gpt",
      messages: [{ role: "user" as const, content: "Weather in Paris?" }],
      tools: [{
        type: "function" as const,
        function: {
          name: "get_weather",
          description: "The weather in a city",
          parameters: {
            type: "object",
            properties: { city: { type: "string" } },
            required: ["city"],
          },
          strict: true,
        },
      }],
      tool_choice: "auto" as const,
      response_format: {
        type: "json_schema" as const,
        json_schema: { name: "w", schema: { type: "object" } },
      },
      n: 2,
      stop: ["END", "STOP"],
      seed: 42,
      logprobs: true,
      top_logprobs: 2,
      parallel_tool_calls: false,
      temperature: 0.2,
      user: "end-user-7",
    };
    const { data, response } = await client.chat.completions.create(request).withResponse();

    const sent = fake.requests[0]!.body;
    const { model: _model, ...fields } = request;
    for (const [field, value] of Object.entries(fields)) {
      assert.deepEqual(sent[field], value, `${field} reaches the upstream unchanged`);
    }
    assert.equal(sent.model, "gpt-upstream");

    assert.equal(data.choices.length, 2);
    const message = data.choices[0]!.message;
    assert.equal(data.choices[0]!.finish_reason, "tool_calls");
    assert.equal(message.tool_calls!.length, 1);
    const call = message.tool_calls![0]!;
    assert.equal(call.type, "function");
    if (call.type === "function") {
      assert.equal(call.function.name, "get_weather");
      assert.deepEqual(JSON.parse(call.function.arguments), { city: "Paris" });
    }

    const [row] = await usageRows(stack, 1);
    assert.equal(row!.request_id, response.headers.get("x-request-id"));
    assert.equal(row!.endpoint, "/v1/chat/completions");
    assert.equal(row!.prompt_tokens, 30);
    assert.equal(row!.completion_tokens, 12);
    assert.equal(row!.cost, 30n * 100n + 12n * 200n);
  });
});

/** A PNG whose header is sound and whose IDAT inflates to its RGB rows. */
async function assertPng(bytes: Uint8Array) {
  const text = (from: number, to: number) => new TextDecoder().decode(bytes.slice(from, to));
  assert.deepEqual(Array.from(bytes.slice(0, 8)), [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  assert.equal(text(12, 16), "IHDR");
  const view = new DataView(bytes.buffer, bytes.byteOffset);
  const [width, height] = [view.getUint32(16), view.getUint32(20)];
  assert.ok(width > 0 && height > 0);
  assert.deepEqual(Array.from(bytes.slice(24, 26)), [8, 2], "8-bit RGB");
  const idatLength = view.getUint32(33);
  assert.equal(text(37, 41), "IDAT");
  const idat = bytes.slice(41, 41 + idatLength);
  const inflated = await new Response(
    new Blob([idat]).stream().pipeThrough(new DecompressionStream("deflate")),
  ).arrayBuffer();
  assert.equal(inflated.byteLength, height * (1 + width * 3));
  assert.equal(text(bytes.length - 8, bytes.length - 4), "IEND");
}

function decodeBase64(b64: string): Uint8Array {
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}
