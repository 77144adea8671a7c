/**
 * The mock provider's Responses API: a response whose one output item is an
 * assistant message, with usage in input_tokens/output_tokens. A stream
 * sends the documented events, each named by an `event:` line and numbered
 * by `sequence_number`: response.created, response.in_progress,
 * response.output_item.added, response.content_part.added,
 * response.output_text.delta (one per token), response.output_text.done,
 * response.content_part.done, response.output_item.done, and
 * response.completed (or response.incomplete when max_output_tokens cut the
 * answer) carrying the usage.
 */
import { countResponsesPromptTokens } from "../metering/tokens.ts";
import { answerFor, answerTo, cutAnswer, eventStream, positiveInt, sseEvent } from "./mock_text.ts";
import type { UpstreamCall, UpstreamReply } from "./provider.ts";

export function mockResponse(call: UpstreamCall): UpstreamReply {
  const body = call.body;
  const instructions = typeof body.instructions === "string" ? body.instructions : null;
  const said = typeof body.input === "string"
    ? answerTo(body.input)
    : answerFor(Array.isArray(body.input) ? body.input : []);
  const answer = cutAnswer(said, positiveInt(body, "max_output_tokens"));
  const inputTokens = countResponsesPromptTokens(body.input, instructions);
  const usage = {
    input_tokens: inputTokens,
    input_tokens_details: { cached_tokens: 0 },
    output_tokens: answer.tokens,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: inputTokens + answer.tokens,
  };
  const hex = crypto.randomUUID().replaceAll("-", "");
  const itemId = `msg_mock${hex}`;
  const part = (text: string) => ({ type: "output_text", text, annotations: [], logprobs: [] });
  const item = (status: string, content: unknown[]) => ({
    id: itemId,
    type: "message",
    status,
    role: "assistant",
    content,
  });
  const base = {
    id: `resp_mock${hex}`,
    object: "response",
    created_at: Math.floor(Date.now() / 1000),
    model: String(body.model),
    instructions,
    max_output_tokens: positiveInt(body, "max_output_tokens"),
    parallel_tool_calls: body.parallel_tool_calls ?? true,
    previous_response_id: body.previous_response_id ?? null,
    reasoning: { effort: null, summary: null },
    store: body.store ?? true,
    temperature: body.temperature ?? 1,
    text: body.text ?? { format: { type: "text" } },
    tool_choice: body.tool_choice ?? "auto",
    tools: body.tools ?? [],
    top_p: body.top_p ?? 1,
    truncation: body.truncation ?? "disabled",
    user: body.user ?? null,
    metadata: body.metadata ?? {},
    error: null,
  };
  const status = answer.cut ? "incomplete" : "completed";
  const final = {
    ...base,
    status,
    incomplete_details: answer.cut ? { reason: "max_output_tokens" } : null,
    output: [item("completed", [part(answer.text)])],
    usage,
  };

  if (!call.stream) return { stream: false, text: JSON.stringify(final), json: final };

  const pending = {
    ...base,
    status: "in_progress",
    incomplete_details: null,
    output: [],
    usage: null,
  };
  const where = { item_id: itemId, output_index: 0, content_index: 0 };
  const events: [string, Record<string, unknown>][] = [
    ["response.created", { response: pending }],
    ["response.in_progress", { response: pending }],
    ["response.output_item.added", { output_index: 0, item: item("in_progress", []) }],
    ["response.content_part.added", { ...where, part: part("") }],
    ...answer.pieces.map((delta): [string, Record<string, unknown>] => [
      "response.output_text.delta",
      { ...where, delta, logprobs: [] },
    ]),
    ["response.output_text.done", { ...where, text: answer.text, logprobs: [] }],
    ["response.content_part.done", { ...where, part: part(answer.text) }],
    ["response.output_item.done", { output_index: 0, item: final.output[0] }],
    [`response.${status}`, { response: final }],
  ];
  return {
    stream: true,
    body: eventStream(
      events.map(([type, data], sequence_number) =>
        sseEvent(type, { type, sequence_number, ...data })
      ),
      call.signal,
    ),
  };
}
