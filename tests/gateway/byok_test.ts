/**
 * BYOK end to end: the customer's own provider key (inline as provider_key,
 * or registered for the account) replaces the operator's credential
 * upstream; no provider cost is charged; the month's first free requests
 * carry no fee and later ones the routing fee, through the ledger, even for
 * an account with nothing on its balance.
 */
import assert from "node:assert/strict";
import { type Kysely, sql } from "kysely";
import OpenAI from "openai";
import { createApp } from "../../gateway/app.ts";
import { createAllowanceStore } from "../../gateway/billing/allowance_store.ts";
import { createAllowances } from "../../gateway/billing/allowances.ts";
import { byokMonth, createByokFreeStore } from "../../gateway/billing/byok_free_store.ts";
import { type GatewayServer, startGateway } from "../../gateway/server.ts";
import { writeUsageEvents } from "../../gateway/metering/usage_batch.ts";
import type { Database, NewUsageEvent } from "../../schema/database.ts";
import { deriveServerKeys } from "../../schema/secrets.ts";
import { freshDatabase } from "../helpers/database.ts";
import { startFakeAnthropic } from "../helpers/fake_anthropic.ts";
import {
  chunk,
  completion,
  sseResponse,
  startFakeUpstream,
  usageChunk,
} from "../helpers/fake_upstream.ts";
import { ANTHROPIC_SDKS, type Stack, startStack, TEST_SECRET, waitFor } from "../helpers/stack.ts";

const MODEL = "byok-model";
const OPERATOR_KEY = "sk-operator-secret";
const CUSTOMER_KEY = "sk-customer-0123456789";
/** Free BYOK requests per account and month in these tests. */
const FREE = 3;
/** Output at 1 USD per million tokens (100 microcents a token), input free. */
const COMPLETION_TOKENS = 1_000;
/** What a request would cost at Standard prices: 1,000 tokens x 100 microcents. */
const WOULD_BE_COST = 100_000n;
/** The routing fee past the free requests: 5% of it. */
const ROUTING_FEE = 5_000n;

interface Setup {
  stack: Stack;
  gateway: GatewayServer;
  fake: ReturnType<typeof startFakeUpstream>;
  close(): Promise<void>;
}

/** A stack, a priced model on a fake upstream, and a gateway whose free tier is FREE requests. */
async function setup(): Promise<Setup> {
  const stack = await startStack();
  const fake = startFakeUpstream();
  fake.reply = (body) =>
    Response.json(
      completion(String(body.model), "ok", {
        prompt_tokens: 5,
        completion_tokens: COMPLETION_TOKENS,
      }),
    );
  await stack.addModel({
    provider: "fake",
    baseUrl: fake.url,
    apiKey: OPERATOR_KEY,
    model: MODEL,
    upstreamName: "fake-1",
    inputPrice: "0",
    outputPrice: "1",
  });
  const gateway = await startByokGateway(stack);
  return {
    stack,
    gateway,
    fake,
    async close() {
      await gateway.shutdown();
      await fake.close();
      await stack.close();
    },
  };
}

function startByokGateway(stack: Stack): Promise<GatewayServer> {
  return startGateway({
    db: stack.database.db,
    keys: deriveServerKeys(TEST_SECRET),
    log: () => {},
    config: {
      port: 0,
      hostname: "127.0.0.1",
      maxBodyBytes: 1024 * 1024,
      upstreamTimeoutMs: 30_000,
      streamTimeoutMs: 120_000,
      backoff: { baseMs: 5, maxMs: 20, maxRetryAfterMs: 2_000 },
      policyResyncMs: 60_000,
      usageFlushMs: 20,
      usageBatchSize: 100,
      billing: { standardFeeBps: 550, byokFeeBps: 500, byokFreeRequests: FREE },
    },
  });
}

/** An account and key (credited `balance` USD) that this test's gateway knows. */
async function customer(s: Setup, balance = "10") {
  const created = await s.stack.createKey({ balance });
  await waitFor(async () => {
    const r = await fetch(`${s.gateway.url}/v1/models`, {
      headers: { authorization: `Bearer ${created.secret}` },
    });
    await r.body?.cancel();
    return r.status === 200;
  });
  return created;
}

function ask(
  url: string,
  secret: string,
  extra: Record<string, unknown> = {},
): Promise<Response> {
  return fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
    body: JSON.stringify({
      model: MODEL,
      max_tokens: COMPLETION_TOKENS,
      messages: [{ role: "user", content: "hi" }],
      ...extra,
    }),
  });
}

/** The requests' ledger transactions (null: not charged), and the entries of those transactions. */
async function ledgerOf(db: Kysely<Database>, requestIds: string[]) {
  const rows = await db.selectFrom("usage_events").select(["request_id", "ledger_transaction_id"])
    .where("request_id", "in", requestIds).execute();
  const txOf = new Map(rows.map((r) => [r.request_id, r.ledger_transaction_id]));
  const txs = [...new Set(rows.flatMap((r) => r.ledger_transaction_id ?? []))];
  const entries = txs.length === 0 ? [] : await db.selectFrom("ledger_entries")
    .select(["transaction_id", "book", "kind", "amount"]).where("transaction_id", "in", txs)
    .orderBy("id").execute();
  return { transactions: requestIds.map((id) => txOf.get(id) ?? null), entries };
}

async function monthly(db: Kysely<Database>, accountId: string) {
  const { rows } = await sql<
    { month: string; requests: string; free: string; reserved: string }
  >`
    select to_char(month, 'YYYY-MM-DD') as month, requests::text, free_requests::text as free,
      reserved::text
    from byok_monthly_usage where account_id = ${accountId} order by month
  `.execute(db);
  return rows.map((r) => ({
    month: r.month,
    requests: Number(r.requests),
    free: Number(r.free),
    reserved: Number(r.reserved),
  }));
}

async function balanceOf(db: Kysely<Database>, accountId: string): Promise<bigint> {
  const { rows } = await sql<{ balance: string }>`
    select balance::text from accounts where id = ${accountId}
  `.execute(db);
  return BigInt(rows[0]!.balance);
}

Deno.test("an inline provider_key is the upstream's credential, never the operator's, and leaves the body", async () => {
  const s = await setup();
  try {
    const { secret } = await customer(s);
    const client = new OpenAI({ apiKey: secret, baseURL: `${s.gateway.url}/v1`, maxRetries: 0 });
    const params = {
      model: MODEL,
      max_tokens: COMPLETION_TOKENS,
      messages: [{ role: "user" as const, content: "hi" }],
      provider_key: CUSTOMER_KEY,
    };
    const { data, response } = await client.chat.completions.create(params).withResponse();
    assert.equal(data.choices[0]!.message.content, "ok");
    assert.equal(s.fake.requests.length, 1);
    const sent = s.fake.requests[0]!;
    assert.equal(sent.headers.get("authorization"), `Bearer ${CUSTOMER_KEY}`);
    assert.ok(!("provider_key" in sent.body), "provider_key was forwarded upstream");
    const everything = JSON.stringify([...sent.headers]) + JSON.stringify(sent.body);
    assert.ok(!everything.includes(OPERATOR_KEY), "the operator's key went upstream");
    assert.equal(response.headers.get("x-tollgate-mode"), "byok");
    assert.equal(response.headers.get("x-tollgate-cost"), "0.000000");
    assert.equal(response.headers.get("x-tollgate-balance"), null, "BYOK has no balance header");

    await s.gateway.usage.flush();
    const [row] = await s.stack.database.db.db.selectFrom("usage_events").selectAll().execute();
    assert.equal(row!.billing_mode, "byok");
    assert.equal(row!.fee, 0n);
    // The would-be provider cost is recorded, not charged.
    assert.equal(row!.cost, WOULD_BE_COST);
    assert.ok(
      !JSON.stringify(row, (_, v) => typeof v === "bigint" ? String(v) : v).includes(
        CUSTOMER_KEY,
      ),
    );
  } finally {
    await s.close();
  }
});

Deno.test("the Anthropic dialect takes provider_key too: it goes upstream as x-api-key, not in the body", async () => {
  const s = await setup();
  const anthropic = startFakeAnthropic();
  try {
    await s.stack.addModel({
      provider: "claude",
      kind: "anthropic",
      baseUrl: anthropic.url,
      apiKey: OPERATOR_KEY,
      model: "claude-byok",
      upstreamName: "claude-sonnet-4-5",
    });
    const { secret } = await customer(s);
    await waitFor(async () => {
      const r = await fetch(`${s.gateway.url}/v1/models/claude-byok`, {
        headers: { authorization: `Bearer ${secret}` },
      });
      await r.body?.cancel();
      return r.status === 200;
    });
    const client = new ANTHROPIC_SDKS[0]({ apiKey: secret, baseURL: s.gateway.url, maxRetries: 0 });
    const params = {
      model: "claude-byok",
      max_tokens: 100,
      messages: [{ role: "user" as const, content: "hi" }],
      provider_key: "sk-ant-customer-key",
    };
    const { response } = await client.messages.create(params).withResponse();
    assert.equal(response.headers.get("x-tollgate-mode"), "byok");
    const sent = anthropic.requests[0]!;
    assert.equal(sent.headers.get("x-api-key"), "sk-ant-customer-key");
    assert.ok(!sent.text.includes("provider_key"), "provider_key was forwarded upstream");
    assert.ok(!sent.text.includes(OPERATOR_KEY));
  } finally {
    await anthropic.close();
    await s.close();
  }
});

Deno.test("a key the account registered replaces the operator's credential until it is deleted", async () => {
  const s = await setup();
  try {
    const { secret, accountId } = await customer(s);
    const db = s.stack.database.db.db;
    const provider = await db.selectFrom("providers").select("id").where("name", "=", "fake")
      .executeTakeFirstOrThrow();
    const set = await s.stack.graphql<{ setProviderKey: { id: string } }>(
      `mutation ($input: SetProviderKeyInput!) {
        setProviderKey(input: $input) { ... on ProviderKey { id } }
      }`,
      { input: { accountId, providerId: provider.id, apiKey: "sk-registered-0123456789" } },
    );
    const keyId = set.data!.setProviderKey.id;
    // The gateway hears of it by NOTIFY, and opens it on first use.
    await waitFor(() => s.gateway.policy.customerKeys?.(accountId)?.size === 1);

    const registered = await ask(s.gateway.url, secret);
    assert.equal(registered.status, 200, await registered.clone().text());
    await registered.body?.cancel();
    assert.equal(registered.headers.get("x-tollgate-mode"), "byok");
    assert.equal(
      s.fake.requests.at(-1)!.headers.get("authorization"),
      "Bearer sk-registered-0123456789",
    );

    // An inline key wins over the registered one.
    const inline = await ask(s.gateway.url, secret, { provider_key: CUSTOMER_KEY });
    await inline.body?.cancel();
    assert.equal(s.fake.requests.at(-1)!.headers.get("authorization"), `Bearer ${CUSTOMER_KEY}`);

    await s.stack.graphql(
      `mutation ($id: ID!) { deleteProviderKey(input: { id: $id }) { __typename } }`,
      { id: keyId },
    );
    await waitFor(() => s.gateway.policy.customerKeys?.(accountId) === undefined);
    const standard = await ask(s.gateway.url, secret);
    await standard.body?.cancel();
    assert.equal(standard.headers.get("x-tollgate-mode"), "standard");
    assert.equal(s.fake.requests.at(-1)!.headers.get("authorization"), `Bearer ${OPERATOR_KEY}`);

    await s.gateway.usage.flush();
    const modes = (await db.selectFrom("usage_events").select("billing_mode")
      .orderBy("created_at").execute()).map((r) => r.billing_mode);
    assert.deepEqual(modes, ["byok", "byok", "standard"]);
  } finally {
    await s.close();
  }
});

Deno.test("a registered key the gateway cannot decrypt is refused, never served on the operator's credential", async () => {
  const s = await setup();
  try {
    const { secret, accountId } = await customer(s);
    const db = s.stack.database.db.db;
    const provider = await db.selectFrom("providers").select("id").where("name", "=", "fake")
      .executeTakeFirstOrThrow();
    // Sealed under a key-encryption key this gateway does not have.
    await db.insertInto("customer_provider_keys").values({
      account_id: accountId,
      provider_id: provider.id,
      ciphertext: "v1.gone.AAAA.AAAA.AAAA",
      kek_id: "gone",
      last4: "abcd",
    }).execute();
    await waitFor(() => s.gateway.policy.customerKeys?.(accountId)?.size === 1);
    const response = await ask(s.gateway.url, secret);
    assert.equal(response.status, 503);
    assert.equal(response.headers.get("x-should-retry"), "false");
    const body = await response.json();
    assert.equal(body.error.code, "provider_key_unavailable");
    assert.match(body.error.message, /cannot be decrypted/);
    assert.equal(s.fake.served, 0);
  } finally {
    await s.close();
  }
});

Deno.test("the month's first requests are free, later ones pay the routing fee through the ledger, and no provider cost is charged", async () => {
  const s = await setup();
  try {
    const { secret, accountId } = await customer(s, "1");
    const db = s.stack.database.db.db;
    const before = await balanceOf(db, accountId);
    const costs: (string | null)[] = [];
    const ids: string[] = [];
    for (let i = 0; i < FREE + 2; i++) {
      const response = await ask(s.gateway.url, secret, { provider_key: CUSTOMER_KEY });
      assert.equal(response.status, 200, await response.clone().text());
      await response.body?.cancel();
      assert.equal(response.headers.get("x-tollgate-mode"), "byok");
      assert.equal(response.headers.get("x-tollgate-balance"), null);
      costs.push(response.headers.get("x-tollgate-cost"));
      ids.push(response.headers.get("x-request-id")!);
    }
    assert.deepEqual(costs, ["0.000000", "0.000000", "0.000000", "0.000050", "0.000050"]);
    await s.gateway.usage.flush();

    const fees = (await db.selectFrom("usage_events").select(["request_id", "fee", "billing_mode"])
      .execute()).sort((a, b) => ids.indexOf(a.request_id) - ids.indexOf(b.request_id));
    assert.deepEqual(fees.map((r) => [r.billing_mode, r.fee]), [
      ["byok", 0n],
      ["byok", 0n],
      ["byok", 0n],
      ["byok", ROUTING_FEE],
      ["byok", ROUTING_FEE],
    ]);
    // Only the fee moves: the customer pays it to revenue; provider costs see nothing.
    const { transactions, entries } = await ledgerOf(db, ids);
    assert.deepEqual(transactions.map((tx) => tx !== null), [false, false, false, true, true]);
    assert.deepEqual([...new Set(entries.map((e) => `${e.book} ${e.kind}`))].sort(), [
      `customer:${accountId} byok_fee`,
      "system:revenue byok_fee",
    ]);
    const sum = (book: string) =>
      entries.filter((e) => e.book === book).reduce((total, e) => total + e.amount, 0n);
    assert.equal(sum(`customer:${accountId}`), -2n * ROUTING_FEE);
    assert.equal(sum("system:revenue"), 2n * ROUTING_FEE);
    assert.equal(await balanceOf(db, accountId), before - 2n * ROUTING_FEE);

    await s.gateway.pools.free.allowances.tick(); // gives back the idle free-request lease
    const month = new Date().toISOString().slice(0, 7);
    assert.deepEqual(await monthly(db, accountId), [
      { month: `${month}-01`, requests: FREE + 2, free: FREE, reserved: 0 },
    ]);
  } finally {
    await s.close();
  }
});

Deno.test("an account with nothing on its balance makes its free BYOK requests, then gets a 402 for the fee", async () => {
  const s = await setup();
  try {
    const { secret } = await customer(s, "0");
    const standard = await ask(s.gateway.url, secret);
    assert.equal(standard.status, 402, "a Standard request went through on a zero balance");
    await standard.body?.cancel();
    for (let i = 0; i < FREE; i++) {
      const response = await ask(s.gateway.url, secret, { provider_key: CUSTOMER_KEY });
      assert.equal(response.status, 200, await response.clone().text());
      await response.body?.cancel();
    }
    const refused = await ask(s.gateway.url, secret, { provider_key: CUSTOMER_KEY });
    assert.equal(refused.status, 402);
    assert.equal(refused.headers.get("x-should-retry"), "false");
    const body = await refused.json();
    assert.equal(body.error.code, "insufficient_quota");
    assert.match(body.error.message, /free BYOK requests for the month are used/);
    assert.match(body.error.message, /routing fee \(up to 0\.01 USD\)/);
    assert.equal(s.fake.served, FREE);
  } finally {
    await s.close();
  }
});

Deno.test("a stream carries its mode in its headers, and its cost last, as SSE comments", async () => {
  const s = await setup();
  try {
    s.fake.reply = (body) =>
      sseResponse([
        chunk(String(body.model), { role: "assistant", content: "ok" }),
        chunk(String(body.model), {}, "stop"),
        usageChunk(String(body.model), 5, COMPLETION_TOKENS),
        "[DONE]",
      ]);
    const { secret } = await customer(s);
    const response = await ask(s.gateway.url, secret, { provider_key: CUSTOMER_KEY, stream: true });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("x-tollgate-mode"), "byok");
    assert.equal(response.headers.get("x-tollgate-cost"), null);
    assert.equal(response.headers.get("x-tollgate-balance"), null);
    // A free BYOK request: no cost, and no balance (BYOK has none to show).
    const text = await response.text();
    assert.ok(
      text.endsWith("data: [DONE]\n\n: x-tollgate-mode: byok\n: x-tollgate-cost: 0.000000\n\n"),
      text,
    );
    assert.equal(s.fake.requests[0]!.headers.get("authorization"), `Bearer ${CUSTOMER_KEY}`);
    await waitFor(async () => {
      await s.gateway.usage.flush();
      const rows = await s.stack.database.db.db.selectFrom("usage_events").selectAll().execute();
      return rows.length === 1 && rows[0]!.billing_mode === "byok" &&
        rows[0]!.completion_tokens === COMPLETION_TOKENS;
    });
  } finally {
    await s.close();
  }
});

Deno.test("a provider_key that cannot be a key is a 400 naming the param, in either dialect", async () => {
  const s = await setup();
  try {
    const { secret } = await customer(s);
    for (const bad of ["", "   ", 42, null, "has a space", "x".repeat(4097), ["sk"]]) {
      const response = await ask(s.gateway.url, secret, { provider_key: bad });
      assert.equal(response.status, 400, JSON.stringify(bad));
      const body = await response.json();
      assert.equal(body.error.param, "provider_key");
      assert.equal(body.error.type, "invalid_request_error");
      assert.match(body.error.message, /Invalid 'provider_key'/);
    }
    const anthropic = await fetch(`${s.gateway.url}/v1/messages`, {
      method: "POST",
      headers: {
        "x-api-key": secret,
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
      },
      body: JSON.stringify({
        model: MODEL,
        max_tokens: 10,
        messages: [{ role: "user", content: "hi" }],
        provider_key: "",
      }),
    });
    assert.equal(anthropic.status, 400);
    const body = await anthropic.json();
    assert.equal(body.type, "error");
    assert.equal(body.error.type, "invalid_request_error");
    assert.match(body.error.message, /provider_key/);
    assert.equal(s.fake.served, 0);
  } finally {
    await s.close();
  }
});

Deno.test("a customer key the upstream refuses is the caller's to fix: 400 provider_key_rejected", async () => {
  const s = await setup();
  try {
    s.fake.reply = (body, request) =>
      request.headers.get("authorization") === `Bearer ${OPERATOR_KEY}`
        ? Response.json(completion(String(body.model), "ok"))
        : Response.json({ error: { message: "Incorrect API key provided." } }, { status: 401 });
    const { secret } = await customer(s);
    const response = await ask(s.gateway.url, secret, { provider_key: "sk-wrong-key" });
    assert.equal(response.status, 400);
    assert.equal(response.headers.get("x-should-retry"), "false");
    const body = await response.json();
    assert.equal(body.error.code, "provider_key_rejected");
    assert.equal(body.error.param, "provider_key");
    assert.match(body.error.message, /refused your provider key \(HTTP 401\)/);
  } finally {
    await s.close();
  }
});

Deno.test("an inline key stays on the first target's service: an alias does not fall back to another", async () => {
  const s = await setup();
  const other = startFakeUpstream();
  try {
    await s.stack.addModel({
      provider: "other",
      baseUrl: other.url,
      apiKey: "sk-other-operator",
      model: "other-model",
      upstreamName: "other-1",
    });
    const route = await s.stack.graphql<{ upsertRoute: { __typename: string } }>(
      `mutation ($input: UpsertRouteInput!) { upsertRoute(input: $input) { __typename } }`,
      { input: { name: "both", targets: [MODEL, "other-model"] } },
    );
    assert.equal(route.data?.upsertRoute.__typename, "Route", JSON.stringify(route));
    s.fake.reply = () => Response.json({ error: { message: "down" } }, { status: 500 });
    const { secret } = await customer(s);
    await waitFor(async () => {
      const r = await fetch(`${s.gateway.url}/v1/models/both`, {
        headers: { authorization: `Bearer ${secret}` },
      });
      await r.body?.cancel();
      return r.status === 200;
    });
    const byok = await ask(s.gateway.url, secret, { model: "both", provider_key: CUSTOMER_KEY });
    assert.equal(byok.status, 502);
    await byok.body?.cancel();
    assert.equal(other.served, 0, "the customer's key went to another service");
    // Without a key, the same alias falls back as usual.
    const standard = await ask(s.gateway.url, secret, { model: "both" });
    assert.equal(standard.status, 200);
    await standard.body?.cancel();
    assert.equal(other.requests[0]!.headers.get("authorization"), "Bearer sk-other-operator");
  } finally {
    await other.close();
    await s.close();
  }
});

Deno.test("free requests are counted per calendar month (UTC): a new month starts afresh", async () => {
  const s = await setup();
  try {
    const { secret, accountId } = await customer(s, "1");
    const gw = s.gateway;
    let at = Date.UTC(2026, 0, 31, 23, 59, 59, 500);
    // The gateway's own pools and queue, on a clock the test sets.
    const app = createApp({
      policy: gw.policy,
      usage: gw.usage,
      billing: {
        allowances: gw.allowances,
        feeBps: 550,
        keyLimits: gw.pools.keyLimits,
        byok: { feeBps: 500, free: gw.pools.free },
      },
      hashingKey: deriveServerKeys(TEST_SECRET).hashing,
      config: { maxBodyBytes: 1024 * 1024, upstreamTimeoutMs: 30_000, streamTimeoutMs: 30_000 },
      clock: { now: () => at, monotonic: () => performance.now() },
      log: () => {},
    });
    const send = async () => {
      const response = await app(
        new Request("http://gateway/v1/chat/completions", {
          method: "POST",
          headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
          body: JSON.stringify({
            model: MODEL,
            max_tokens: COMPLETION_TOKENS,
            messages: [{ role: "user", content: "hi" }],
            provider_key: CUSTOMER_KEY,
          }),
        }),
      );
      assert.equal(response.status, 200, await response.clone().text());
      await response.body?.cancel();
      return response.headers.get("x-tollgate-cost");
    };
    const january = [await send(), await send(), await send(), await send()];
    at = Date.UTC(2026, 1, 1, 0, 0, 0, 0);
    const february = [await send(), await send()];
    assert.deepEqual(january, ["0.000000", "0.000000", "0.000000", "0.000050"]);
    assert.deepEqual(february, ["0.000000", "0.000000"]);
    await gw.usage.flush();
    await gw.pools.free.allowances.tick();
    assert.deepEqual(await monthly(s.stack.database.db.db, accountId), [
      { month: "2026-01-01", requests: 4, free: 3, reserved: 0 },
      { month: "2026-02-01", requests: 2, free: 2, reserved: 0 },
    ]);
  } finally {
    await s.close();
  }
});

Deno.test("a replayed batch counts its BYOK requests once, and failures are not counted", async () => {
  const database = await freshDatabase();
  try {
    const db = database.db.db;
    const { rows } = await sql<{ account: string; key: string }>`
      with a as (insert into accounts (name) values ('acme') returning id)
      insert into api_keys (account_id, name, key_hash, prefix, last4)
      select id, 'k', 'hash', 'tg_x', 'abcd' from a returning account_id as account, id as key
    `.execute(db);
    const { account, key } = rows[0]!;
    const event = (id: string, status: number, at: string): NewUsageEvent =>
      ({
        request_id: id,
        account_id: account,
        api_key_id: key,
        agent_name: null,
        agent_purpose: null,
        agent_owner: null,
        endpoint: "/v1/chat/completions",
        model: MODEL,
        provider_id: null,
        provider_name: null,
        upstream_model: null,
        status,
        error_code: null,
        stream: false,
        prompt_tokens: 1,
        completion_tokens: 1,
        cached_tokens: 0,
        total_tokens: 2,
        cost: 100n,
        billing_mode: "byok",
        fee: 0n,
        estimated: false,
        latency_ms: 1,
        ttfb_ms: 1,
        created_at: at,
        lease_id: null,
      }) as NewUsageEvent;
    const batch = [
      event("req_a", 200, "2026-03-31T23:59:59.999Z"),
      event("req_b", 200, "2026-04-01T00:00:00.000Z"),
      event("req_c", 502, "2026-04-01T00:00:01.000Z"),
      event("req_d", 0, "2026-04-01T00:00:02.000Z"),
    ];
    assert.deepEqual(await writeUsageEvents(db, batch), []);
    assert.deepEqual(await writeUsageEvents(db, batch), []);
    assert.deepEqual(await monthly(db, account), [
      { month: "2026-03-01", requests: 1, free: 0, reserved: 0 },
      { month: "2026-04-01", requests: 2, free: 0, reserved: 0 },
    ]);
  } finally {
    await database.drop();
  }
});

async function accountRow(db: Kysely<Database>): Promise<string> {
  const { rows } = await sql<{ id: string }>`
    insert into accounts (name) values ('acme') returning id
  `.execute(db);
  return rows[0]!.id;
}

Deno.test("two replicas racing for a month's free requests never grant more than the free tier", async () => {
  const database = await freshDatabase();
  try {
    const db = database.db.db;
    const account = await accountRow(db);
    const store = createByokFreeStore(db, { freeRequests: 10 });
    const replica = (id: string) =>
      createAllowances({ store, replicaId: id, maxGrowth: 1_000n, share: 4, ttlMs: 60_000 });
    const replicas = [replica("a"), replica("b")];
    const month = byokMonth(account, new Date("2026-05-20T12:00:00Z"));
    const taken = await Promise.all(
      Array.from({ length: 40 }, (_, i) => replicas[i % 2]!.reserve(month, 1n)),
    );
    assert.equal(taken.filter((r) => r !== null).length, 10);
    const { rows } = await sql<{ reserved: string; leased: string }>`
      select m.reserved::text,
        (select sum(amount) from allowances where kind = 'byok_free' and account_id = m.account_id)::text
          as leased
      from byok_monthly_usage m where account_id = ${account} and month = '2026-05-01'
    `.execute(db);
    assert.deepEqual(rows, [{ reserved: "10", leased: "10" }]);
    for (const r of replicas) await r.close();
  } finally {
    await database.drop();
  }
});

Deno.test("free requests a dead replica leased are swept back to the month, and only there", async () => {
  const database = await freshDatabase();
  try {
    const db = database.db.db;
    const account = await accountRow(db);
    const store = createByokFreeStore(db, { freeRequests: 100 });
    const month = byokMonth(account, new Date("2026-06-01T00:00:00Z"));
    const lease = await store.grow({
      accountId: month,
      leaseId: null,
      replicaId: "dead",
      min: 1n,
      max: 10n,
      share: 1,
      ttlMs: 1,
    });
    assert.equal(lease?.granted, 10n);
    await new Promise((resolve) => setTimeout(resolve, 20));
    // The balances' sweep leaves it alone; the free requests' sweep returns it.
    assert.equal(await createAllowanceStore(db).sweep(), 0);
    assert.equal(await store.sweep(), 1);
    assert.deepEqual(await monthly(db, account), [
      { month: "2026-06-01", requests: 0, free: 0, reserved: 0 },
    ]);
    const { rows } = await sql<{ reserved: string }>`
      select reserved::text from accounts where id = ${account}
    `.execute(db);
    assert.equal(rows[0]!.reserved, "0");
  } finally {
    await database.drop();
  }
});
