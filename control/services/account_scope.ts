/**
 * The check every per-account read starts with: the actor may act in the
 * account with at least `minRole`, and the account exists. Another tenant's
 * account is reported exactly like a missing one (control/access.ts).
 */
import type { Kysely } from "kysely";
import type { Database } from "../../schema/database.ts";
import { type Actor, requireRole, type Role } from "../access.ts";
import { isUuid, NotFoundError } from "../errors.ts";

export async function requireAccount(
  db: Kysely<Database>,
  actor: Actor,
  accountId: string,
  minRole: Role,
): Promise<void> {
  const what = `account "${accountId}"`;
  requireRole(actor, accountId, minRole, what);
  const account = isUuid(accountId)
    ? await db.selectFrom("accounts").select("id").where("id", "=", accountId).executeTakeFirst()
    : undefined;
  if (!account) throw new NotFoundError(`${what} not found`);
}
