/**
 * The control plane's HTTP server: GraphQL at /graphql, a liveness check at
 * /healthz, and the access tokens' public key at /.well-known/jwks.json.
 */
import { createControlAuth, jwksResponse } from "./auth.ts";
import { type ControlDeps, createYoga, requestIdOf } from "./yoga.ts";

export interface ControlServer {
  /** The base URL, such as http://127.0.0.1:8081 (GraphQL is at `${url}/graphql`). */
  url: string;
  port: number;
  /** Stops accepting connections and waits for open requests to finish. */
  shutdown(): Promise<void>;
}

export async function startControl(
  deps: ControlDeps & { signal?: AbortSignal },
): Promise<ControlServer> {
  const auth = deps.auth ?? createControlAuth(deps);
  const yoga = createYoga({ ...deps, auth });
  const listening = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve(
    {
      port: deps.config.port,
      hostname: deps.config.hostname,
      signal: deps.signal,
      onListen: (addr) => listening.resolve(addr),
    },
    (request, info) => {
      const path = new URL(request.url).pathname;
      if (path === "/.well-known/jwks.json" && ["GET", "HEAD"].includes(request.method)) {
        return jwksResponse(auth, requestIdOf(request));
      }
      if (path === "/healthz" && ["GET", "HEAD"].includes(request.method)) {
        return new Response("ok", {
          headers: { "content-type": "text/plain", "x-request-id": requestIdOf(request) },
        });
      }
      return yoga.fetch(request, { clientIp: info.remoteAddr.hostname });
    },
  );
  const addr = await listening.promise;
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  let stopping: Promise<void> | null = null;
  return {
    url: `http://${host}:${addr.port}`,
    port: addr.port,
    shutdown() {
      stopping ??= deps.signal?.aborted ? server.finished : server.shutdown();
      return stopping;
    },
  };
}
