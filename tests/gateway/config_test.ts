import assert from "node:assert/strict";
import { loadConfig } from "../../gateway/config.ts";
import { ConfigError } from "../../schema/config.ts";
import { configErrorFor as configErrorWith, namedVariables } from "../helpers/config_errors.ts";

const configErrorFor = (env: Record<string, string>) => configErrorWith(loadConfig, env);

Deno.test("the gateway listens on 127.0.0.1:8080 with the embedded database and mock model by default", () => {
  // The key-encryption and billing settings have tests of their own (tests/schema/).
  const { kek: _kek, billing: _billing, ...config } = loadConfig({});
  assert.deepEqual(config, {
    databaseUrl: undefined,
    dataDir: ".tollgate",
    pgliteDir: ".tollgate/pgdata",
    secret: undefined,
    port: 8080,
    hostname: "127.0.0.1",
    maxBodyBytes: 10 * 1024 * 1024,
    upstreamTimeoutMs: 30_000,
    streamTimeoutMs: 120_000,
    backoff: { baseMs: 100, maxMs: 2_000, maxRetryAfterMs: 10_000 },
    policyResyncMs: 60_000,
    usageFlushMs: 200,
    usageBatchSize: 500,
    usageMaxPending: 100_000,
    spoolDir: ".tollgate/spool",
    spoolFsync: 100,
    drainTimeoutMs: 10_000,
    seedMockProvider: true,
    trustedProxies: [],
    upstreamClient: "pool",
  });
});

Deno.test("upstream calls use fetch when a proxy is configured, or when told to", () => {
  for (const name of ["HTTPS_PROXY", "http_proxy", "ALL_PROXY"]) {
    assert.equal(loadConfig({ [name]: "http://proxy.internal:3128" }).upstreamClient, "fetch");
  }
  assert.equal(loadConfig({ TOLLGATE_UPSTREAM_CLIENT: "fetch" }).upstreamClient, "fetch");
  assert.equal(
    loadConfig({ TOLLGATE_UPSTREAM_CLIENT: "pool", HTTPS_PROXY: "http://p:1" }).upstreamClient,
    "pool",
  );
  assert.deepEqual(namedVariables(configErrorFor({ TOLLGATE_UPSTREAM_CLIENT: "curl" })), [
    "TOLLGATE_UPSTREAM_CLIENT",
  ]);
});

Deno.test("the usage spool and the drain on shutdown are read from the environment", () => {
  const config = loadConfig({
    TOLLGATE_DATA_DIR: "/var/lib/tollgate",
    TOLLGATE_USAGE_MAX_PENDING: "5000",
    TOLLGATE_SPOOL_FSYNC: "always",
    TOLLGATE_DRAIN_TIMEOUT_MS: "0",
  });
  assert.equal(config.spoolDir, "/var/lib/tollgate/spool", "under the data folder by default");
  assert.equal(config.usageMaxPending, 5000);
  assert.equal(config.spoolFsync, "always");
  assert.equal(config.drainTimeoutMs, 0);
  assert.equal(loadConfig({ TOLLGATE_SPOOL_FSYNC: "250" }).spoolFsync, 250);
  assert.equal(loadConfig({ TOLLGATE_SPOOL_DIR: "/fast/spool" }).spoolDir, "/fast/spool");
});

Deno.test("an in-memory data folder has no spool unless TOLLGATE_SPOOL_DIR names one", () => {
  assert.equal(loadConfig({ TOLLGATE_DATA_DIR: "memory://" }).spoolDir, null);
  assert.equal(
    loadConfig({ TOLLGATE_DATA_DIR: "memory://", TOLLGATE_SPOOL_DIR: "/tmp/spool" }).spoolDir,
    "/tmp/spool",
  );
});

Deno.test("bad spool and drain settings are named", () => {
  for (const fsync of ["sometimes", "0", "1.5", "-5"]) {
    const error = configErrorFor({ TOLLGATE_SPOOL_FSYNC: fsync });
    assert.deepEqual(namedVariables(error), ["TOLLGATE_SPOOL_FSYNC"], fsync);
    assert.match(error.message, /"always" or a whole number of milliseconds/);
  }
  assert.deepEqual(
    namedVariables(configErrorFor({
      TOLLGATE_DRAIN_TIMEOUT_MS: "-1",
      TOLLGATE_USAGE_MAX_PENDING: "0",
    })),
    ["TOLLGATE_DRAIN_TIMEOUT_MS", "TOLLGATE_USAGE_MAX_PENDING"],
  );
});

Deno.test("gateway settings are read from the environment, seconds become milliseconds", () => {
  const config = loadConfig({
    TOLLGATE_GATEWAY_PORT: "9000",
    TOLLGATE_HOST: "0.0.0.0",
    TOLLGATE_MAX_BODY_BYTES: "4096",
    TOLLGATE_UPSTREAM_TIMEOUT_S: "2.5",
    TOLLGATE_STREAM_TIMEOUT_S: "600",
    TOLLGATE_POLICY_RESYNC_S: "5",
    TOLLGATE_RETRY_BASE_MS: "50",
    TOLLGATE_RETRY_MAX_MS: "400",
    TOLLGATE_RETRY_AFTER_MAX_S: "1.5",
    TOLLGATE_USAGE_FLUSH_MS: "50",
    TOLLGATE_USAGE_BATCH: "10000",
    TOLLGATE_MOCK_PROVIDER: "no",
    TOLLGATE_SECRET: "",
    TOLLGATE_CONTROL_PORT: "not read by the gateway",
  });
  assert.equal(config.port, 9000);
  assert.deepEqual(config.backoff, { baseMs: 50, maxMs: 400, maxRetryAfterMs: 1_500 });
  assert.equal(config.hostname, "0.0.0.0");
  assert.equal(config.maxBodyBytes, 4096);
  assert.equal(config.upstreamTimeoutMs, 2500);
  assert.equal(config.streamTimeoutMs, 600_000);
  assert.equal(config.policyResyncMs, 5000);
  assert.equal(config.usageFlushMs, 50);
  assert.equal(config.usageBatchSize, 10_000);
  assert.equal(config.seedMockProvider, false);
  assert.equal(config.secret, undefined, "an empty variable counts as unset");
});

Deno.test("the mock model is seeded only on the embedded database", () => {
  for (const value of ["1", "true", "yes"]) {
    assert.equal(loadConfig({ TOLLGATE_MOCK_PROVIDER: value }).seedMockProvider, true, value);
  }
  for (const value of ["0", "false", "no"]) {
    assert.equal(loadConfig({ TOLLGATE_MOCK_PROVIDER: value }).seedMockProvider, false, value);
  }
  const external = loadConfig({
    DATABASE_URL: "postgres://tollgate@db.internal:5432/tollgate",
    TOLLGATE_MOCK_PROVIDER: "true",
  });
  assert.equal(external.databaseUrl, "postgres://tollgate@db.internal:5432/tollgate");
  assert.equal(external.seedMockProvider, false);
});

Deno.test("a bad gateway configuration names every bad variable at once", () => {
  const error = configErrorFor({
    TOLLGATE_GATEWAY_PORT: "abc",
    TOLLGATE_SECRET: "short",
    DATABASE_URL: "mysql://x",
    TOLLGATE_MAX_BODY_BYTES: "1.5",
    TOLLGATE_UPSTREAM_TIMEOUT_S: "-1",
    TOLLGATE_STREAM_TIMEOUT_S: "soon",
    TOLLGATE_USAGE_BATCH: "0",
    TOLLGATE_MOCK_PROVIDER: "maybe",
    TOLLGATE_USAGE_FLUSH_MS: "200",
  });
  assert.deepEqual(namedVariables(error), [
    "DATABASE_URL",
    "TOLLGATE_GATEWAY_PORT",
    "TOLLGATE_MAX_BODY_BYTES",
    "TOLLGATE_MOCK_PROVIDER",
    "TOLLGATE_SECRET",
    "TOLLGATE_STREAM_TIMEOUT_S",
    "TOLLGATE_UPSTREAM_TIMEOUT_S",
    "TOLLGATE_USAGE_BATCH",
  ]);
  for (const problem of error.problems) assert.ok(error.message.includes(problem));
  assert.match(error.message, /TOLLGATE_SECRET: must be at least 32 characters/);
  assert.match(error.message, /DATABASE_URL: must be a postgres:\/\/ URL/);
});

Deno.test("gateway ports outside 0..65535 or with a fraction are refused", () => {
  for (const port of ["-1", "65536", "80.5", "eighty"]) {
    assert.deepEqual(
      namedVariables(configErrorFor({ TOLLGATE_GATEWAY_PORT: port })),
      ["TOLLGATE_GATEWAY_PORT"],
      port,
    );
  }
});

Deno.test("a blank gateway port is not read as port 0 (a random free port)", () => {
  // Refusing it or treating it as unset are both fine; listening somewhere random is not.
  let port: number | undefined;
  try {
    port = loadConfig({ TOLLGATE_GATEWAY_PORT: " " }).port;
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    assert.deepEqual(namedVariables(error), ["TOLLGATE_GATEWAY_PORT"]);
  }
  if (port !== undefined) assert.equal(port, 8080);
});

Deno.test("DATABASE_URL must use the postgres:// or postgresql:// scheme", () => {
  for (const url of ["postgres://u@h:5432/db", "postgresql://u@h/db"]) {
    assert.equal(loadConfig({ DATABASE_URL: url }).databaseUrl, url);
  }
  for (const url of ["postgresxyz://h/db", "postgres.example.com", "mysql://x"]) {
    assert.deepEqual(namedVariables(configErrorFor({ DATABASE_URL: url })), ["DATABASE_URL"], url);
  }
});

Deno.test("the gateway configuration is frozen", () => {
  const config = loadConfig({});
  assert.ok(Object.isFrozen(config));
  assert.throws(() => {
    (config as { maxBodyBytes: number }).maxBodyBytes = 1;
  }, TypeError);
  assert.equal(config.maxBodyBytes, 10 * 1024 * 1024);
});
