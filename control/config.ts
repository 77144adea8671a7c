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
import { type AuthConfig, authConfig, authEnvShape, checkAuthEnv } from "./credentials/config.ts";

/** Who may run an introspection query; anonymous callers never may. */
export const INTROSPECTION_POLICIES = ["authenticated", "operators", "off"] as const;
export type IntrospectionPolicy = typeof INTROSPECTION_POLICIES[number];

/** What the GraphQL endpoint accepts: graphql-armor's limits, introspection and GraphiQL. */
export interface GraphQLSettings {
  /** Deepest field nesting; fragments add no depth (a connection's node is 3 below its field). */
  maxDepth: number;
  /** graphql-armor's cost: objects 2, scalars 1, x1.5 per level, x `first:` when a literal. */
  maxCost: number;
  /** Aliased fields in one operation (`__typename` aliases are free). */
  maxAliases: number;
  maxDirectives: number;
  /** Lexical tokens in the document, checked while parsing. */
  maxTokens: number;
  introspection: IntrospectionPolicy;
  /** Serve GraphiQL (offline, no CDN) at /graphql to browsers. */
  graphiql: boolean;
}

/**
 * Room for the console's largest queries (a 500-row page of any list with
 * every field of its rows and of the objects they link to costs 24,000 to
 * 57,000; a list inside a list's node is depth 6 or 7) and for GraphiQL's
 * own introspection query (about 200 tokens; depth and cost skip it).
 */
export const GRAPHQL_DEFAULTS: Readonly<GraphQLSettings> = Object.freeze({
  maxDepth: 10,
  maxCost: 100_000,
  maxAliases: 15,
  maxDirectives: 20,
  maxTokens: 1_000,
  introspection: "authenticated",
  graphiql: true,
});

const LIMIT_MESSAGE = "must be a whole number from 1 to 1000000";

/** A positive limit in decimal digits, with a default. */
function limitSetting(fallback: number) {
  return z.string().regex(/^\d{1,7}$/, LIMIT_MESSAGE).transform(Number)
    .pipe(z.number().min(1, LIMIT_MESSAGE).max(1_000_000, LIMIT_MESSAGE)).default(fallback);
}

const onOff = z.enum(["on", "off", "true", "false", "1", "0", "yes", "no"], {
  message: "must be on or off",
}).transform((value) => ["on", "true", "1", "yes"].includes(value));

const graphqlEnvShape = {
  TOLLGATE_GRAPHQL_MAX_DEPTH: limitSetting(GRAPHQL_DEFAULTS.maxDepth),
  TOLLGATE_GRAPHQL_MAX_COST: limitSetting(GRAPHQL_DEFAULTS.maxCost),
  TOLLGATE_GRAPHQL_MAX_ALIASES: limitSetting(GRAPHQL_DEFAULTS.maxAliases),
  TOLLGATE_GRAPHQL_MAX_DIRECTIVES: limitSetting(GRAPHQL_DEFAULTS.maxDirectives),
  TOLLGATE_GRAPHQL_MAX_TOKENS: limitSetting(GRAPHQL_DEFAULTS.maxTokens),
  TOLLGATE_GRAPHQL_INTROSPECTION: z.enum(INTROSPECTION_POLICIES, {
    message: `must be one of ${INTROSPECTION_POLICIES.join(", ")}`,
  }).default(GRAPHQL_DEFAULTS.introspection),
  TOLLGATE_GRAPHIQL: onOff.default(GRAPHQL_DEFAULTS.graphiql),
} as const;

function graphqlSettings(
  env: z.infer<z.ZodObject<typeof graphqlEnvShape>>,
): Readonly<GraphQLSettings> {
  return Object.freeze({
    maxDepth: env.TOLLGATE_GRAPHQL_MAX_DEPTH,
    maxCost: env.TOLLGATE_GRAPHQL_MAX_COST,
    maxAliases: env.TOLLGATE_GRAPHQL_MAX_ALIASES,
    maxDirectives: env.TOLLGATE_GRAPHQL_MAX_DIRECTIVES,
    maxTokens: env.TOLLGATE_GRAPHQL_MAX_TOKENS,
    introspection: env.TOLLGATE_GRAPHQL_INTROSPECTION,
    graphiql: env.TOLLGATE_GRAPHIQL,
  });
}

const controlEnvSchema = z.object({
  ...sharedEnvShape,
  ...billingEnvShape,
  TOLLGATE_CONTROL_PORT: portSetting(8081),
  TOLLGATE_HOST: z.string().min(1).default("127.0.0.1"),
  TOLLGATE_ADMIN_TOKEN: z.string().min(16, "must be at least 16 characters").optional(),
  ...graphqlEnvShape,
  ...authEnvShape,
}).superRefine(checkAuthEnv);

export interface ControlConfig extends SharedConfig {
  /** The port to listen on; 0 picks a free one. */
  port: number;
  hostname: string;
  /** A bootstrap operator token accepted in addition to the stored ones. */
  adminToken?: string;
  /** The operator fee, the BYOK routing fee and free requests. */
  billing: Readonly<BillingConfig>;
  /** The GraphQL endpoint's limits, introspection and GraphiQL. Unset: GRAPHQL_DEFAULTS. */
  graphql?: Readonly<GraphQLSettings>;
  /**
   * Console sign-in: the access-token key and issuer, and an optional OIDC
   * issuer. Unset: a key derived from the server secret, issuer "tollgate".
   */
  auth?: Readonly<AuthConfig>;
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
    graphql: graphqlSettings(parsed),
    auth: authConfig(parsed),
  });
}
