/**
 * The control plane's configuration: the shared settings and billing rates,
 * plus where to listen and the optional bootstrap admin token. Nothing else
 * in control/ reads the environment.
 */
import { z } from "zod";
import {
  type BillingConfig,
  billingConfig,
  billingEnvShape,
  parseEnv,
  portSetting,
  type SharedConfig,
  sharedConfig,
  sharedEnvShape,
} from "../schema/config.ts";

const controlEnvSchema = z.object({
  ...sharedEnvShape,
  ...billingEnvShape,
  TOLLGATE_CONTROL_PORT: portSetting(8081),
  TOLLGATE_HOST: z.string().min(1).default("127.0.0.1"),
  TOLLGATE_ADMIN_TOKEN: z.string().min(16, "must be at least 16 characters").optional(),
});

export interface ControlConfig extends SharedConfig {
  /** The port to listen on; 0 picks a free one. */
  port: number;
  hostname: string;
  /** A bootstrap operator token accepted in addition to the stored ones. */
  adminToken?: string;
  /** The operator fee, the BYOK routing fee and free requests. */
  billing: Readonly<BillingConfig>;
}

/** Reads the control plane's settings from `env`, or throws a ConfigError listing every problem. */
export function loadConfig(env: Record<string, string | undefined>): Readonly<ControlConfig> {
  const parsed = parseEnv(controlEnvSchema, env);
  return Object.freeze({
    ...sharedConfig(parsed),
    port: parsed.TOLLGATE_CONTROL_PORT,
    hostname: parsed.TOLLGATE_HOST,
    adminToken: parsed.TOLLGATE_ADMIN_TOKEN,
    billing: billingConfig(parsed),
  });
}
