/**
 * The Pothos schema builder, its context and scalars. It defines no object
 * types: each graphql/types/<domain>.ts defines its own.
 *
 * Money is an integer number of microcents (schema/money.ts); on the wire it
 * is a USD decimal string with exactly 8 decimals ("2.50000000"), so no
 * client ever parses an amount as a float.
 */
import SchemaBuilder from "@pothos/core";
import ErrorsPlugin from "@pothos/plugin-errors";
import RelayPlugin from "@pothos/plugin-relay";
import { GraphQLError, Kind } from "graphql";
import type { Kysely } from "kysely";
import type { Database } from "../../schema/database.ts";
import { formatUsd, parseUsd } from "../../schema/money.ts";
import type { ServerKeys } from "../../schema/secrets.ts";
import type { Actor } from "../access.ts";
import type { ControlAuth } from "../auth.ts";
import type { AuditMeta } from "../services/audit.ts";

export interface Context {
  db: Kysely<Database>;
  keys: ServerKeys;
  /**
   * Who is calling. The context refuses an unauthenticated request (401)
   * unless its operation is only signIn/refreshSession: for those, and only
   * those, it is null at run time, and their resolvers never read it.
   */
  actor: Actor;
  /** The credential machinery: access-token keys, OIDC, the sign-in limiter. */
  auth: ControlAuth;
  requestId: string;
  /** The client's address, as seen by this server. */
  ip: string | null;
}

export const builder = new SchemaBuilder<{
  Context: Context;
  DefaultFieldNullability: false;
  Scalars: {
    ID: { Input: string; Output: string };
    DateTime: { Input: Date; Output: Date };
    Money: { Input: bigint; Output: bigint };
  };
}>({
  plugins: [ErrorsPlugin, RelayPlugin],
  defaultFieldNullability: false,
  errors: { directResult: true },
  // Lists are Relay connections (t.connection / resolveCursorConnection).
  relay: {
    clientMutationId: "omit",
    cursorType: "String",
    // Objects are fetched by their own queries; no global node(id:) lookup.
    nodeQueryOptions: false,
    nodesQueryOptions: false,
  },
});

builder.queryType({});
builder.mutationType({});

const ISO_DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/;

builder.scalarType("DateTime", {
  description: "An instant as an ISO 8601 string with a time zone, e.g. 2027-01-31T12:00:00Z.",
  serialize: (value) => value.toISOString(),
  parseValue: (value) => parseDateTime(value),
  parseLiteral: (ast) => parseDateTime(ast.kind === Kind.STRING ? ast.value : undefined),
});

builder.scalarType("Money", {
  description: 'An amount in USD as a decimal string with 8 decimals, e.g. "2.50000000". ' +
    "Stored exactly as integer units of 1e-8 USD.",
  serialize: (units) => formatUsd(units, 8),
  parseValue: (value) => parseMoney(value),
  parseLiteral: (ast) => parseMoney(ast.kind === Kind.STRING ? ast.value : undefined),
});

/** The audit part of a mutation: who, from where, in which request. */
export function auditMeta(ctx: Context): AuditMeta {
  return { actor: ctx.actor.id, ip: ctx.ip, requestId: ctx.requestId };
}

function parseDateTime(value: unknown): Date {
  const date = typeof value === "string" && ISO_DATE_TIME.test(value) ? new Date(value) : null;
  if (!date || Number.isNaN(date.getTime())) {
    throw new GraphQLError("DateTime must be an ISO 8601 string such as 2027-01-31T12:00:00Z");
  }
  return date;
}

function parseMoney(value: unknown): bigint {
  try {
    if (typeof value === "string") return parseUsd(value);
  } catch {
    // Reported below.
  }
  throw new GraphQLError('Money must be a decimal USD string such as "2.50"');
}
