/**
 * Runs the gateway as the bench runs it (fresh Postgres database, a priced
 * model on a given upstream, a funded key, metering and the spool on) and
 * keeps it up until interrupted, for harnesses outside the project such as
 * ../shared/bench/run.sh:
 *
 *   deno run -A tests/bench/serve.ts --upstream http://127.0.0.1:18080/v1 [--model gpt-4o-mini]
 *     [--port 8000] [--database-url postgres://...]
 *
 * Prints the gateway's URL, its API key and its pid, then waits; Ctrl-C (or
 * SIGTERM) stops the gateway and drops the database.
 */
import { parseArgs } from "node:util";
import { prepareDatabase } from "./database.ts";
import { startGateway } from "./targets.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    upstream: { type: "string" },
    model: { type: "string", default: "gpt-4o-mini" },
    port: { type: "string", default: "8000" },
    "database-url": { type: "string" },
  },
});
if (!values.upstream) {
  console.error("Cannot start without --upstream: the upstream's base URL, ending in /v1");
  Deno.exit(2);
}
const database = await prepareDatabase({
  pglite: false,
  adminUrl: values["database-url"] ?? (Deno.env.get("DATABASE_URL") ||
    "postgres://postgres@127.0.0.1:5432/postgres"),
  upstreamUrl: values.upstream,
  model: values.model,
});
const gateway = await startGateway(database.env, [], Number(values.port));
console.log(`gateway ${gateway.url}/v1 key ${database.apiKey} pid ${gateway.pid}`);

const stop = async () => {
  const events = await database.usageEvents();
  console.log(`usage events written: ${events}`);
  await gateway.stop();
  await database.drop();
  Deno.exit(0);
};
for (const signal of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(signal, stop);
