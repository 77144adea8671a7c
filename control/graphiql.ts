/**
 * GraphiQL at /graphql for browsers, with nothing loaded from the network.
 *
 * @graphql-yoga/render-graphiql bundles GraphiQL, Monaco, its workers, fonts
 * and favicon into one module of strings (~9 MB), which its renderer inlines
 * into every page. We serve those strings instead as content-addressed,
 * immutable assets under /graphql/assets/, so the page itself is 1 kB, a
 * browser downloads the bundle once, and the page can carry a strict
 * Content-Security-Policy (scripts, workers and requests from this origin
 * only) that makes "no CDN" something the browser enforces. The module is
 * imported on the first GraphiQL request, not at start.
 *
 * The page and its assets need no credentials; the queries sent from it do
 * (the user pastes a token into the headers editor, which is not persisted).
 */
import type { GraphiQLOptions, Plugin } from "graphql-yoga";

/** Where the assets are served; under the GraphQL endpoint so one route covers both. */
export const ASSET_PREFIX = "/graphql/assets/";

/** The GraphiQL page's Content-Security-Policy. */
export const GRAPHIQL_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  // Monaco adds <style> elements at run time.
  "style-src 'self' 'unsafe-inline'",
  // The bundle's fonts and icons are data: URLs.
  "font-src 'self' data:",
  "img-src 'self' data:",
  "worker-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  // The page holds a token in its headers editor: no framing.
  "frame-ancestors 'none'",
].join("; ");

/** The options Yoga renders the page with. */
export function graphiqlOptions(): GraphiQLOptions {
  return {
    title: "Tollgate GraphiQL",
    defaultHeaders: JSON.stringify({ Authorization: "Bearer <your token>" }, null, 2),
    // A bearer token must not outlive the tab in localStorage.
    shouldPersistHeaders: false,
    defaultQuery:
      "# Put your token in Headers below, then run:\n{\n  me {\n    id\n    kind\n  }\n}\n",
    isHeadersEditorEnabled: true,
  };
}

interface Asset {
  body: Uint8Array<ArrayBuffer>;
  type: string;
}

interface Assets {
  /** File name (with its content hash) → asset. */
  byName: Map<string, Asset>;
  /** Logical name → its URL. */
  urls: Record<AssetKey, string>;
}

type AssetKey =
  | "js"
  | "css"
  | "favicon"
  | "start"
  | "editorWorkerService"
  | "json"
  | "graphql";

/**
 * Mounts GraphiQL's page options onto the bundle: Monaco's workers come from
 * our asset URLs (same origin, as the CSP allows), and the options from a
 * JSON data block in the page, so no inline script is needed.
 */
const START_SCRIPT = `(() => {
  const config = JSON.parse(document.getElementById("graphiql-config").textContent);
  self.MonacoEnvironment = {
    globalAPI: false,
    getWorkerUrl: (_moduleId, label) => config.workers[label],
  };
  YogaGraphiQL.renderYogaGraphiQL(document.getElementById("root"), config.options);
})();
`;

let loading: Promise<Assets> | null = null;

/** The bundle's assets, loaded and hashed once. */
function assets(): Promise<Assets> {
  loading ??= loadAssets().catch((error) => {
    loading = null;
    throw error;
  });
  return loading;
}

async function loadAssets(): Promise<Assets> {
  const bundle = await import("@graphql-yoga/render-graphiql/graphiql");
  const text = (source: string) => new TextEncoder().encode(source);
  const js = "text/javascript; charset=utf-8";
  const sources: [AssetKey, string, string, Uint8Array<ArrayBuffer>][] = [
    ["js", "graphiql.js", js, text(bundle.js)],
    ["css", "graphiql.css", "text/css; charset=utf-8", text(bundle.css)],
    ["favicon", "favicon.ico", "image/x-icon", dataUrlBytes(bundle.favicon)],
    ["start", "start.js", js, text(START_SCRIPT)],
    ["editorWorkerService", "editor.worker.js", js, text(bundle.editorWorkerService)],
    ["json", "json.worker.js", js, text(bundle.jsonWorker)],
    ["graphql", "graphql.worker.js", js, text(bundle.graphqlWorker)],
  ];
  const byName = new Map<string, Asset>();
  const urls = {} as Record<AssetKey, string>;
  for (const [key, name, type, body] of sources) {
    // graphiql.js -> graphiql.<hash>.js
    const dot = name.lastIndexOf(".");
    const file = `${name.slice(0, dot)}.${await shortHash(body)}${name.slice(dot)}`;
    byName.set(file, { body, type });
    urls[key] = ASSET_PREFIX + file;
  }
  return { byName, urls };
}

/** The GraphiQL page: a shell that loads the bundle from our own assets. */
export async function renderOfflineGraphiQL(options: GraphiQLOptions): Promise<string> {
  const { urls } = await assets();
  const config = {
    options,
    workers: {
      editorWorkerService: urls.editorWorkerService,
      json: urls.json,
      graphql: urls.graphql,
    },
  };
  // "<" escaped, so no string in the options can close the data block.
  const json = JSON.stringify(config).replaceAll("<", "\\u003c");
  return `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <title>${escapeHtml(options.title ?? "GraphiQL")}</title>
    <link rel="icon" href="${urls.favicon}" />
    <link rel="stylesheet" href="${urls.css}" />
  </head>
  <body id="body" class="no-focus-outline">
    <noscript>GraphiQL needs JavaScript.</noscript>
    <div id="root"></div>
    <script type="application/json" id="graphiql-config">${json}</script>
    <script src="${urls.js}"></script>
    <script src="${urls.start}"></script>
  </body>
</html>
`;
}

/**
 * Serves the assets under ASSET_PREFIX (before anything else Yoga does with
 * the request), and puts the CSP and friends on the GraphiQL page.
 */
export function graphiqlAssetsPlugin(): Plugin {
  return {
    async onRequest({ url, request, endResponse }) {
      if (!url.pathname.startsWith(ASSET_PREFIX)) return;
      const asset = (await assets()).byName.get(url.pathname.slice(ASSET_PREFIX.length));
      const readable = request.method === "GET" || request.method === "HEAD";
      if (!asset || !readable) {
        endResponse(
          new Response(asset ? "Method not allowed\n" : "Not found\n", {
            status: asset ? 405 : 404,
            headers: {
              "content-type": "text/plain; charset=utf-8",
              ...(asset ? { allow: "GET, HEAD" } : {}),
            },
          }),
        );
        return;
      }
      endResponse(
        new Response(request.method === "HEAD" ? null : asset.body, {
          headers: {
            "content-type": asset.type,
            "content-length": String(asset.body.byteLength),
            // The name carries the content's hash: it never changes under the same URL.
            "cache-control": "public, max-age=31536000, immutable",
            "x-content-type-options": "nosniff",
          },
        }),
      );
    },
    onResponse({ request, response }) {
      if (
        request.method !== "GET" || !response.headers.get("content-type")?.startsWith("text/html")
      ) {
        return;
      }
      response.headers.set("content-security-policy", GRAPHIQL_CSP);
      response.headers.set("x-content-type-options", "nosniff");
      response.headers.set("referrer-policy", "no-referrer");
      response.headers.set("cache-control", "no-cache");
    },
  };
}

async function shortHash(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest.slice(0, 6), (b) => b.toString(16).padStart(2, "0")).join("");
}

function dataUrlBytes(dataUrl: string): Uint8Array<ArrayBuffer> {
  const base64 = dataUrl.slice(dataUrl.indexOf(",") + 1);
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
}

function escapeHtml(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}
