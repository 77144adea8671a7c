/** The billing settings both planes read: the operator fee, the BYOK fee and free requests. */
import assert from "node:assert/strict";
import { loadConfig as loadControlConfig } from "../../control/config.ts";
import { loadConfig as loadGatewayConfig } from "../../gateway/config.ts";
import { configErrorFor, namedVariables } from "../helpers/config_errors.ts";

const PLANES = [["gateway", loadGatewayConfig], ["control", loadControlConfig]] as const;

Deno.test("both planes default to a 5.5% fee, a 5% BYOK fee and 1,000,000 free BYOK requests", () => {
  for (const [plane, load] of PLANES) {
    const { billing } = load({});
    assert.deepEqual(
      billing,
      { standardFeeBps: 550, byokFeeBps: 500, byokFreeRequests: 1_000_000 },
      plane,
    );
    assert.ok(Object.isFrozen(billing), plane);
  }
});

Deno.test("both planes read the billing settings from the environment", () => {
  const env = {
    TOLLGATE_STANDARD_FEE_BPS: "0",
    TOLLGATE_BYOK_FEE_BPS: "10000",
    TOLLGATE_BYOK_FREE_REQUESTS: " 25 ",
  };
  for (const [plane, load] of PLANES) {
    assert.deepEqual(
      load(env).billing,
      { standardFeeBps: 0, byokFeeBps: 10_000, byokFreeRequests: 25 },
      plane,
    );
    assert.equal(load({ TOLLGATE_STANDARD_FEE_BPS: "" }).billing.standardFeeBps, 550, plane);
  }
});

Deno.test("bad billing settings are named, all at once, by both planes", () => {
  const bad = {
    TOLLGATE_STANDARD_FEE_BPS: "5.5",
    TOLLGATE_BYOK_FEE_BPS: "10001",
    TOLLGATE_BYOK_FREE_REQUESTS: "1e6",
  };
  for (const [plane, load] of PLANES) {
    const error = configErrorFor(load, bad);
    assert.deepEqual(namedVariables(error), Object.keys(bad).sort(), plane);
    assert.match(error.message, /TOLLGATE_STANDARD_FEE_BPS: must be basis points/);
    assert.match(error.message, /TOLLGATE_BYOK_FREE_REQUESTS: must be a whole number/);
    for (const value of ["-1", "abc", "0x10"]) {
      const refused = configErrorFor(load, { TOLLGATE_BYOK_FEE_BPS: value });
      assert.deepEqual(namedVariables(refused), ["TOLLGATE_BYOK_FEE_BPS"], `${plane} ${value}`);
    }
  }
});
