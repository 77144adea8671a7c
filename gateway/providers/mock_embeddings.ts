/**
 * The mock provider's embeddings: a deterministic unit vector per input,
 * seeded by a hash of its text (token ids are decoded first, so a text and
 * its tokens embed alike). `dimensions` is honoured (default 256), and
 * `encoding_format: "base64"` gives float32 little-endian bytes in base64,
 * as OpenAI sends them. Values are float32 in both formats.
 */
import { countInputTokens, decodeTokens, type TextInput } from "../metering/tokens.ts";
import type { UpstreamCall, UpstreamReply } from "./provider.ts";

export const DEFAULT_DIMENSIONS = 256;
const MAX_DIMENSIONS = 4096;

export function mockEmbeddings(call: UpstreamCall): UpstreamReply {
  const body = call.body;
  const input = (body.input ?? "") as TextInput;
  const dimensions = Math.min(
    typeof body.dimensions === "number" && body.dimensions > 0
      ? Math.floor(body.dimensions)
      : DEFAULT_DIMENSIONS,
    MAX_DIMENSIONS,
  );
  const base64 = body.encoding_format === "base64";
  const data = inputTexts(input).map((text, index) => {
    const vector = embed(text, dimensions);
    return {
      object: "embedding",
      index,
      embedding: base64 ? toBase64(vector) : Array.from(vector),
    };
  });
  const tokens = countInputTokens(input);
  const json = {
    object: "list",
    data,
    model: String(body.model),
    usage: { prompt_tokens: tokens, total_tokens: tokens },
  };
  return { stream: false, text: JSON.stringify(json), json };
}

/** One text per embedding: a string, each string, a token array, or each token array. */
function inputTexts(input: TextInput): string[] {
  if (typeof input === "string") return [input];
  if (input.length > 0 && input.every((entry) => typeof entry === "number")) {
    return [decode(input as number[])];
  }
  return input.map((entry) => typeof entry === "string" ? entry : decode(entry as number[]));
}

function decode(tokens: readonly number[]): string {
  try {
    return decodeTokens(tokens);
  } catch {
    return tokens.join(" "); // ids outside the vocabulary still embed deterministically
  }
}

/** A unit vector of float32 values, from a PRNG seeded with the text's FNV-1a hash. */
export function embed(text: string, dimensions: number): Float32Array {
  let seed = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) {
    seed = Math.imul(seed ^ byte, 0x01000193) >>> 0;
  }
  const random = mulberry32(seed);
  const values = new Float64Array(dimensions);
  let norm = 0;
  for (let i = 0; i < dimensions; i++) {
    values[i] = random() * 2 - 1;
    norm += values[i]! * values[i]!;
  }
  norm = Math.sqrt(norm) || 1;
  return Float32Array.from(values, (value) => value / norm);
}

function mulberry32(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function toBase64(vector: Float32Array): string {
  const bytes = new Uint8Array(vector.length * 4);
  const view = new DataView(bytes.buffer);
  vector.forEach((value, i) => view.setFloat32(i * 4, value, true));
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}
