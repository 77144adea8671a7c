/**
 * The c=1 streaming probe: sequential streamed requests, timing the response
 * headers, the first SSE event carrying content, and the end of the stream.
 */
export interface TtfbResult {
  n: number;
  ok: number;
  headersP50Ms: number;
  firstP50Ms: number;
  firstP99Ms: number;
  totalP50Ms: number;
}

const FIRST_CONTENT = /"content":"[^"]/;

export async function probeTtfb(
  options: { url: string; key: string; body: string; requests: number; warmup?: number },
): Promise<TtfbResult> {
  const client = Deno.createHttpClient({});
  const headers = { "content-type": "application/json", authorization: `Bearer ${options.key}` };
  const one = async () => {
    const t0 = performance.now();
    const response = await fetch(options.url, {
      method: "POST",
      headers,
      body: options.body,
      client,
    });
    const headersMs = performance.now() - t0;
    const decoder = new TextDecoder();
    let seen = "";
    let firstMs = NaN;
    let tail = "";
    let done = false;
    for await (const chunk of response.body ?? []) {
      const text = decoder.decode(chunk, { stream: true });
      if (Number.isNaN(firstMs)) {
        seen += text;
        if (FIRST_CONTENT.test(seen)) {
          firstMs = performance.now() - t0;
          seen = "";
        }
      }
      // [DONE] may be followed by the gateway's billing comments (about 100 bytes).
      tail = (tail + text).slice(-256);
      done ||= tail.includes("data: [DONE]");
    }
    return {
      ok: response.status === 200 && done && !Number.isNaN(firstMs),
      headersMs,
      firstMs,
      totalMs: performance.now() - t0,
    };
  };
  try {
    for (let i = 0; i < (options.warmup ?? 10); i++) await one();
    const results = [];
    for (let i = 0; i < options.requests; i++) results.push(await one());
    const good = results.filter((r) => r.ok);
    return {
      n: results.length,
      ok: good.length,
      headersP50Ms: percentile(good.map((r) => r.headersMs), 50),
      firstP50Ms: percentile(good.map((r) => r.firstMs), 50),
      firstP99Ms: percentile(good.map((r) => r.firstMs), 99),
      totalP50Ms: percentile(good.map((r) => r.totalMs), 50),
    };
  } finally {
    client.close();
  }
}

function percentile(values: number[], p: number): number {
  const sorted = values.toSorted((a, b) => a - b);
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}
