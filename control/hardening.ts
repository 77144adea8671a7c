/**
 * The GraphQL endpoint's defences, as Yoga plugins:
 *
 * - CSRF: a request that a browser would send cross-site without a CORS
 *   preflight (a form post, a GET with no content type) is refused unless it
 *   carries a header a page cannot set without one. Mutations over GET are
 *   refused by Yoga itself (405), and batching is off in yoga.ts.
 * - graphql-armor's limits on depth, cost, aliases, directives and tokens,
 *   checked before the caller is even authenticated, so an expensive
 *   document costs us a parse and a walk, never a resolver. Each refusal
 *   names the limit it hit (`extensions.limit`, and its setting).
 * - Introspection per TOLLGATE_GRAPHQL_INTROSPECTION, never for anonymous
 *   callers. It is decided at execution, because validation runs before the
 *   context (and so the actor) exists.
 * - Unexpected errors (a database error in a resolver, a crash while
 *   authenticating) reach the client only as "Unexpected error." with the
 *   request id, and are logged with that id. Yoga's own masking stays on
 *   behind this as a safety net, but never sees one of these first.
 *
 * GraphiQL's offline page and assets are in graphiql.ts.
 */
import { EnvelopArmorPlugin } from "@escape.tech/graphql-armor";
import { useCSRFPrevention } from "@graphql-yoga/plugin-csrf-prevention";
import { type DocumentNode, GraphQLError, visit } from "graphql";
import { handleStreamOrSingleExecutionResult, type Plugin } from "graphql-yoga";
import type { Actor } from "./access.ts";
import type { GraphQLSettings, IntrospectionPolicy } from "./config.ts";
import { graphiqlAssetsPlugin } from "./graphiql.ts";

export { graphiqlOptions, renderOfflineGraphiQL } from "./graphiql.ts";

/**
 * Headers that make a cross-site browser request non-simple (so it needs a
 * preflight that our CORS answer controls). Any of them lets a request that
 * is not JSON through; JSON POSTs need none.
 */
export const CSRF_HEADERS = ["x-graphql-yoga-csrf", "apollo-require-preflight", "authorization"];

/** The part of the request context these plugins read. */
export interface HardeningContext {
  /** Null (or absent) for an anonymous caller. */
  actor?: Actor | null;
  requestId?: string;
}

export interface HardeningDeps {
  /** The request's id, as the rest of the endpoint reports it (x-request-id). */
  requestIdOf(request: Request): string;
  /** Where unexpected errors are logged (default: console.error). */
  log?: (message: string, error: unknown) => void;
}

/** Every hardening plugin, in the order Yoga must run them. */
export function hardeningPlugins(
  settings: Readonly<GraphQLSettings>,
  deps: HardeningDeps,
  // deno-lint-ignore no-explicit-any -- envelop's plugin types are invariant in the context.
): Plugin<any>[] {
  return [
    csrfPlugin(),
    armorPlugin(settings),
    introspectionPlugin(settings.introspection),
    unexpectedErrorsPlugin(deps),
    ...(settings.graphiql ? [graphiqlAssetsPlugin()] : []),
  ];
}

/** The code of a request refused as a possible cross-site request forgery. */
export const CSRF_REFUSED = "CSRF_REFUSED";

/**
 * Yoga's CSRF prevention, with a message that says what to send instead of
 * its "Required CSRF header(s) not present".
 */
function csrfPlugin(): Plugin {
  const { onRequestParse } = useCSRFPrevention({ requestHeaders: CSRF_HEADERS });
  return {
    onRequestParse(payload) {
      try {
        return onRequestParse!(payload);
      } catch {
        throw new GraphQLError(
          "Refused as a possible cross-site request: send a POST with Content-Type: " +
            "application/json, or an Authorization or X-GraphQL-Yoga-CSRF header.",
          { extensions: { code: CSRF_REFUSED, http: { status: 403 } } },
        );
      }
    },
  };
}

/** The code of every refusal by a query limit; `extensions.limit` says which. */
export const LIMIT_EXCEEDED = "GRAPHQL_LIMIT_EXCEEDED";

const LIMITS = {
  maxDepth: "TOLLGATE_GRAPHQL_MAX_DEPTH",
  maxCost: "TOLLGATE_GRAPHQL_MAX_COST",
  maxAliases: "TOLLGATE_GRAPHQL_MAX_ALIASES",
  maxDirectives: "TOLLGATE_GRAPHQL_MAX_DIRECTIVES",
  maxTokens: "TOLLGATE_GRAPHQL_MAX_TOKENS",
} as const;

type Limit = keyof typeof LIMITS;

/**
 * graphql-armor with our limits. Its own errors read "Syntax Error: Query
 * depth limit of 10 exceeded, found 12."; we report them without the
 * misleading prefix, with a code, the limit, its value and its setting.
 * They are reported as validation errors (the document is refused like any
 * invalid one) rather than thrown, which Yoga would treat as unexpected.
 */
function armorPlugin(settings: Readonly<GraphQLSettings>): Plugin {
  const reportTo = (limit: Limit) => ({
    propagateOnRejection: false,
    onReject: [
      (context: { reportError(error: GraphQLError): void } | null, error: GraphQLError) => {
        const refusal = limitError(limit, settings[limit], error.message);
        // Only the token limit runs while parsing, without a validation context: it must throw.
        if (!context) throw refusal;
        context.reportError(refusal);
      },
    ],
  });
  return EnvelopArmorPlugin({
    maxDepth: { n: settings.maxDepth, flattenFragments: true, ...reportTo("maxDepth") },
    costLimit: { maxCost: settings.maxCost, flattenFragments: true, ...reportTo("maxCost") },
    maxAliases: { n: settings.maxAliases, ...reportTo("maxAliases") },
    maxDirectives: { n: settings.maxDirectives, ...reportTo("maxDirectives") },
    maxTokens: { n: settings.maxTokens, ...reportTo("maxTokens") },
    // "Did you mean …" would describe the schema to callers who may not introspect it.
    blockFieldSuggestion: { enabled: true },
  }) as Plugin;
}

function limitError(limit: Limit, max: number, armorMessage: string): GraphQLError {
  return new GraphQLError(armorMessage.replace(/^Syntax Error: /, ""), {
    extensions: { code: LIMIT_EXCEEDED, limit, max, setting: LIMITS[limit] },
  });
}

/** Whether `actor` (null: anonymous) may introspect under `policy`. */
export function mayIntrospect(policy: IntrospectionPolicy, actor: Actor | null): boolean {
  if (!actor) return false;
  if (policy === "authenticated") return true;
  return policy === "operators" && actor.kind === "operator";
}

/** The code of a refused introspection query. */
export const INTROSPECTION_DISABLED = "INTROSPECTION_DISABLED";

function introspectionPlugin(policy: IntrospectionPolicy): Plugin<HardeningContext> {
  // Yoga caches parsed documents, so a document is walked once, not per request.
  const introspects = new WeakMap<DocumentNode, boolean>();
  return {
    onExecute({ args, setResultAndStopExecution }) {
      const actor = args.contextValue.actor ?? null;
      if (mayIntrospect(policy, actor)) return;
      let found = introspects.get(args.document);
      if (found === undefined) {
        found = isIntrospection(args.document);
        introspects.set(args.document, found);
      }
      if (found) setResultAndStopExecution({ errors: [introspectionRefusal(policy, actor)] });
    },
  };
}

/** True when the document asks for `__schema` or `__type` (`__typename` is not introspection). */
export function isIntrospection(document: DocumentNode): boolean {
  let found = false;
  visit(document, {
    Field(node) {
      if (node.name.value === "__schema" || node.name.value === "__type") {
        found = true;
        return false;
      }
      return undefined;
    },
  });
  return found;
}

function introspectionRefusal(policy: IntrospectionPolicy, actor: Actor | null): GraphQLError {
  const anonymous = !actor && policy !== "off";
  const message = anonymous
    ? "Introspection needs authentication: send Authorization: Bearer <token>."
    : policy === "operators"
    ? "Introspection is open to operators only on this server."
    : "Introspection is turned off on this server.";
  return new GraphQLError(message, {
    extensions: {
      code: INTROSPECTION_DISABLED,
      http: anonymous
        ? { status: 401, headers: { "www-authenticate": 'Bearer realm="tollgate"' } }
        : { status: 403 },
    },
  });
}

/** The message every unexpected error is replaced with. */
export const UNEXPECTED_MESSAGE = "Unexpected error.";

function unexpectedErrorsPlugin(deps: HardeningDeps): Plugin<HardeningContext> {
  const log = deps.log ?? ((message, error) => console.error(message, error));
  return {
    onPluginInit({ registerContextErrorHandler }) {
      // The context function failed (say, the database is down while it authenticates).
      registerContextErrorHandler(({ context, error, setError }) => {
        if (isExpected(error)) return;
        const requestId = deps.requestIdOf((context as { request: Request }).request);
        log(`Unexpected error in request ${requestId} before execution:`, error);
        setError(
          new GraphQLError(UNEXPECTED_MESSAGE, {
            // `unexpected` (which Yoga does not send) makes the answer a 500, as for Yoga's own.
            extensions: { code: "INTERNAL_SERVER_ERROR", requestId, unexpected: true },
          }),
        );
      });
    },
    onExecute() {
      return {
        onExecuteDone(payload) {
          return handleStreamOrSingleExecutionResult(payload, ({ args, result, setResult }) => {
            if (!result.errors?.some((error) => !isExpected(error))) return;
            const requestId = args.contextValue.requestId ?? "unknown";
            setResult({
              ...result,
              errors: result.errors.map((error) => {
                if (isExpected(error)) return error;
                const at = error.path ? ` at ${error.path.join(".")}` : "";
                log(`Unexpected error in request ${requestId}${at}:`, error.originalError ?? error);
                return new GraphQLError(UNEXPECTED_MESSAGE, {
                  nodes: error.nodes,
                  path: error.path,
                  extensions: { code: "INTERNAL_SERVER_ERROR", requestId },
                });
              }),
            });
          });
        },
      };
    },
  };
}

/**
 * An error we meant the client to see: a GraphQLError created as such, or
 * one graphql-js wrapped around a GraphQLError a resolver threw. Anything
 * else wraps an exception nobody chose to show (a driver error, a bug).
 */
function isExpected(error: unknown): boolean {
  if (!(error instanceof GraphQLError)) return false;
  return error.originalError == null || isExpected(error.originalError);
}
