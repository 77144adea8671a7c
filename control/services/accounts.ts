/** Customer accounts: the owners of API keys and prepaid balances. */
import type { Kysely } from "kysely";
import { z } from "zod";
import type { Account, Database } from "../../schema/database.ts";
import { parseInput, textField } from "../errors.ts";
import { type AuditMeta, recordAudit } from "./audit.ts";

const createAccountInput = z.object({
  name: textField(200),
});

export interface CreateAccountInput {
  name: string;
}

/** Creates an active account with a zero balance. */
export async function createAccount(
  db: Kysely<Database>,
  input: CreateAccountInput,
  options: { audit: AuditMeta },
): Promise<Account> {
  const { name } = parseInput(createAccountInput, input);
  return await db.transaction().execute(async (trx) => {
    const account = await trx.insertInto("accounts").values({ name }).returningAll()
      .executeTakeFirstOrThrow();
    await recordAudit(trx, {
      ...options.audit,
      action: "account.create",
      targetType: "account",
      targetId: account.id,
      diff: { name },
    });
    return account;
  });
}

/** Every account, oldest first. */
export async function listAccounts(db: Kysely<Database>): Promise<Account[]> {
  return await db.selectFrom("accounts").selectAll().orderBy("created_at").orderBy("id").execute();
}
