/**
 * The mock provider's image generation: a small valid PNG made in code (a
 * 16×16 gradient whose colour comes from the prompt), as `b64_json` or, for
 * `response_format: "url"`, a data: URL. Usage is in gpt-image-1's shape
 * (input_tokens, output_tokens), with the output tokens OpenAI bills for a
 * low-quality square image; a stream sends `image_generation.completed`
 * events (after `partial_images` partial ones) carrying that usage.
 */
import { countTokens } from "../metering/tokens.ts";
import { eventStream, sseEvent } from "./mock_text.ts";
import type { UpstreamCall, UpstreamReply } from "./provider.ts";
import { concatBytes } from "../streaming/bytes.ts";

const SIDE = 16;
/** gpt-image-1's output tokens for a low-quality 1024×1024 image. */
export const IMAGE_OUTPUT_TOKENS = 272;
const MAX_IMAGES = 10;
const MAX_PARTIAL_IMAGES = 3;

export async function mockImages(call: UpstreamCall): Promise<UpstreamReply> {
  const body = call.body;
  const prompt = typeof body.prompt === "string" ? body.prompt : "";
  const n = Math.min(positive(body.n) ?? 1, MAX_IMAGES);
  const images: string[] = [];
  for (let i = 0; i < n; i++) images.push(base64(await png(`${i}:${prompt}`)));
  const inputTokens = countTokens(prompt);
  const usage = {
    input_tokens: inputTokens,
    input_tokens_details: { text_tokens: inputTokens, image_tokens: 0 },
    output_tokens: IMAGE_OUTPUT_TOKENS * n,
    total_tokens: inputTokens + IMAGE_OUTPUT_TOKENS * n,
  };
  const created = Math.floor(Date.now() / 1000);
  const shape = {
    background: "opaque",
    output_format: "png",
    quality: "low",
    size: typeof body.size === "string" ? body.size : "1024x1024",
  };

  if (!call.stream) {
    const url = body.response_format === "url";
    const json = {
      created,
      data: images.map((b64) => url ? { url: `data:image/png;base64,${b64}` } : { b64_json: b64 }),
      ...shape,
      usage,
    };
    return { stream: false, text: JSON.stringify(json), json };
  }

  const events: Uint8Array[] = [];
  const partials = Math.min(positive(body.partial_images) ?? 0, MAX_PARTIAL_IMAGES);
  for (const b64 of images) {
    for (let i = 0; i < partials; i++) {
      const type = "image_generation.partial_image";
      events.push(
        sseEvent(type, {
          type,
          b64_json: b64,
          created_at: created,
          ...shape,
          partial_image_index: i,
        }),
      );
    }
    const type = "image_generation.completed";
    // Each completed event reports the whole request's usage; the last one counts.
    events.push(sseEvent(type, { type, b64_json: b64, created_at: created, ...shape, usage }));
  }
  return { stream: true, body: eventStream(events, call.signal) };
}

function positive(value: unknown): number | null {
  return typeof value === "number" && Number.isInteger(value) && value > 0 ? value : null;
}

/** A SIDE×SIDE 8-bit RGB PNG: signature, IHDR, one zlib IDAT, IEND. */
export async function png(seedText: string): Promise<Uint8Array> {
  let hash = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(seedText)) {
    hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  }
  const [r, g, b] = [hash & 0xff, (hash >>> 8) & 0xff, (hash >>> 16) & 0xff];
  const rows = new Uint8Array(SIDE * (1 + SIDE * 3));
  for (let y = 0; y < SIDE; y++) {
    const row = y * (1 + SIDE * 3); // each row starts with filter type 0 (none)
    for (let x = 0; x < SIDE; x++) {
      const shade = ((x + y) * 255) / (2 * (SIDE - 1));
      rows.set([(r + shade) & 0xff, (g + shade / 2) & 0xff, b], row + 1 + x * 3);
    }
  }
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, SIDE);
  view.setUint32(4, SIDE);
  header.set([8, 2, 0, 0, 0], 8); // bit depth 8, colour type RGB, deflate, no filter, no interlace
  const idat = await deflate(rows);
  return concatBytes([
    new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", header),
    chunk("IDAT", idat),
    chunk("IEND", new Uint8Array()),
  ]);
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const typed = concatBytes([new TextEncoder().encode(type), data]);
  const out = new Uint8Array(4 + typed.length + 4);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  out.set(typed, 4);
  view.setUint32(4 + typed.length, crc32(typed));
  return out;
}

/** zlib-wrapped deflate, as PNG's IDAT wants (CompressionStream "deflate" is zlib). */
async function deflate(data: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([data as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new CompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

let crcTable: Uint32Array | undefined;

function crc32(data: Uint8Array): number {
  crcTable ??= Uint32Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  let crc = 0xffffffff;
  for (const byte of data) crc = crcTable[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

function base64(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}
