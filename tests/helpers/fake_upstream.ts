/**
 * A fake OpenAI-compatible upstream on 127.0.0.1 that records what it was
 * sent. Each test sets how it answers.
 */
export interface FakeUpstream {
  url: string;
  requests: { headers: Headers; body: Record<string, unknown> }[];
  /** Number of requests it answered. */
  readonly served: number;
  reply: (body: Record<string, unknown>, request: Request) => Response | Promise<Response>;
  close(): Promise<void>;
}

export function startFakeUpstream(): FakeUpstream {
  const fake: FakeUpstream = {
    url: "",
    requests: [],
    served: 0,
    reply: (body) => Response.json(completion(String(body.model), "Hello from the fake upstream.")),
    close: () => server.shutdown(),
  };
  let served = 0;
  Object.defineProperty(fake, "served", { get: () => served });
  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen: () => {} },
    async (request) => {
      const body = await request.json();
      fake.requests.push({ headers: request.headers, body });
      served++;
      return fake.reply(body, request);
    },
  );
  fake.url = `http://127.0.0.1:${(server.addr as Deno.NetAddr).port}/v1`;
  return fake;
}

export function completion(
  model: string,
  content: string,
  usage = { prompt_tokens: 11, completion_tokens: 7 },
) {
  return {
    id: "chatcmpl-fake",
    object: "chat.completion",
    created: 1_700_000_000,
    model,
    choices: [{
      index: 0,
      message: { role: "assistant", content },
      finish_reason: "stop",
      logprobs: null,
    }],
    usage: { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens },
  };
}

/** An SSE response from raw event data strings (each becomes one `data:` event). */
export function sseResponse(events: string[], options: { cutAfter?: number } = {}): Response {
  const encoder = new TextEncoder();
  let i = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (options.cutAfter !== undefined && i >= options.cutAfter) {
        controller.error(new Error("connection reset"));
        return;
      }
      const event = events[i++];
      if (event === undefined) return controller.close();
      controller.enqueue(encoder.encode(`data: ${event}\n\n`));
    },
  });
  return new Response(body, { headers: { "content-type": "text/event-stream" } });
}

export function chunk(model: string, delta: Record<string, unknown>, finish: string | null = null) {
  return JSON.stringify({
    id: "chatcmpl-fake",
    object: "chat.completion.chunk",
    created: 1_700_000_000,
    model,
    choices: [{ index: 0, delta, finish_reason: finish }],
    usage: null,
  });
}

export function usageChunk(model: string, prompt: number, completion: number) {
  return JSON.stringify({
    id: "chatcmpl-fake",
    object: "chat.completion.chunk",
    created: 1_700_000_000,
    model,
    choices: [],
    usage: {
      prompt_tokens: prompt,
      completion_tokens: completion,
      total_tokens: prompt + completion,
    },
  });
}
