/**
 * The GraphQL endpoint: Yoga serving the Pothos schema at /graphql. Every
 * request must carry an operator credential (introspection too); expected
 * errors are typed results, anything unexpected is masked. Every response
 * carries an x-request-id.
 */
import { GraphQLError } from "graphql";
import { createYoga as createYogaServer, type Plugin, type YogaServerInstance } from "graphql-yoga";
import type { Kysely } from "kysely";
import type { Database } from "../schema/database.ts";
import type { ServerKeys } from "../schema/secrets.ts";
import { authenticate, createAdminTokenCache } from "./auth.ts";
import type { ControlConfig } from "./config.ts";
import type { Context } from "./graphql/builder.ts";
import { schema } from "./graphql/schema.ts";

export interface ControlDeps {
  db: Kysely<Database>;
  keys: ServerKeys;
  config: ControlConfig;
}

/** What the HTTP server passes along with each request. */
export interface ServerContext {
  /** The peer's address on the socket. */
  clientIp?: string | null;
}

export type ControlYoga = YogaServerInstance<ServerContext, Context>;

export function createYoga(deps: ControlDeps): ControlYoga {
  const tokens = createAdminTokenCache(deps.db);
  return createYogaServer<ServerContext, Context>({
    schema,
    graphqlEndpoint: "/graphql",
    graphiql: false,
    landingPage: false,
    batching: false,
    maskedErrors: true,
    plugins: [requestIdPlugin()],
    context: async ({ request, clientIp }) => {
      const actor = await authenticate(request, {
        keys: deps.keys,
        adminToken: deps.config.adminToken,
        tokens,
      });
      if (!actor) {
        throw new GraphQLError(
          "Authentication required: send Authorization: Bearer <admin token>",
          {
            extensions: {
              code: "UNAUTHENTICATED",
              http: { status: 401, headers: { "www-authenticate": 'Bearer realm="tollgate"' } },
            },
          },
        );
      }
      return {
        db: deps.db,
        keys: deps.keys,
        actor,
        requestId: requestIdOf(request),
        ip: clientIp ?? null,
      };
    },
  });
}

const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;
const requestIds = new WeakMap<Request, string>();

/** The request's id: its x-request-id when sane, otherwise a new one (kept per request). */
export function requestIdOf(request: Request): string {
  let id = requestIds.get(request);
  if (!id) {
    const incoming = request.headers.get("x-request-id");
    id = incoming && REQUEST_ID_PATTERN.test(incoming) ? incoming : crypto.randomUUID();
    requestIds.set(request, id);
  }
  return id;
}

function requestIdPlugin(): Plugin<Context, ServerContext> {
  return {
    onResponse({ request, response }) {
      response.headers.set("x-request-id", requestIdOf(request));
    },
  };
}
