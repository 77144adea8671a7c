// `deno task schema`: writes control/schema.graphql from the Pothos schema.
// With --check it writes nothing and exits 1 when the committed file is stale.
import { lexicographicSortSchema, printSchema } from "graphql";
import { schema } from "./graphql/schema.ts";

const path = new URL("./schema.graphql", import.meta.url);
const printed = printSchema(lexicographicSortSchema(schema)) + "\n";

if (Deno.args.includes("--check")) {
  let committed = "";
  try {
    committed = await Deno.readTextFile(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  if (committed !== printed) {
    console.error("control/schema.graphql is out of date: run `deno task schema` and commit it.");
    console.error(firstDifference(committed, printed));
    Deno.exit(1);
  }
  console.log("control/schema.graphql is up to date.");
} else {
  await Deno.writeTextFile(path, printed);
  console.log("Wrote control/schema.graphql.");
}

/** Where two texts first differ, as a short hint for the reader. */
function firstDifference(committed: string, printed: string): string {
  const a = committed.split("\n");
  const b = printed.split("\n");
  const line = a.findIndex((text, i) => text !== b[i]);
  const at = line < 0 ? a.length : line;
  return `First difference at line ${at + 1}:\n  committed: ${a[at] ?? "(end of file)"}\n` +
    `  generated: ${b[at] ?? "(end of file)"}`;
}
