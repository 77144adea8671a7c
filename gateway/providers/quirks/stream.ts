/**
 * Re-writes a vendor's chat SSE stream into OpenAI's shape: every event is a
 * `chat.completion.chunk` without usage, then one usage-only chunk with
 * `choices: []`, then `data: [DONE]` — also when the vendor ended without
 * `[DONE]`. Parsed once (eventsource-parser), written with sseData (chat
 * chunks are unnamed `data:` events). Only presets whose quirks need it pay
 * for this; the others pass the upstream bytes through.
 */
import { createParser } from "eventsource-parser";
import { SSE_DONE, sseData } from "../../streaming/sse.ts";
import type { PresetQuirks } from "../presets.ts";
import { fixChunk, type Json, newChunkState, usageChunk } from "./chunk.ts";

export function fixChatStream(
  upstream: ReadableStream<Uint8Array>,
  quirks: PresetQuirks,
): ReadableStream<Uint8Array> {
  const reader = upstream.getReader();
  const decoder = new TextDecoder();
  const state = newChunkState();
  const out: Uint8Array[] = [];
  let finished = false;

  const finish = () => {
    if (finished) return;
    finished = true;
    const usage = usageChunk(state);
    if (usage) out.push(sseData(JSON.stringify(usage)));
    out.push(sseData(SSE_DONE));
  };

  const parser = createParser({
    onEvent(event) {
      if (finished) return; // nothing follows [DONE]
      if (event.data === SSE_DONE) return finish();
      let chunk: Json;
      try {
        chunk = JSON.parse(event.data);
      } catch {
        out.push(sseData(event.data)); // not ours to judge: as it came
        return;
      }
      const fixed = fixChunk(chunk, quirks, state);
      if (fixed) out.push(sseData(JSON.stringify(fixed)));
    },
  });

  return new ReadableStream<Uint8Array>({
    // pull must enqueue or close before it returns; a read may hold only part
    // of an event, so read on until there is something to send.
    async pull(controller) {
      while (out.length === 0) {
        const chunk = await reader.read();
        if (chunk.done) {
          parser.feed(decoder.decode());
          finish();
          break;
        }
        parser.feed(decoder.decode(chunk.value, { stream: true }));
      }
      if (out.length > 0) controller.enqueue(concat(out.splice(0)));
      if (finished) {
        controller.close();
        reader.cancel().catch(() => {}); // whatever follows [DONE] is not read
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
}

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const all = new Uint8Array(parts.reduce((n, part) => n + part.byteLength, 0));
  let at = 0;
  for (const part of parts) {
    all.set(part, at);
    at += part.byteLength;
  }
  return all;
}
