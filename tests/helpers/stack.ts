/**
 * The whole of Tollgate for a test: a fresh database, both planes on random
 * ports, and helpers that talk to them the way a user does (GraphQL over
 * HTTP, the official openai client, the official Anthropic client of either
 * major version).
 */
import Anthropic from "@anthropic-ai/sdk";
import Anthropic0 from "@anthropic-ai/sdk-0";
import OpenAI from "openai";
import type { UsageEvent } from "../../schema/database.ts";
import { ensureAdminToken } from "../../control/auth.ts";
import { startControl } from "../../control/server.ts";
import { seedMockProvider } from "../../gateway/providers/mock_seed.ts";
import { type GatewayServer, startGateway } from "../../gateway/server.ts";
import { deriveServerKeys } from "../../schema/secrets.ts";
import type { IpRange } from "../../schema/ip_ranges.ts";
import type { BillingConfig } from "../../schema/config.ts";
import { freshDatabase, type TestDatabase } from "./database.ts";

export const TEST_SECRET = "test-secret-".padEnd(48, "x");
export const ADMIN_TOKEN = "test-admin-token-0123456789abcdef";

export interface Stack {
  database: TestDatabase;
  gateway: GatewayServer;
  gatewayUrl: string;
  controlUrl: string;
  graphql<T = Record<string, unknown>>(
    query: string,
    variables?: Record<string, unknown>,
    token?: string | null,
  ): Promise<GraphQLResult<T>>;
  /** An account (credited, through the ledger) and an inference key, made through GraphQL. */
  createKey(
    /** balance: USD credited to the account first (default "100"; "0" for none). */
    options?: { accountName?: string; scopes?: string[]; balance?: string },
  ): Promise<{ accountId: string; keyId: string; secret: string }>;
  openai(secret: string, options?: { maxRetries?: number }): OpenAI;
  /** An Anthropic client of SDK major `sdk` (default 1) on the gateway; see ANTHROPIC_SDKS. */
  anthropic(secret: string, options?: AnthropicClientOptions): Anthropic;
  /** A provider and one model on it, made through GraphQL; fails the test if refused. */
  addModel(options: AddModelOptions): Promise<void>;
  /** Every usage row, oldest first, once the gateway's queue is flushed. */
  usageRows(): Promise<UsageEvent[]>;
  close(): Promise<void>;
}

export interface AddModelOptions {
  provider: string;
  kind?: "openai_compat" | "anthropic";
  preset?: string;
  baseUrl: string;
  apiKey: string;
  model: string;
  upstreamName: string;
  inputPrice?: string;
  outputPrice?: string;
  /** USD per million cached input tokens; the input price if unset. */
  cachedInputPrice?: string;
}

/**
 * The official Anthropic SDK of each major version: 1.x (anthropic-version
 * 2026-10-21, `Authorization: Bearer`) and the last 0.x (2023-06-01,
 * `x-api-key`). Both are typed as 1.x: the calls tests make (messages,
 * count_tokens, models, the error classes) have the same shape in both.
 */
export const ANTHROPIC_SDKS = {
  1: Anthropic,
  0: Anthropic0 as unknown as typeof Anthropic,
} as const;

export type AnthropicSdk = keyof typeof ANTHROPIC_SDKS;

/** Every SDK major, newest first, for tests that run a case on each. */
export const SDK_MAJORS: readonly AnthropicSdk[] = [1, 0];

/** The anthropic-version each SDK major sends by default. */
export const SDK_VERSIONS = { 1: "2026-10-21", 0: "2023-06-01" } as const;

export interface AnthropicClientOptions {
  sdk?: AnthropicSdk;
  maxRetries?: number;
  /** Sees every request and response, e.g. to record statuses or headers. */
  fetch?: typeof fetch;
}

export interface GraphQLResult<T> {
  status: number;
  headers: Headers;
  data?: T;
  errors?: { message: string; extensions?: Record<string, unknown> }[];
}

export interface StackOptions {
  fetch?: typeof fetch;
  usageFlushMs?: number;
  maxBodyBytes?: number;
  /** Fallback waits; tests default to short ones. */
  backoff?: { baseMs: number; maxMs: number; maxRetryAfterMs: number };
  /** Peers whose X-Forwarded-For the gateway believes (TOLLGATE_TRUSTED_PROXIES). */
  trustedProxies?: readonly IpRange[];
  /** A Postgres server other than DATABASE_URL's to make the stack's database on. */
  serverUrl?: string;
  /**
   * The gateway's operator fee, BYOK routing fee and free BYOK requests
   * (TOLLGATE_STANDARD_FEE_BPS and its kin); their defaults if unset.
   */
  billing?: BillingConfig;
}

export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const database = await freshDatabase({ serverUrl: options.serverUrl });
  const db = database.db;
  await seedMockProvider(db.db);
  const keys = deriveServerKeys(TEST_SECRET);
  await ensureAdminToken(db.db, keys, ADMIN_TOKEN);
  const control = await startControl({
    db: db.db,
    keys,
    config: controlConfig(),
  });
  const gateway = await startGateway({
    db,
    keys,
    fetch: options.fetch,
    log: () => {},
    config: {
      port: 0,
      hostname: "127.0.0.1",
      maxBodyBytes: options.maxBodyBytes ?? 1024 * 1024,
      upstreamTimeoutMs: 30_000,
      streamTimeoutMs: 120_000,
      backoff: options.backoff ?? { baseMs: 5, maxMs: 20, maxRetryAfterMs: 2_000 },
      policyResyncMs: 60_000,
      usageFlushMs: options.usageFlushMs ?? 20,
      usageBatchSize: 100,
      trustedProxies: options.trustedProxies,
      billing: options.billing,
    },
  });

  const graphql: Stack["graphql"] = async (query, variables = {}, token = ADMIN_TOKEN) => {
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (token) headers.authorization = `Bearer ${token}`;
    const response = await fetch(`${control.url}/graphql`, {
      method: "POST",
      headers,
      body: JSON.stringify({ query, variables }),
    });
    const body = await response.json();
    return { status: response.status, headers: response.headers, ...body };
  };

  return {
    database,
    gateway,
    gatewayUrl: gateway.url,
    controlUrl: control.url,
    graphql,
    async createKey({ accountName = "Acme", scopes, balance = "100" } = {}) {
      const account = await graphql<{ createAccount: { id: string } }>(
        `mutation ($name: String!) { createAccount(input: { name: $name }) { __typename ... on Account { id } } }`,
        { name: accountName },
      );
      const accountId = account.data?.createAccount.id;
      if (!accountId) throw new Error(`createAccount failed: ${JSON.stringify(account)}`);
      if (balance !== "0") {
        const credit = await graphql<{ adjustBalance: { __typename: string } }>(
          `mutation ($accountId: ID!, $amount: String!) {
            adjustBalance(input: { accountId: $accountId, amount: $amount, reason: "test credit" }) {
              __typename
            }
          }`,
          { accountId, amount: balance },
        );
        if (credit.data?.adjustBalance.__typename !== "BalanceAdjustment") {
          throw new Error(`adjustBalance failed: ${JSON.stringify(credit)}`);
        }
      }
      const key = await graphql<{ createApiKey: { secret: string; apiKey: { id: string } } }>(
        `mutation ($accountId: ID!, $scopes: [ApiKeyScope!]) {
          createApiKey(input: { accountId: $accountId, name: "test key", scopes: $scopes }) {
            __typename ... on CreatedApiKey { secret apiKey { id } }
          }
        }`,
        { accountId, scopes },
      );
      const created = key.data?.createApiKey;
      if (!created?.secret) throw new Error(`createApiKey failed: ${JSON.stringify(key)}`);
      // The key reaches the gateway through NOTIFY; wait until it is there.
      await waitFor(async () => {
        const r = await fetch(`${gateway.url}/v1/models`, {
          headers: { authorization: `Bearer ${created.secret}` },
        });
        await r.body?.cancel();
        return r.status === 200;
      });
      return { accountId, keyId: created.apiKey.id, secret: created.secret };
    },
    async usageRows() {
      await gateway.usage.flush();
      return await database.db.db.selectFrom("usage_events").selectAll().orderBy("created_at")
        .execute();
    },
    async addModel(o) {
      const provider = await graphql(
        `mutation ($input: UpsertProviderInput!) { upsertProvider(input: $input) { __typename } }`,
        {
          input: {
            name: o.provider,
            kind: o.kind ?? "openai_compat",
            preset: o.preset,
            baseUrl: o.baseUrl,
            apiKey: o.apiKey,
          },
        },
      );
      assertTypename(provider, "upsertProvider", "Provider");
      const model = await graphql(
        `mutation ($input: UpsertModelInput!) { upsertModel(input: $input) { __typename } }`,
        {
          input: {
            name: o.model,
            provider: o.provider,
            upstreamName: o.upstreamName,
            inputPrice: o.inputPrice ?? "1",
            outputPrice: o.outputPrice ?? "2",
            cachedInputPrice: o.cachedInputPrice,
          },
        },
      );
      assertTypename(model, "upsertModel", "Model");
    },
    openai(secret, { maxRetries = 0 } = {}) {
      return new OpenAI({ apiKey: secret, baseURL: `${gateway.url}/v1`, maxRetries });
    },
    anthropic(secret, { sdk = 1, maxRetries = 0, fetch } = {}) {
      // No /v1: the SDK's paths start with it.
      return new ANTHROPIC_SDKS[sdk]({ apiKey: secret, baseURL: gateway.url, maxRetries, fetch });
    },
    async close() {
      await gateway.shutdown();
      await control.shutdown();
      await database.drop();
    },
  };
}

function assertTypename(result: GraphQLResult<unknown>, field: string, typename: string): void {
  const got = (result.data as Record<string, { __typename?: string }> | undefined)?.[field];
  if (got?.__typename !== typename) {
    throw new Error(`${field} did not return a ${typename}: ${JSON.stringify(result)}`);
  }
}

function controlConfig() {
  return Object.freeze({
    databaseUrl: undefined,
    dataDir: "memory://",
    pgliteDir: "memory://",
    secret: TEST_SECRET,
    port: 0,
    hostname: "127.0.0.1",
    adminToken: ADMIN_TOKEN,
    billing: { standardFeeBps: 550, byokFeeBps: 500, byokFreeRequests: 1_000_000 },
    kek: {},
  });
}

/** Polls `check` until it is true, or fails after `timeoutMs`. */
export async function waitFor(
  check: () => Promise<boolean> | boolean,
  timeoutMs = 5_000,
  everyMs = 10,
): Promise<number> {
  const start = performance.now();
  for (;;) {
    if (await check()) return performance.now() - start;
    if (performance.now() - start > timeoutMs) {
      throw new Error(`Condition not met within ${timeoutMs} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
