/**
 * Customer accounts and their members. An actor sees only the accounts it
 * is in (operators see all); an account it cannot see is reported exactly
 * like one that does not exist.
 *
 * Member rules: viewers and up read the members; admins add, re-role and
 * remove members below owner (they cannot grant, change or remove an owner);
 * owners do all of it; an account always keeps at least one owner (the owner
 * rows are locked while that is checked, so two owners demoting each other
 * at once cannot both succeed).
 */
import { type Kysely, type SelectQueryBuilder, sql } from "kysely";
import { z } from "zod";
import type { Account, Database } from "../../schema/database.ts";
import {
  type Actor,
  atLeast,
  MEMBER_ROLES,
  type Role,
  roleIn,
  visibleAccounts,
} from "../access.ts";
import {
  ForbiddenError,
  InvalidInputError,
  isUuid,
  NotFoundError,
  parseInput,
  textField,
} from "../errors.ts";
import { requireAccount } from "./account_scope.ts";
import { type AuditMeta, recordAudit } from "./audit.ts";
import {
  decodeCursor,
  encodeCursor,
  instantPart,
  type KeyPart,
  type KeysetWindow,
  keysetWindow,
  type PageRequest,
  TIMESTAMP_CURSOR_FORMAT,
} from "./pages.ts";
import { emailField, toUserView, USER_VIEW_COLUMNS, type UserView } from "./users.ts";

/** A row with its (created_at, id) key for its cursor: created_at to the microsecond, UTC. */
export interface Positioned {
  cursor_at: string;
}

const createAccountInput = z.object({
  name: textField(200),
});

export interface CreateAccountInput {
  name: string;
}

/**
 * Creates an active account with a zero balance. Operators and signed-in
 * users may; a user becomes its owner.
 */
export async function createAccount(
  db: Kysely<Database>,
  input: CreateAccountInput,
  options: { actor: Actor; audit: AuditMeta },
): Promise<Account> {
  const { actor } = options;
  if (actor.kind === "api_key") {
    throw new ForbiddenError("Only an operator or a signed-in user can create an account");
  }
  const { name } = parseInput(createAccountInput, input);
  return await db.transaction().execute(async (trx) => {
    const account = await trx.insertInto("accounts").values({ name }).returningAll()
      .executeTakeFirstOrThrow();
    if (actor.kind === "user") {
      await trx.insertInto("memberships")
        .values({ account_id: account.id, user_id: actor.userId, role: "owner" })
        .execute();
    }
    await recordAudit(trx, {
      ...options.audit,
      action: "account.create",
      targetType: "account",
      targetId: account.id,
      accountId: account.id,
      diff: actor.kind === "user" ? { name, owner: actor.userId } : { name },
    });
    return account;
  });
}

const ACCOUNTS = "accounts";
const MEMBERS = "members";

export function accountCursor(account: Account & Positioned): string {
  return encodeCursor(ACCOUNTS, [account.cursor_at, account.id]);
}

/** The accounts the actor can see, oldest first. */
export async function listAccounts(
  db: Kysely<Database>,
  actor: Actor,
  page: PageRequest,
): Promise<(Account & Positioned)[]> {
  const window = keysetWindow(page, "asc", createdKeyOf(ACCOUNTS));
  const visible = visibleAccounts(actor);
  if (visible !== "all" && visible.length === 0) return [];
  let query = db.selectFrom("accounts").selectAll()
    .select(cursorAt("accounts.created_at").as("cursor_at"));
  if (visible !== "all") query = query.where("accounts.id", "in", visible);
  return await createdOrder(query, { createdAt: "accounts.created_at", id: "accounts.id" }, window)
    .execute();
}

/** One account the actor can see; NotFoundError otherwise. */
export async function getAccount(db: Kysely<Database>, actor: Actor, id: string): Promise<Account> {
  await requireAccount(db, actor, id, "viewer");
  return await db.selectFrom("accounts").selectAll().where("id", "=", id)
    .executeTakeFirstOrThrow();
}

/** A member of an account: the user, their role, and since when. */
export interface Member {
  accountId: string;
  user: UserView;
  role: Role;
  createdAt: Date;
  cursorAt: string;
}

export function memberCursor(member: Member): string {
  return encodeCursor(MEMBERS, [member.cursorAt, member.user.id]);
}

/** An account's members, oldest first. Viewers and up. */
export async function listMembers(
  db: Kysely<Database>,
  actor: Actor,
  accountId: string,
  page: PageRequest,
): Promise<Member[]> {
  await requireAccount(db, actor, accountId, "viewer");
  const window = keysetWindow(page, "asc", createdKeyOf(MEMBERS));
  const rows = await createdOrder(
    memberQuery(db).where("memberships.account_id", "=", accountId),
    { createdAt: "memberships.created_at", id: "memberships.user_id" },
    window,
  ).execute();
  return rows.map(toMember);
}

const roleField = z.enum(MEMBER_ROLES, "must be owner, admin, member or viewer");

const addMemberInput = z.object({
  accountId: z.string(),
  email: emailField,
  role: roleField,
});

export interface AddMemberInput {
  accountId: string;
  email: string;
  role: string;
}

/** Adds an existing user, by email, to an account with a role. */
export async function addMember(
  db: Kysely<Database>,
  input: AddMemberInput,
  options: { actor: Actor; audit: AuditMeta },
): Promise<Member> {
  const { actor } = options;
  await requireAccount(db, actor, input.accountId, "admin");
  const { accountId, email, role } = parseInput(addMemberInput, input);
  mayAssign(actor, accountId, role);
  return await db.transaction().execute(async (trx) => {
    const user = await trx.selectFrom("users").select("id").where("email", "=", email)
      .executeTakeFirst();
    if (!user) throw new NotFoundError(`No user with email "${email}"`);
    const inserted = await trx.insertInto("memberships")
      .values({ account_id: accountId, user_id: user.id, role })
      .onConflict((oc) => oc.columns(["account_id", "user_id"]).doNothing())
      .returning("user_id")
      .executeTakeFirst();
    if (!inserted) {
      throw new InvalidInputError(
        "email: is already a member of the account; use updateMemberRole to change the role",
        "email",
      );
    }
    await recordAudit(trx, {
      ...options.audit,
      action: "member.add",
      targetType: "user",
      targetId: user.id,
      accountId,
      diff: { email, role },
    });
    return await member(trx, accountId, user.id);
  });
}

const updateMemberRoleInput = z.object({
  accountId: z.string(),
  userId: z.string(),
  role: roleField,
});

export interface UpdateMemberRoleInput {
  accountId: string;
  userId: string;
  role: string;
}

/** Changes a member's role; the last owner cannot be demoted. */
export async function updateMemberRole(
  db: Kysely<Database>,
  input: UpdateMemberRoleInput,
  options: { actor: Actor; audit: AuditMeta },
): Promise<Member> {
  const { actor } = options;
  await requireAccount(db, actor, input.accountId, "admin");
  const { accountId, userId, role } = parseInput(updateMemberRoleInput, input);
  mayAssign(actor, accountId, role);
  return await db.transaction().execute(async (trx) => {
    const current = await lockedMembership(trx, accountId, userId);
    mayChange(actor, accountId, current.role);
    if (current.role === role) return await member(trx, accountId, userId);
    if (current.role === "owner") await keepAnOwner(trx, accountId, "demote");
    await trx.updateTable("memberships").set({ role })
      .where("account_id", "=", accountId).where("user_id", "=", userId).execute();
    await recordAudit(trx, {
      ...options.audit,
      action: "member.update_role",
      targetType: "user",
      targetId: userId,
      accountId,
      diff: { role: [current.role, role] },
    });
    return await member(trx, accountId, userId);
  });
}

const removeMemberInput = z.object({ accountId: z.string(), userId: z.string() });

/** Removes a member and returns them as they were; the last owner cannot be removed. */
export async function removeMember(
  db: Kysely<Database>,
  input: { accountId: string; userId: string },
  options: { actor: Actor; audit: AuditMeta },
): Promise<Member> {
  const { actor } = options;
  await requireAccount(db, actor, input.accountId, "admin");
  const { accountId, userId } = parseInput(removeMemberInput, input);
  return await db.transaction().execute(async (trx) => {
    const current = await lockedMembership(trx, accountId, userId);
    mayChange(actor, accountId, current.role);
    if (current.role === "owner") await keepAnOwner(trx, accountId, "remove");
    const removed = await member(trx, accountId, userId);
    await trx.deleteFrom("memberships")
      .where("account_id", "=", accountId).where("user_id", "=", userId).execute();
    await recordAudit(trx, {
      ...options.audit,
      action: "member.remove",
      targetType: "user",
      targetId: userId,
      accountId,
      diff: { role: current.role },
    });
    return removed;
  });
}

/** Only owners grant the owner role. */
function mayAssign(actor: Actor, accountId: string, role: Role): void {
  if (role === "owner" && !atLeast(roleIn(actor, accountId) ?? "viewer", "owner")) {
    throw new ForbiddenError("Only an owner can make someone an owner");
  }
}

/** Only owners change or remove an owner. */
function mayChange(actor: Actor, accountId: string, targetRole: Role): void {
  if (targetRole === "owner" && !atLeast(roleIn(actor, accountId) ?? "viewer", "owner")) {
    throw new ForbiddenError("Only an owner can change or remove an owner");
  }
}

async function lockedMembership(
  trx: Kysely<Database>,
  accountId: string,
  userId: string,
): Promise<{ role: Role }> {
  const row = isUuid(userId)
    ? await trx.selectFrom("memberships").select("role")
      .where("account_id", "=", accountId).where("user_id", "=", userId)
      .forUpdate().executeTakeFirst()
    : undefined;
  if (!row) throw new NotFoundError(`No member with user id "${userId}" in the account`);
  return row;
}

/** Refuses to take away the account's last owner (locks the owner rows to count them). */
async function keepAnOwner(
  trx: Kysely<Database>,
  accountId: string,
  what: "demote" | "remove",
): Promise<void> {
  const owners = await trx.selectFrom("memberships").select("user_id")
    .where("account_id", "=", accountId).where("role", "=", "owner")
    .orderBy("user_id").forUpdate().execute();
  if (owners.length <= 1) {
    throw new ForbiddenError(
      `Cannot ${what} the account's last owner: make another member an owner first`,
    );
  }
}

function memberQuery(db: Kysely<Database>) {
  return db.selectFrom("memberships")
    .innerJoin("users", "users.id", "memberships.user_id")
    .select(USER_VIEW_COLUMNS)
    .select([
      "memberships.account_id",
      "memberships.role",
      "memberships.created_at as member_since",
      cursorAt("memberships.created_at").as("cursor_at"),
    ]);
}

type MemberRow = Awaited<ReturnType<ReturnType<typeof memberQuery>["executeTakeFirstOrThrow"]>>;

function toMember(row: MemberRow): Member {
  return {
    accountId: row.account_id,
    user: toUserView(row),
    role: row.role,
    createdAt: row.member_since,
    cursorAt: row.cursor_at,
  };
}

async function member(trx: Kysely<Database>, accountId: string, userId: string): Promise<Member> {
  return toMember(
    await memberQuery(trx)
      .where("memberships.account_id", "=", accountId)
      .where("memberships.user_id", "=", userId)
      .executeTakeFirstOrThrow(),
  );
}

/** The key of a list ordered by (created_at, uuid id). */
export interface CreatedKey {
  at: string;
  id: string;
}

/** Decodes cursors of the list named `list` into their (created_at, id) key. */
export function createdKeyOf(list: string) {
  return (cursor: string, field: "after" | "before"): CreatedKey => {
    const [at, id] = decodeCursor(list, cursor, [instantPart, uuidPart], field);
    return { at: at!, id: id! };
  };
}

const uuidPart: KeyPart = (part) => typeof part === "string" && isUuid(part) ? part : null;

/** A timestamptz column as a cursor's instant: microseconds, UTC. */
export function cursorAt(column: string) {
  return sql<string>`to_char(${sql.ref(column)} at time zone 'UTC', ${TIMESTAMP_CURSOR_FORMAT})`;
}

/** Applies a keyset window to a query ordered by the (created_at, id) columns named. */
export function createdOrder<DB, TB extends keyof DB, O>(
  query: SelectQueryBuilder<DB, TB, O>,
  columns: { createdAt: string; id: string },
  window: KeysetWindow<CreatedKey>,
): SelectQueryBuilder<DB, TB, O> {
  const createdAt = sql.ref(columns.createdAt);
  const id = sql.ref(columns.id);
  let q = query;
  for (
    const [key, op] of [[window.after, window.afterOp], [window.before, window.beforeOp]] as const
  ) {
    if (key === null) continue;
    // Bound as text: Postgres.js would pass a timestamptz parameter through a Date (milliseconds).
    q = q.where(
      sql<boolean>`(${createdAt}, ${id}) ${
        sql.raw(op)
      } (${key.at}::text::timestamptz, ${key.id}::uuid)`,
    );
  }
  const read = sql.raw(window.read);
  return q.orderBy(sql`${createdAt} ${read}, ${id} ${read}`).limit(window.limit);
}
