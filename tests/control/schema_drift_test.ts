/**
 * The committed control/schema.graphql is what clients and reviewers read:
 * it must be exactly what the code prints (as `deno task schema` writes it).
 */
import assert from "node:assert/strict";
import { lexicographicSortSchema, printSchema } from "graphql";
import { schema } from "../../control/graphql/schema.ts";

Deno.test("control/schema.graphql is the schema the code defines", async () => {
  // The same printing as control/print_schema.ts, which writes the file when imported.
  const printed = printSchema(lexicographicSortSchema(schema));
  const committed = await Deno.readTextFile(
    new URL("../../control/schema.graphql", import.meta.url),
  );
  const withoutFinalNewline = committed.endsWith("\n") ? committed.slice(0, -1) : committed;
  if (withoutFinalNewline !== printed) {
    assert.fail(
      "control/schema.graphql is out of date: run `deno task schema` and commit it.\n" +
        firstDifference(withoutFinalNewline, printed),
    );
  }
});

/** The first line where the committed and printed schemas differ. */
function firstDifference(committed: string, printed: string): string {
  const a = committed.split("\n");
  const b = printed.split("\n");
  const index = Array.from({ length: Math.max(a.length, b.length) }, (_, i) => i)
    .find((i) => a[i] !== b[i]) ?? 0;
  return `First difference at line ${index + 1}:\n` +
    `  committed: ${a[index] ?? "(end of file)"}\n  printed:   ${b[index] ?? "(end of file)"}`;
}
