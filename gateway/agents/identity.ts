/**
 * The X-Agent-Identity header: `name=…;purpose=…;owner=…`, name required.
 * Values may be percent-encoded to carry `;` or `=`. Anything else is
 * refused with a 400 that says what is wrong, so a typo never silently
 * attributes spend to nobody.
 */
import { GatewayError } from "../errors.ts";

export const AGENT_HEADER = "x-agent-identity";

export interface AgentIdentity {
  name: string;
  purpose: string | null;
  owner: string | null;
}

const FIELDS = new Set(["name", "purpose", "owner"]);
const MAX_VALUE = 200;
// deno-lint-ignore no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

/** The agent named by the request, or null when the header is absent. */
export function parseAgentIdentity(header: string | null): AgentIdentity | null {
  if (header === null) return null;
  const fields: Record<string, string> = {};
  for (const part of header.split(";")) {
    if (part.trim() === "") continue;
    const at = part.indexOf("=");
    if (at < 0) fail(header, `"${part.trim()}" is not key=value`);
    const key = part.slice(0, at).trim().toLowerCase();
    if (!FIELDS.has(key)) fail(header, `unknown field "${key}" (expected name, purpose, owner)`);
    if (key in fields) fail(header, `${key} is given twice`);
    fields[key] = decodeValue(header, key, part.slice(at + 1).trim());
  }
  if (!fields.name) fail(header, "name is required");
  return { name: fields.name, purpose: fields.purpose || null, owner: fields.owner || null };
}

function decodeValue(header: string, key: string, raw: string): string {
  let value = raw;
  if (raw.includes("%")) {
    try {
      value = decodeURIComponent(raw);
    } catch {
      fail(header, `${key} has a malformed percent-encoding`);
    }
  }
  if (value.length > MAX_VALUE) fail(header, `${key} is longer than ${MAX_VALUE} characters`);
  if (CONTROL.test(value)) fail(header, `${key} contains control characters`);
  return value;
}

function fail(header: string, problem: string): never {
  const shown = header.length > 80 ? `${header.slice(0, 80)}…` : header;
  throw new GatewayError(
    "invalid_agent_identity",
    400,
    `Cannot parse X-Agent-Identity "${shown}": ${problem}`,
    { param: "X-Agent-Identity", retryable: false },
  );
}
