/** Helpers for testing a plane's loadConfig. */
import assert from "node:assert/strict";
import { ConfigError } from "../../schema/config.ts";

/** The ConfigError that `load(env)` throws. */
export function configErrorFor(
  load: (env: Record<string, string>) => unknown,
  env: Record<string, string>,
): ConfigError {
  try {
    load(env);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  assert.fail(`loadConfig accepted ${JSON.stringify(env)}`);
}

/** The variables a ConfigError's problems name (each problem starts with one). */
export function namedVariables(error: ConfigError): string[] {
  return [...new Set(error.problems.map((problem) => problem.split(":")[0]!))].sort();
}
