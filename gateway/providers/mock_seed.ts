/**
 * Registers the offline `mock` provider and its model `tollgate-mock` when
 * they do not exist, so the embedded default answers with no network and no
 * setup. An operator's own rows with these names are left alone.
 */
import type { Kysely } from "kysely";
import type { Database } from "../../schema/database.ts";

export const MOCK_PROVIDER = "mock";
export const MOCK_MODEL = "tollgate-mock";

export async function seedMockProvider(db: Kysely<Database>): Promise<void> {
  await db.transaction().execute(async (trx) => {
    await trx.insertInto("providers").values({ name: MOCK_PROVIDER, kind: "mock", base_url: null })
      .onConflict((oc) => oc.column("name").doNothing()).execute();
    const provider = await trx.selectFrom("providers").select("id").where(
      "name",
      "=",
      MOCK_PROVIDER,
    )
      .executeTakeFirstOrThrow();
    // Priced like a small hosted model ($0.15 in, $0.60 out per million
    // tokens) so that metering and costs show real numbers.
    await trx.insertInto("models").values({
      name: MOCK_MODEL,
      provider_id: provider.id,
      upstream_name: "mock-1",
      input_price: 15_000_000n,
      output_price: 60_000_000n,
      cached_input_price: 7_500_000n,
      max_output_tokens: 4096,
    }).onConflict((oc) => oc.column("name").doNothing()).execute();
  });
}
