/**
 * Runs a GraphQL operation against the schema with any actor, in process:
 * how tests see what a tenant (a console user or a management key) gets from
 * a resolver before sign-in reaches HTTP. The context holds what resolvers
 * read (db, keys, actor, request id, ip); the credential machinery is absent.
 */
import { type ExecutionResult, graphql } from "graphql";
import type { Kysely } from "kysely";
import type { Actor, Role } from "../../control/access.ts";
import type { Context } from "../../control/graphql/builder.ts";
import { schema } from "../../control/graphql/schema.ts";
import type { Database } from "../../schema/database.ts";
import { deriveServerKeys } from "../../schema/secrets.ts";

const KEYS = deriveServerKeys("as-actor-test-secret-".padEnd(48, "x"));

export const OPERATOR: Actor = { kind: "operator", id: "admin:configured" };

/** A console user with the given role in each account. */
export function userWith(roles: Record<string, Role>, userId = crypto.randomUUID()): Actor {
  return { kind: "user", id: `user:${userId}`, userId, roles: new Map(Object.entries(roles)) };
}

/**
 * Executes `source` as `actor`. The result is made plain JSON, as a client
 * would receive it (graphql-js builds objects without a prototype).
 */
export async function executeAs<T = Record<string, unknown>>(
  db: Kysely<Database>,
  actor: Actor,
  source: string,
  variableValues: Record<string, unknown> = {},
): Promise<ExecutionResult<T>> {
  const contextValue = {
    db,
    keys: KEYS,
    actor,
    requestId: crypto.randomUUID(),
    ip: "192.0.2.7",
  } as Partial<Context> as Context;
  const result = await graphql({ schema, source, variableValues, contextValue });
  return JSON.parse(JSON.stringify(result)) as ExecutionResult<T>;
}
