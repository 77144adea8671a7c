/**
 * The GraphQL endpoint: Yoga serving the Pothos schema at /graphql. Every
 * request must carry a credential (control/auth.ts), introspection too,
 * except a mutation of only signIn/refreshSession; expected errors are typed
 * results, anything unexpected is masked. Every response carries an
 * x-request-id.
 */
import { GraphQLError } from "graphql";
import { createYoga as createYogaServer, type Plugin, type YogaServerInstance } from "graphql-yoga";
import type { Kysely } from "kysely";
import type { Database } from "../schema/database.ts";
import type { ServerKeys } from "../schema/secrets.ts";
import { authenticate, type ControlAuth, createControlAuth, isAnonymousOperation } from "./auth.ts";
import { type ControlConfig, GRAPHQL_DEFAULTS } from "./config.ts";
import type { Actor } from "./access.ts";
import type { Context } from "./graphql/builder.ts";
import { schema } from "./graphql/schema.ts";
import { graphiqlOptions, hardeningPlugins, renderOfflineGraphiQL } from "./hardening.ts";

export interface ControlDeps {
  db: Kysely<Database>;
  keys: ServerKeys;
  config: ControlConfig;
  /** The credential machinery; made from keys and config when not given. */
  auth?: ControlAuth;
}

/** What the HTTP server passes along with each request. */
export interface ServerContext {
  /** The peer's address on the socket. */
  clientIp?: string | null;
}

export type ControlYoga = YogaServerInstance<ServerContext, Context>;

export function createYoga(deps: ControlDeps): ControlYoga {
  const graphql = deps.config.graphql ?? GRAPHQL_DEFAULTS;
  const auth = deps.auth ?? createControlAuth(deps);
  return createYogaServer<ServerContext, Context>({
    schema,
    graphqlEndpoint: "/graphql",
    // Offline GraphiQL for browsers (GET with Accept: text/html); control/graphiql.ts.
    graphiql: graphql.graphiql ? graphiqlOptions() : false,
    renderGraphiQL: renderOfflineGraphiQL,
    landingPage: false,
    batching: false,
    maskedErrors: true,
    // CSRF, graphql-armor's limits, introspection, unexpected errors: control/hardening.ts.
    plugins: [requestIdPlugin(), ...hardeningPlugins(graphql, { requestIdOf })],
    context: async ({ request, params, clientIp }) => {
      const ip = clientIp ?? null;
      const requestId = requestIdOf(request);
      const authentication = await authenticate(request, {
        db: deps.db,
        keys: deps.keys,
        adminToken: deps.config.adminToken,
        auth,
        ip,
        requestId,
      });
      const { actor } = authentication;
      // signIn and refreshSession need no credential (a stale one is ignored);
      // nothing else runs without one.
      if (!actor && !isAnonymousOperation(params)) {
        const { status, message } = authentication;
        throw new GraphQLError(message, {
          extensions: {
            code: status === 403 ? "FORBIDDEN" : "UNAUTHENTICATED",
            http: {
              status,
              headers: status === 401 ? { "www-authenticate": 'Bearer realm="tollgate"' } : {},
            },
          },
        });
      }
      // Null only for those two mutations, whose resolvers never read it (see Context).
      return { db: deps.db, keys: deps.keys, actor: actor as Actor, auth, requestId, ip };
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
