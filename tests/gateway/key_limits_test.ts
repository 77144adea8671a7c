/**
 * A key's limits at the gateway: IP allowlists (with trusted proxies),
 * requests and tokens per minute, expiry and revocation. The parsing and
 * counting are checked on their own with a fake clock; then each limit
 * against a running stack, set through GraphQL and applied by NOTIFY.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { clientAddress } from "../../gateway/auth/ip_allowlist.ts";
import { createRateLimiter, type KeyLimits } from "../../gateway/auth/rate_limiter.ts";
import { loadConfig } from "../../gateway/config.ts";
import { GatewayError } from "../../gateway/errors.ts";
import { formatIp, inRange, type IpRange, parseIp, parseIpRange } from "../../schema/ip_ranges.ts";
import { configErrorFor, namedVariables } from "../helpers/config_errors.ts";
import { type Stack, startStack, waitFor } from "../helpers/stack.ts";

function range(text: string): IpRange {
  const parsed = parseIpRange(text);
  if (typeof parsed === "string") throw new Error(parsed);
  return parsed;
}

function address(text: string) {
  const bits = parseIp(text);
  if (!bits) throw new Error(`not an address: ${text}`);
  return bits;
}

Deno.test("IP ranges of both families parse to canonical text; malformed ones say why", () => {
  const canonical: [string, string][] = [
    ["203.0.113.7", "203.0.113.7"],
    [" 10.0.0.0/8 ", "10.0.0.0/8"],
    ["0.0.0.0/0", "0.0.0.0/0"],
    ["2001:DB8::/32", "2001:db8::/32"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"],
    ["::1", "::1"],
    ["::", "::"],
    ["::/0", "::/0"],
    ["1::", "1::"],
    ["fe80::1:2", "fe80::1:2"],
    // An IPv4-mapped address is the IPv4 address.
    ["::ffff:10.1.2.3", "10.1.2.3"],
    ["::ffff:a01:203", "10.1.2.3"],
    ["::ffff:10.0.0.0/104", "10.0.0.0/8"],
  ];
  for (const [text, expected] of canonical) assert.equal(range(text).text, expected, text);

  const refused: [string, RegExp][] = [
    ["10.1.2.3/8", /bits set past its prefix: the range is 10\.0\.0\.0\/8/],
    ["2001:db8::1/32", /the range is 2001:db8::\/32/],
    ["10.0.0.0/33", /prefix length that is not 0 to 32/],
    ["2001:db8::/129", /not 0 to 128/],
    ["10.0.0.0/", /prefix length/],
    ["10.0.0.0/-1", /prefix length/],
    ["256.1.1.1", /not an IPv4 or IPv6 address/],
    ["010.1.1.1", /not an IPv4/],
    ["1.2.3", /not an IPv4/],
    ["1::2::3", /not an IPv4/],
    ["1:2:3:4:5:6:7:8:9", /not an IPv4/],
    ["1:2:3:4:5:6:7::8", /not an IPv4/],
    ["1.2.3.4::", /not an IPv4/],
    ["12345::", /not an IPv4/],
    ["localhost", /not an IPv4/],
    ["", /not an IPv4/],
  ];
  for (const [text, message] of refused) {
    const result = parseIpRange(text);
    assert.equal(typeof result, "string", text);
    assert.match(result as string, message, text);
  }
});

Deno.test("an address is in a range when its leading prefix bits match, across families", () => {
  const cases: [string, string, boolean][] = [
    ["10.200.3.4", "10.0.0.0/8", true],
    ["11.0.0.1", "10.0.0.0/8", false],
    ["::ffff:10.1.1.1", "10.0.0.0/8", true],
    ["203.0.113.7", "203.0.113.7", true],
    ["203.0.113.8", "203.0.113.7", false],
    ["192.168.1.255", "192.168.1.128/25", true],
    ["192.168.1.127", "192.168.1.128/25", false],
    ["2001:db8:ffff::1", "2001:db8::/32", true],
    ["2001:db9::", "2001:db8::/32", false],
    ["2001:db8::1", "2001:db8::/127", true],
    ["2001:db8::2", "2001:db8::/127", false],
    // IPv4's /0 is every IPv4 address and nothing else; IPv6's /0 is everything.
    ["198.51.100.1", "0.0.0.0/0", true],
    ["::1", "0.0.0.0/0", false],
    ["::1", "::/0", true],
    ["198.51.100.1", "::/0", true],
  ];
  for (const [ip, cidr, expected] of cases) {
    assert.equal(inRange(address(ip), range(cidr)), expected, `${ip} in ${cidr}`);
  }

  // Against plain arithmetic on IPv4, for any address, network and prefix.
  fc.assert(fc.property(
    fc.nat({ max: 0xffffffff }),
    fc.nat({ max: 0xffffffff }),
    fc.integer({ min: 0, max: 32 }),
    (a, b, prefix) => {
      const text = (n: number) => [24, 16, 8, 0].map((s) => (n >>> s) & 255).join(".");
      const network = prefix === 0 ? 0 : (b >>> (32 - prefix)) * 2 ** (32 - prefix);
      const expected = prefix === 0 || (a >>> (32 - prefix)) === (b >>> (32 - prefix));
      return inRange(address(text(a)), range(`${text(network)}/${prefix}`)) === expected;
    },
  ));
  // Any 128 bits print as text that parses back to the same bits.
  fc.assert(fc.property(
    fc.array(fc.constantFrom(0, 0, 0, 1, 0xffff, 0x0db8), { minLength: 8, maxLength: 8 }),
    (groups) => {
      const bits = new Uint32Array(4);
      for (let i = 0; i < 4; i++) bits[i] = (groups[2 * i]! << 16 | groups[2 * i + 1]!) >>> 0;
      return [...address(formatIp(bits))].join() === [...bits].join();
    },
  ));
});

Deno.test("X-Forwarded-For names the client only when the peer is a trusted proxy", () => {
  const trusted = [range("10.0.0.0/8"), range("fd00::/8")];
  const client = (peer: string | null, xff: string | null, proxies = trusted) => {
    const bits = clientAddress(peer, xff, proxies);
    return bits ? formatIp(bits) : null;
  };
  assert.equal(client("198.51.100.7", null), "198.51.100.7");
  assert.equal(client("198.51.100.7", "203.0.113.9"), "198.51.100.7", "untrusted peer: ignored");
  assert.equal(client("10.0.0.2", "203.0.113.9", []), "10.0.0.2", "no trusted proxies");
  assert.equal(client("10.0.0.2", null), "10.0.0.2");
  assert.equal(client("10.0.0.2", "203.0.113.9"), "203.0.113.9");
  // The rightmost hop that is not a trusted proxy: what the client wrote to the left is not believed.
  assert.equal(client("10.0.0.2", "203.0.113.9, 198.51.100.1"), "198.51.100.1");
  assert.equal(client("10.0.0.2", "198.51.100.1, 203.0.113.9, 10.0.0.9"), "203.0.113.9");
  assert.equal(client("10.0.0.2", "10.0.0.8, 10.0.0.9"), "10.0.0.8", "all trusted: the leftmost");
  assert.equal(client("10.0.0.2", "203.0.113.9, garbage"), null, "a bad hop after a proxy");
  assert.equal(client("10.0.0.2", "garbage, 203.0.113.9"), "203.0.113.9");
  assert.equal(client("fd00::1", "[2001:db8::5]:443"), "2001:db8::5");
  assert.equal(client("fd00::1", "203.0.113.9:8080"), "203.0.113.9");
  assert.equal(client("::ffff:10.0.0.2", "203.0.113.9"), "203.0.113.9", "a mapped peer");
  assert.equal(client("fe80::1%eth0", null), "fe80::1");
  assert.equal(client(null, "203.0.113.9"), null, "no peer (not TCP)");
});

Deno.test("TOLLGATE_TRUSTED_PROXIES takes comma-separated CIDR ranges and names bad ones", () => {
  assert.deepEqual(
    loadConfig({ TOLLGATE_TRUSTED_PROXIES: "10.0.0.0/8, 2001:DB8::/32,192.0.2.1" }).trustedProxies
      .map((r) => r.text),
    ["10.0.0.0/8", "2001:db8::/32", "192.0.2.1"],
  );
  assert.deepEqual(loadConfig({}).trustedProxies, []);
  const error = configErrorFor(loadConfig, { TOLLGATE_TRUSTED_PROXIES: "10.0.0.0/8, 10.1.2.3/8" });
  assert.deepEqual(namedVariables(error), ["TOLLGATE_TRUSTED_PROXIES"]);
  assert.match(error.message, /"10\.1\.2\.3\/8" has bits set past its prefix/);
});

/** The 429 a limiter throws, or null when it admitted. */
function refusal(admit: () => unknown): GatewayError | null {
  try {
    admit();
    return null;
  } catch (error) {
    assert.ok(error instanceof GatewayError);
    return error;
  }
}

Deno.test("requests per minute: a sliding window of 60 seconds, with the wait in Retry-After", () => {
  const limiter = createRateLimiter();
  const key: KeyLimits = { id: "k", rpmLimit: 3, tpmLimit: null };
  const s = (seconds: number) => 1_000_000 + seconds * 1000;
  assert.equal(limiter.admit(key, 10, s(0)), null, "no token limit: nothing to settle");
  limiter.admit(key, 10, s(0.5));
  limiter.admit(key, 10, s(30));
  const full = refusal(() => limiter.admit(key, 10, s(30.2)));
  assert.equal(full?.code, "rate_limit_exceeded");
  assert.equal(full?.status, 429);
  assert.equal(full?.retryable, true);
  assert.equal(full?.retryAfter, 30, "the slot of second 0 ages out at second 60");
  assert.match(full!.message, /allows 3 requests per minute on this gateway/);
  assert.equal(refusal(() => limiter.admit(key, 10, s(59.9)))?.retryAfter, 1);
  // At second 60 the two requests of second 0 have aged out, not the one of second 30.
  assert.equal(refusal(() => limiter.admit(key, 10, s(60))), null);
  assert.equal(refusal(() => limiter.admit(key, 10, s(60.1))), null);
  assert.equal(refusal(() => limiter.admit(key, 10, s(61)))?.retryAfter, 29);
  // A refused request was not counted: after a long quiet spell the whole limit is there.
  for (let i = 0; i < 3; i++) assert.equal(refusal(() => limiter.admit(key, 10, s(200))), null);
  assert.ok(refusal(() => limiter.admit(key, 10, s(200))));
  // Other keys have windows of their own; keys without limits are never counted.
  assert.equal(refusal(() => limiter.admit({ ...key, id: "other" }, 10, s(200))), null);
  const free: KeyLimits = { id: "free", rpmLimit: null, tpmLimit: null };
  for (let i = 0; i < 1000; i++) assert.equal(limiter.admit(free, 1e9, s(200)), null);
});

Deno.test("tokens per minute: the prompt's estimate at admission, corrected to the usage metered", () => {
  const limiter = createRateLimiter();
  const key: KeyLimits = { id: "k", rpmLimit: null, tpmLimit: 100 };
  const s = (seconds: number) => 5_000_000 + seconds * 1000;
  const first = limiter.admit(key, 30, s(0));
  assert.deepEqual(first && { estimate: first.estimate }, { estimate: 30 });
  // Two estimates of 30 fit in 100...
  const second = limiter.admit(key, 30, s(1));
  // ...but the first used 70 in fact: 70 + 30 leaves no room for another 30.
  limiter.settle(first, 70, s(2));
  const refused = refusal(() => limiter.admit(key, 30, s(3)));
  assert.equal(refused?.code, "rate_limit_exceeded");
  assert.match(refused!.message, /100 tokens per minute/);
  assert.equal(refused?.retryAfter, 57, "the 70 of second 0 age out at second 60");
  // A request refused after admission (402, say) is settled to zero and frees its estimate.
  limiter.settle(second, 0, s(4));
  assert.equal(refusal(() => limiter.admit(key, 30, s(5))), null);
  // A correction never counts below zero, and an estimate aged out is not corrected back.
  limiter.settle({ keyId: "k", second: Math.floor(s(5) / 1000), estimate: 30 }, 0, s(6));
  const long = limiter.admit(key, 0, s(10));
  assert.equal(long?.estimate, 1, "every request counts at least a token");
  limiter.settle(long, 40, s(100));
  assert.ok(refusal(() => limiter.admit(key, 62, s(100))), "the shortfall of 39 counts now");
  assert.equal(refusal(() => limiter.admit(key, 61, s(100))), null);
});

Deno.test("tokens per minute: a prompt larger than the limit is admitted alone, then holds the window", () => {
  const limiter = createRateLimiter();
  const key: KeyLimits = { id: "k", rpmLimit: 10, tpmLimit: 100 };
  const s = (seconds: number) => 9_000_000 + seconds * 1000;
  const big = limiter.admit(key, 5_000, s(0));
  assert.equal(big?.estimate, 100, "counted as the whole limit");
  assert.equal(refusal(() => limiter.admit(key, 1, s(1)))?.retryAfter, 59);
  limiter.settle(big, 4_000, s(2));
  assert.equal(refusal(() => limiter.admit(key, 1, s(59)))?.retryAfter, 1);
  assert.equal(refusal(() => limiter.admit(key, 1, s(60))), null);
});

// ---- Against a running gateway ----

interface KeyInput {
  allowedIps?: string[] | null;
  rpmLimit?: number | null;
  tpmLimit?: number | null;
  expiresAt?: string | null;
}

/** A credited account's key with `input`'s limits, once the gateway knows it. */
async function limitedKey(stack: Stack, input: KeyInput): Promise<{ id: string; secret: string }> {
  const { accountId } = await stack.createKey();
  const result = await stack.graphql<
    { createApiKey: { __typename: string; secret: string; apiKey: { id: string } } }
  >(
    `mutation ($input: CreateApiKeyInput!) { createApiKey(input: $input) {
      __typename ... on CreatedApiKey { secret apiKey { id } } ... on Error { message } } }`,
    { input: { accountId, name: "limited", ...input } },
  );
  const created = result.data?.createApiKey;
  assert.equal(created?.__typename, "CreatedApiKey", JSON.stringify(result));
  await waitFor(async () => (await modelsStatus(stack, created!.secret)) !== 401);
  return { id: created!.apiKey.id, secret: created!.secret };
}

async function updateKey(stack: Stack, id: string, input: KeyInput): Promise<void> {
  const result = await stack.graphql<{ updateApiKey: { __typename: string } }>(
    `mutation ($input: UpdateApiKeyInput!) { updateApiKey(input: $input) {
      __typename ... on Error { message } } }`,
    { input: { id, ...input } },
  );
  assert.equal(result.data?.updateApiKey.__typename, "ApiKey", JSON.stringify(result));
}

async function modelsStatus(stack: Stack, secret: string): Promise<number> {
  const response = await fetch(`${stack.gatewayUrl}/v1/models`, {
    headers: { authorization: `Bearer ${secret}` },
  });
  await response.body?.cancel();
  return response.status;
}

/** A request body: the Messages API requires max_tokens; the mock echoes the prompt. */
function chatBody(content: string, anthropic: boolean): string {
  const maxTokens = anthropic ? { max_tokens: 50 } : {};
  return JSON.stringify({
    model: "tollgate-mock",
    ...maxTokens,
    messages: [{ role: "user", content }],
  });
}

/** A chat completion over plain HTTP, in OpenAI's dialect or (anthropic) the Messages API's. */
async function ask(
  stack: Stack,
  secret: string,
  options: { anthropic?: boolean; headers?: Record<string, string>; content?: string } = {},
): Promise<{ status: number; headers: Headers; body: Record<string, unknown> }> {
  const content = options.content ?? "hi";
  const anthropic = options.anthropic ?? false;
  const response = await fetch(
    `${stack.gatewayUrl}/v1/${anthropic ? "messages" : "chat/completions"}`,
    {
      method: "POST",
      headers: {
        "content-type": "application/json",
        ...(anthropic
          ? { "x-api-key": secret, "anthropic-version": "2023-06-01" }
          : { authorization: `Bearer ${secret}` }),
        ...options.headers,
      },
      body: chatBody(content, anthropic),
    },
  );
  return { status: response.status, headers: response.headers, body: await response.json() };
}

/** The error code of an OpenAI-shaped or an Anthropic-shaped error body. */
function errorOf(body: Record<string, unknown>): { code?: string; type?: string } {
  return body.error as { code?: string; type?: string };
}

Deno.test("an IP allowlist lets the listed addresses in and refuses others with 403 ip_not_allowed", async () => {
  const stack = await startStack();
  try {
    const { id, secret } = await limitedKey(stack, { allowedIps: ["10.0.0.0/8"] });
    // The client is the socket peer, 127.0.0.1; an untrusted peer's X-Forwarded-For is ignored.
    for (const headers of [{}, { "x-forwarded-for": "10.1.2.3" }] as Record<string, string>[]) {
      const refused = await ask(stack, secret, { headers });
      assert.equal(refused.status, 403);
      assert.equal(refused.headers.get("x-should-retry"), "false");
      assert.equal(errorOf(refused.body).code, "ip_not_allowed");
      assert.equal(errorOf(refused.body).type, "permission_error");
      assert.match(
        (refused.body.error as { message: string }).message,
        /may not be used from 127\.0\.0\.1/,
      );
    }
    const anthropic = await ask(stack, secret, { anthropic: true });
    assert.equal(anthropic.status, 403);
    assert.equal(anthropic.body.type, "error");
    assert.equal(errorOf(anthropic.body).type, "permission_error");
    assert.equal(anthropic.headers.get("x-should-retry"), "false");

    await updateKey(stack, id, { allowedIps: ["192.0.2.0/24", "127.0.0.0/8", "::1"] });
    await waitFor(async () => (await ask(stack, secret)).status === 200);
    await updateKey(stack, id, { allowedIps: ["::1"] });
    await waitFor(async () => (await ask(stack, secret)).status === 403);
    await updateKey(stack, id, { allowedIps: null });
    await waitFor(async () => (await ask(stack, secret)).status === 200);
  } finally {
    await stack.close();
  }
});

Deno.test("behind a trusted proxy the allowlist is checked against X-Forwarded-For's client", async () => {
  // The test's own connections come from 127.0.0.1, standing in for a load balancer.
  const stack = await startStack({ trustedProxies: [range("127.0.0.1")] });
  try {
    const { secret } = await limitedKey(stack, { allowedIps: ["203.0.113.0/24"] });
    const status = async (xff?: string) =>
      (await ask(stack, secret, { headers: xff ? { "x-forwarded-for": xff } : {} })).status;
    assert.equal(await status("203.0.113.9"), 200);
    assert.equal(await status("198.51.100.1, 203.0.113.9"), 200);
    assert.equal(await status("203.0.113.9, 198.51.100.1"), 403, "a client cannot prepend");
    assert.equal(await status(), 403, "without the header the proxy itself is the client");
  } finally {
    await stack.close();
  }
});

Deno.test("past its requests per minute a key gets 429 rate_limit_exceeded with Retry-After, in its dialect", async () => {
  const stack = await startStack();
  try {
    const { id, secret } = await limitedKey(stack, { rpmLimit: 2 });
    assert.equal((await ask(stack, secret)).status, 200);
    assert.equal((await ask(stack, secret, { anthropic: true })).status, 200);
    // Listing models is not a model request, and is not counted.
    assert.equal(await modelsStatus(stack, secret), 200);

    const refused = await ask(stack, secret);
    assert.equal(refused.status, 429);
    assert.equal(errorOf(refused.body).code, "rate_limit_exceeded");
    assert.equal(errorOf(refused.body).type, "rate_limit_error");
    assert.equal(refused.headers.get("x-should-retry"), "true");
    const retryAfter = Number(refused.headers.get("retry-after"));
    assert.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After: ${retryAfter}`);

    const anthropic = await ask(stack, secret, { anthropic: true });
    assert.equal(anthropic.status, 429);
    assert.equal(anthropic.body.type, "error");
    assert.equal(errorOf(anthropic.body).type, "rate_limit_error");
    assert.ok(Number(anthropic.headers.get("retry-after")) >= 1);

    // Refusals are not metered: two requests were served.
    assert.equal((await stack.usageRows()).length, 2);
    // Raising the limit takes effect when the gateway is notified, without waiting a minute.
    await updateKey(stack, id, { rpmLimit: 5 });
    await waitFor(async () => (await ask(stack, secret)).status === 200);
  } finally {
    await stack.close();
  }
});

Deno.test("tokens per minute are counted from the prompt's estimate, then from the usage metered", async () => {
  const stack = await startStack();
  try {
    // The mock echoes the prompt, so a long prompt uses about twice its tokens.
    const content = "Please repeat all of this back to me. ".repeat(20);
    const probe = await limitedKey(stack, {});
    const measured = await ask(stack, probe.secret, { content });
    const used = (measured.body.usage as { total_tokens: number }).total_tokens;
    const estimate = Math.ceil(chatBody(content, false).length / 4);
    // A limit that two estimates fit in but not the first request's usage plus an estimate.
    const limit = 2 * estimate + 5;
    assert.ok(used + estimate > limit, `usage ${used}, estimate ${estimate}`);

    const { secret } = await limitedKey(stack, { tpmLimit: limit });
    const first = await ask(stack, secret, { content });
    assert.equal(first.status, 200);
    assert.equal((first.body.usage as { total_tokens: number }).total_tokens, used);
    const second = await ask(stack, secret, { content });
    assert.equal(second.status, 429, "the first request's usage replaced its estimate");
    assert.equal(errorOf(second.body).code, "rate_limit_exceeded");
    assert.match((second.body.error as { message: string }).message, /tokens per minute/);
    assert.ok(Number(second.headers.get("retry-after")) >= 1);
  } finally {
    await stack.close();
  }
});

Deno.test("a key stops at its expiry and when revoked; updating the expiry brings it back", async () => {
  const stack = await startStack();
  try {
    const expiresAt = new Date(Date.now() + 1_500).toISOString();
    const { id, secret } = await limitedKey(stack, { expiresAt });
    assert.equal((await ask(stack, secret)).status, 200);
    await waitFor(() => Date.now() > Date.parse(expiresAt), 3_000);
    const expired = await ask(stack, secret);
    assert.equal(expired.status, 401);
    assert.equal(errorOf(expired.body).code, "expired_api_key");
    assert.equal(expired.headers.get("x-should-retry"), "false");

    await updateKey(stack, id, { expiresAt: null });
    await waitFor(async () => (await ask(stack, secret)).status === 200);

    const revoked = await stack.graphql(
      `mutation ($id: ID!) { revokeApiKey(input: { id: $id }) { __typename } }`,
      { id },
    );
    assert.deepEqual(revoked.data, { revokeApiKey: { __typename: "ApiKey" } });
    await waitFor(async () => (await ask(stack, secret)).status === 401, 1_000);
    assert.equal(errorOf((await ask(stack, secret)).body).code, "revoked_api_key");
  } finally {
    await stack.close();
  }
});
