import assert from "node:assert/strict";
import OpenAI from "openai";
import { parseAgentIdentity } from "../../gateway/agents/identity.ts";
import { GatewayError } from "../../gateway/errors.ts";
import { startStack } from "../helpers/stack.ts";

Deno.test("X-Agent-Identity parses name, purpose and owner", () => {
  const cases: [string, ReturnType<typeof parseAgentIdentity>][] = [
    ["name=triage-bot", { name: "triage-bot", purpose: null, owner: null }],
    ["name=triage-bot;purpose=support;owner=ana@acme.test", {
      name: "triage-bot",
      purpose: "support",
      owner: "ana@acme.test",
    }],
    [" Owner = ops ; NAME = a b ; ", { name: "a b", purpose: null, owner: "ops" }],
    ["name=x;purpose=a%3Bb%3Dc", { name: "x", purpose: "a;b=c", owner: null }],
  ];
  for (const [header, expected] of cases) {
    assert.deepEqual(parseAgentIdentity(header), expected, header);
  }
  assert.equal(parseAgentIdentity(null), null);
});

Deno.test("a malformed X-Agent-Identity is refused with a message that says what is wrong", () => {
  const cases: [string, RegExp][] = [
    ["purpose=support", /name is required/],
    ["name=", /name is required/],
    ["name=a;name=b", /name is given twice/],
    ["name=a;role=x", /unknown field "role"/],
    ["triage-bot", /"triage-bot" is not key=value/],
    ["name=a%ZZ", /malformed percent-encoding/],
    [`name=${"x".repeat(201)}`, /longer than 200/],
  ];
  for (const [header, message] of cases) {
    assert.throws(() => parseAgentIdentity(header), (error: unknown) => {
      assert.ok(error instanceof GatewayError);
      assert.equal(error.status, 400);
      assert.equal(error.code, "invalid_agent_identity");
      assert.match(error.message, /^Cannot parse X-Agent-Identity/);
      assert.match(error.message, message);
      return true;
    }, header);
  }
});

Deno.test("requests are attributed to their agent, and agents are recorded per account when first seen", async () => {
  const stack = await startStack();
  try {
    const { secret, accountId } = await stack.createKey();
    const client = stack.openai(secret);
    const ask = (agent?: string) =>
      client.chat.completions.create(
        { model: "tollgate-mock", messages: [{ role: "user", content: "hi" }] },
        agent ? { headers: { "X-Agent-Identity": agent } } : {},
      );
    await ask("name=triage-bot;purpose=support;owner=ana");
    await ask("name=triage-bot");
    await ask("name=billing-bot;owner=ops");
    await ask();

    const error = await ask("purpose=no-name").then(() => null, (e) => e);
    assert.ok(error instanceof OpenAI.APIError);
    assert.equal(error.status, 400);
    assert.equal(error.code, "invalid_agent_identity");
    assert.equal(error.param, "X-Agent-Identity");

    await stack.gateway.usage.flush();
    const db = stack.database.db.db;
    const rows = await db.selectFrom("usage_events").select([
      "agent_name",
      "agent_purpose",
      "agent_owner",
    ])
      .orderBy("created_at").execute();
    assert.deepEqual(rows, [
      { agent_name: "triage-bot", agent_purpose: "support", agent_owner: "ana" },
      { agent_name: "triage-bot", agent_purpose: null, agent_owner: null },
      { agent_name: "billing-bot", agent_purpose: null, agent_owner: "ops" },
      { agent_name: null, agent_purpose: null, agent_owner: null },
    ], "the refused request left no usage row");
    const agents = await db.selectFrom("agents").select(["account_id", "name", "purpose", "owner"])
      .orderBy("name").execute();
    assert.deepEqual(agents, [
      { account_id: accountId, name: "billing-bot", purpose: null, owner: "ops" },
      { account_id: accountId, name: "triage-bot", purpose: "support", owner: "ana" },
    ]);
  } finally {
    await stack.close();
  }
});
