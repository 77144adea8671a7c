/**
 * A whole stack with priced models on a fake OpenAI-compatible upstream, for
 * money tests: the stack, the fake, the models (provider "fake"), then the
 * test, then everything closed. Also a billed answer's headers.
 */
import { type FakeUpstream, startFakeUpstream } from "./fake_upstream.ts";
import { type Stack, type StackOptions, startStack } from "./stack.ts";

export interface PricedModel {
  model: string;
  /** The upstream's name for it; "fake-1" unless set. */
  upstreamName?: string;
  /** USD per million tokens. */
  inputPrice: string;
  outputPrice: string;
  cachedInputPrice?: string;
}

export async function withPricedUpstream(
  options: {
    stack?: StackOptions;
    models: readonly PricedModel[];
    /** How the fake answers; its default reply unless set. */
    reply?: FakeUpstream["reply"];
  },
  test: (stack: Stack, fake: FakeUpstream) => Promise<void>,
): Promise<void> {
  const stack = await startStack(options.stack);
  const fake = startFakeUpstream();
  if (options.reply) fake.reply = options.reply;
  try {
    for (const model of options.models) {
      await stack.addModel({
        provider: "fake",
        baseUrl: fake.url,
        apiKey: "sk-operator",
        upstreamName: "fake-1",
        ...model,
      });
    }
    await test(stack, fake);
  } finally {
    await fake.close();
    await stack.close();
  }
}

/** What a billed answer's headers say of its billing, and its request id. */
export function billingHeaders(response: Response) {
  return {
    mode: response.headers.get("x-tollgate-mode"),
    cost: response.headers.get("x-tollgate-cost"),
    balance: response.headers.get("x-tollgate-balance"),
    requestId: response.headers.get("x-request-id")!,
  };
}
