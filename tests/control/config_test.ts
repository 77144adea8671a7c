import assert from "node:assert/strict";
import { loadConfig } from "../../control/config.ts";
import { ConfigError } from "../../schema/config.ts";
import { configErrorFor as configErrorWith, namedVariables } from "../helpers/config_errors.ts";

const configErrorFor = (env: Record<string, string>) => configErrorWith(loadConfig, env);

Deno.test("the control plane listens on 127.0.0.1:8081 with an embedded database by default", () => {
  const config = loadConfig({});
  assert.deepEqual(config, {
    databaseUrl: undefined,
    dataDir: ".tollgate",
    pgliteDir: ".tollgate/pgdata",
    secret: undefined,
    port: 8081,
    hostname: "127.0.0.1",
    adminToken: undefined,
    kek: { TOLLGATE_KEK: undefined, TOLLGATE_KEK_ID: undefined, TOLLGATE_KEK_PREVIOUS: undefined },
    billing: { standardFeeBps: 550, byokFeeBps: 500, byokFreeRequests: 1_000_000 },
    auth: { jwtPrivateKey: undefined, jwtIssuer: "tollgate", oidc: undefined },
    graphql: {
      maxDepth: 10,
      maxCost: 100_000,
      maxAliases: 15,
      maxDirectives: 20,
      maxTokens: 1_000,
      introspection: "authenticated",
      graphiql: true,
    },
  });
});

Deno.test("control settings are read from the environment; empty variables count as unset", () => {
  const config = loadConfig({
    DATABASE_URL: "postgres://tollgate@db.internal:5432/tollgate",
    TOLLGATE_DATA_DIR: "/var/lib/tollgate",
    TOLLGATE_SECRET: "s".repeat(32),
    TOLLGATE_CONTROL_PORT: "9001",
    TOLLGATE_HOST: "",
    TOLLGATE_ADMIN_TOKEN: "a-long-enough-admin-token",
    TOLLGATE_GATEWAY_PORT: "not read by the control plane",
  });
  assert.equal(config.databaseUrl, "postgres://tollgate@db.internal:5432/tollgate");
  assert.equal(config.dataDir, "/var/lib/tollgate");
  assert.equal(config.pgliteDir, "/var/lib/tollgate/pgdata");
  assert.equal(config.secret, "s".repeat(32));
  assert.equal(config.port, 9001);
  assert.equal(config.hostname, "127.0.0.1");
  assert.equal(config.adminToken, "a-long-enough-admin-token");
  assert.equal(loadConfig({ TOLLGATE_DATA_DIR: "memory://" }).pgliteDir, "memory://");
  assert.equal(loadConfig({ TOLLGATE_CONTROL_PORT: "0" }).port, 0, "0 picks a free port");
});

Deno.test("a bad control configuration names every bad variable at once", () => {
  const bad = {
    TOLLGATE_CONTROL_PORT: "abc",
    TOLLGATE_SECRET: "short",
    DATABASE_URL: "mysql://x",
    TOLLGATE_ADMIN_TOKEN: "tiny",
    TOLLGATE_HOST: "0.0.0.0",
  };
  const error = configErrorFor(bad);
  assert.deepEqual(namedVariables(error), [
    "DATABASE_URL",
    "TOLLGATE_ADMIN_TOKEN",
    "TOLLGATE_CONTROL_PORT",
    "TOLLGATE_SECRET",
  ]);
  for (const problem of error.problems) assert.ok(error.message.includes(problem));
  assert.match(error.message, /TOLLGATE_CONTROL_PORT: must be a port number/);
  assert.match(error.message, /TOLLGATE_SECRET: must be at least 32 characters/);
  assert.match(error.message, /DATABASE_URL: must be a postgres:\/\/ URL/);
});

Deno.test("control ports outside 0..65535 or with a fraction are refused", () => {
  for (const port of ["-1", "65536", "80.5", "eighty"]) {
    const error = configErrorFor({ TOLLGATE_CONTROL_PORT: port });
    assert.deepEqual(namedVariables(error), ["TOLLGATE_CONTROL_PORT"], port);
  }
});

Deno.test("a blank control port is not read as port 0 (a random free port)", () => {
  // Refusing it or treating it as unset are both fine; listening somewhere random is not.
  let port: number | undefined;
  try {
    port = loadConfig({ TOLLGATE_CONTROL_PORT: " " }).port;
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    assert.deepEqual(namedVariables(error), ["TOLLGATE_CONTROL_PORT"]);
  }
  if (port !== undefined) assert.equal(port, 8081);
});

Deno.test("the control configuration is frozen", () => {
  const config = loadConfig({});
  assert.ok(Object.isFrozen(config));
  assert.throws(() => {
    (config as { port: number }).port = 1;
  }, TypeError);
  assert.equal(config.port, 8081);
});
