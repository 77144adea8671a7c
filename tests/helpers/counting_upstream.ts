/**
 * A slow fake OpenAI chat upstream on 127.0.0.1 that counts, for crash and
 * outage tests, the requests it received (counted when one arrives, before
 * anything is answered) and the ones it answered in full (counted when the
 * last byte of the answer is handed over, which is before the caller can
 * have read it). A request's `user` field names it in both lists.
 */
export interface CountingUpstream {
  url: string;
  received: string[];
  answered: string[];
  /** Usage each answer reports. */
  readonly usage: { prompt_tokens: number; completion_tokens: number };
  close(): Promise<void>;
}

export interface CountingUpstreamOptions {
  /** Wait before a non-streamed answer, and before each stream chunk. */
  delayMs: number;
  /** Content chunks of a streamed answer. */
  chunks: number;
}

const encoder = new TextEncoder();

export function startCountingUpstream(options: CountingUpstreamOptions): CountingUpstream {
  const usage = { prompt_tokens: 12, completion_tokens: options.chunks };
  const received: string[] = [];
  const answered: string[] = [];
  const pieces = (model: string) => [
    ...Array.from(
      { length: options.chunks },
      (_, i) => chunk(model, [{ delta: { content: `w${i} ` } }]),
    ),
    chunk(model, [], usage),
    "[DONE]",
  ];

  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen: () => {} },
    async (request) => {
      const body = await request.json();
      const name = String(body.user);
      received.push(name);
      const events = body.stream
        ? pieces(body.model).map((data) => `data: ${data}\n\n`)
        : [JSON.stringify(completion(body.model, usage))];
      let next = 0;
      const answer = new ReadableStream<Uint8Array>({
        async pull(controller) {
          await new Promise((resolve) => setTimeout(resolve, options.delayMs));
          controller.enqueue(encoder.encode(events[next++]));
          if (next < events.length) return;
          answered.push(name);
          controller.close();
        },
      });
      return new Response(answer, {
        headers: { "content-type": body.stream ? "text/event-stream" : "application/json" },
      });
    },
  );
  return {
    url: `http://127.0.0.1:${(server.addr as Deno.NetAddr).port}/v1`,
    received,
    answered,
    usage,
    close: () => server.shutdown(),
  };
}

function chunk(model: string, choices: unknown[], usage: unknown = null): string {
  return JSON.stringify({
    id: "chatcmpl-counting",
    object: "chat.completion.chunk",
    created: 1_700_000_000,
    model,
    choices: choices.map((c) => ({ index: 0, finish_reason: null, ...c as object })),
    usage,
  });
}

function completion(model: string, usage: { prompt_tokens: number; completion_tokens: number }) {
  return {
    id: "chatcmpl-counting",
    object: "chat.completion",
    created: 1_700_000_000,
    model,
    choices: [{
      index: 0,
      message: { role: "assistant", content: "counted" },
      finish_reason: "stop",
      logprobs: null,
    }],
    usage: { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens },
  };
}
