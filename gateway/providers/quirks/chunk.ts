/**
 * Rewrites one parsed chat chunk of a vendor into
 * OpenAI's shape, one quirk per function. Usage is taken off every chunk and
 * kept in the state: the stream writer sends it once, in a usage-only chunk
 * just before `[DONE]`, as OpenAI does.
 */
import { parseUsage } from "../../metering/usage.ts";
import type { PresetQuirks } from "../presets.ts";

export type Json = Record<string, unknown>;

export interface ChunkState {
  /** The last complete usage seen (vendors that send running totals end with the total). */
  usage: Json | null;
  /** id, created and model of the last chunk, for the usage-only chunk. */
  last: { id?: unknown; created?: unknown; model?: unknown };
  /** Choice indexes that streamed content or tool calls as deltas. */
  streamed: Set<number>;
  sawToolCall: boolean;
  /** Index of the tool call that index-less deltas continue, and its id. */
  toolIndex: number;
  toolId: string | null;
}

export function newChunkState(): ChunkState {
  return {
    usage: null,
    last: {},
    streamed: new Set(),
    sawToolCall: false,
    toolIndex: -1,
    toolId: null,
  };
}

/** The chunk to send, rewritten in place, or null when nothing is left of it (usage only). */
export function fixChunk(chunk: Json, quirks: PresetQuirks, state: ChunkState): Json | null {
  if (!Array.isArray(chunk.choices)) return chunk; // an error event or unknown: as it is
  state.last = { id: chunk.id, created: chunk.created, model: chunk.model };
  const choices = chunk.choices.filter(isObject);
  takeUsage(chunk, state);
  for (const choice of choices) {
    if (quirks.usageInChoice) takeChoiceUsage(choice, state);
    if (quirks.chunkObject) messageToDelta(choice, state);
    if (quirks.emptyStrings) dropEmptyStrings(choice);
    if (quirks.toolCallIndex) indexToolCalls(choice, state);
    noteStreamed(choice, state);
    if (quirks.toolCallsFinishReason) toolCallsFinish(choice, state);
  }
  if (quirks.chunkObject) chunk.object = "chat.completion.chunk";
  return choices.length === 0 ? null : chunk;
}

/** The usage-only chunk OpenAI sends before `[DONE]`, or null when no usage came. */
export function usageChunk(state: ChunkState): Json | null {
  if (!state.usage) return null;
  return { ...state.last, object: "chat.completion.chunk", choices: [], usage: state.usage };
}

/** usage at the top level (placeholders without token counts are dropped). */
function takeUsage(chunk: Json, state: ChunkState): void {
  if (!("usage" in chunk)) return;
  if (parseUsage(chunk.usage)) state.usage = chunk.usage as Json;
  delete chunk.usage;
}

/** usageInChoice: Kimi streams the usage in the final choice. */
function takeChoiceUsage(choice: Json, state: ChunkState): void {
  if (!("usage" in choice)) return;
  if (parseUsage(choice.usage)) state.usage = choice.usage as Json;
  delete choice.usage;
}

/**
 * chunkObject: a last frame shaped as a chat.completion (`message`, not
 * `delta`) repeats what was streamed; keep its finish_reason, and its message
 * only when nothing was streamed for that choice.
 */
function messageToDelta(choice: Json, state: ChunkState): void {
  if (!isObject(choice.message) || "delta" in choice) return;
  const message = choice.message;
  delete choice.message;
  if (state.streamed.has(Number(choice.index ?? 0))) {
    choice.delta = {};
    return;
  }
  const delta: Json = { ...message };
  if (Array.isArray(message.tool_calls)) {
    delta.tool_calls = message.tool_calls.map((call, index) =>
      isObject(call) ? { index, ...call } : call
    );
  }
  choice.delta = delta;
}

/** emptyStrings: `finish_reason: ""` means null, `role: ""` means absent. */
function dropEmptyStrings(choice: Json): void {
  if (choice.finish_reason === "") choice.finish_reason = null;
  if (isObject(choice.delta) && choice.delta.role === "") delete choice.delta.role;
}

/**
 * toolCallIndex: a delta with a new id starts the next tool call; one without
 * an id continues the current one.
 */
function indexToolCalls(choice: Json, state: ChunkState): void {
  const calls = isObject(choice.delta) ? choice.delta.tool_calls : undefined;
  if (!Array.isArray(calls)) return;
  for (const call of calls) {
    if (!isObject(call) || typeof call.index === "number") continue;
    const id = typeof call.id === "string" && call.id !== "" ? call.id : null;
    if (state.toolIndex < 0 || (id !== null && id !== state.toolId)) state.toolIndex++;
    if (id !== null) state.toolId = id;
    call.index = state.toolIndex;
  }
}

function noteStreamed(choice: Json, state: ChunkState): void {
  const delta = choice.delta;
  if (!isObject(delta)) return;
  const hasTools = Array.isArray(delta.tool_calls) && delta.tool_calls.length > 0;
  if (hasTools) state.sawToolCall = true;
  if (hasTools || (typeof delta.content === "string" && delta.content !== "")) {
    state.streamed.add(Number(choice.index ?? 0));
  }
}

/** toolCallsFinishReason: a turn that called tools finishes with "tool_calls". */
function toolCallsFinish(choice: Json, state: ChunkState): void {
  if (state.sawToolCall && choice.finish_reason === "stop") choice.finish_reason = "tool_calls";
}

export function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
