/**
 * Balances and the ledger: manual adjustments (operators only; audited, in
 * the same transaction as their entries), an account's entries page by page
 * (its viewers and up), and the reconciliation of cached balances against
 * entries (operators only).
 */
import { type Kysely, sql } from "kysely";
import { z } from "zod";
import type { Database } from "../../schema/database.ts";
import { customerBook, type LedgerEntry, postTransaction } from "../../schema/ledger.ts";
import { formatUsd, parseUsd, UNITS_PER_USD } from "../../schema/money.ts";
import { type Actor, requireOperator } from "../access.ts";
import { InvalidInputError, isUuid, NotFoundError, parseInput, textField } from "../errors.ts";
import { requireAccount } from "./account_scope.ts";
import { type AuditMeta, recordAudit, recordRead } from "./audit.ts";
import { decodeCursor, encodeCursor, idPart, keysetWindow, type PageRequest } from "./pages.ts";

export interface AdjustBalanceInput {
  accountId: string;
  /** A signed USD decimal: "10" credits, "-2.5" debits. */
  amount: string;
  reason: string;
}

export interface BalanceAdjustment {
  accountId: string;
  transactionId: string;
  /** The balance after the adjustment, in microcents. */
  balance: bigint;
}

/** The largest single adjustment, 1,000,000,000 USD: far inside int8. */
const MAX_ADJUSTMENT_UNITS = 1_000_000_000n * UNITS_PER_USD;

const signedUsd = z.string().transform((text, ctx) => {
  const units = parseUsdOrNull(text);
  if (units === null) {
    ctx.addIssue('must be a USD amount such as "10" or "-2.50" (8 decimals at most)');
  } else if (units === 0n) ctx.addIssue("must not be zero");
  else if (units > MAX_ADJUSTMENT_UNITS || -units > MAX_ADJUSTMENT_UNITS) {
    ctx.addIssue("must be at most 1000000000 USD either way");
  } else return units;
  return z.NEVER;
});

const adjustBalanceInput = z.object({
  accountId: z.string(),
  amount: signedUsd,
  reason: textField(500),
});

/**
 * Credits (positive amount) or debits an account by hand: a ledger
 * "adjustment" between its book and system:adjustments, with an audit row,
 * in one transaction. A debit may not take the balance below zero, nor below
 * what the gateways hold reserved against it (their leases): spent plus
 * reserved never exceeds credits.
 */
export async function adjustBalance(
  db: Kysely<Database>,
  input: AdjustBalanceInput,
  options: { actor: Actor; audit: AuditMeta },
): Promise<BalanceAdjustment> {
  requireOperator(options.actor, "adjust a balance");
  const { accountId, amount, reason } = parseInput(adjustBalanceInput, input);
  return await db.transaction().execute(async (trx) => {
    const account = isUuid(accountId)
      ? await trx.selectFrom("accounts").select(["id", "balance", "reserved"])
        .where("id", "=", accountId).forUpdate().executeTakeFirst()
      : undefined;
    if (!account) throw new NotFoundError(`No account with id "${accountId}"`);
    if (account.balance + amount < 0n) {
      throw new InvalidInputError(
        `amount: a debit of ${formatUsd(-amount, 8)} USD would take the balance ` +
          `(${formatUsd(account.balance, 8)} USD) below zero`,
        "amount",
      );
    }
    if (amount < 0n && account.balance - account.reserved + amount < 0n) {
      throw new InvalidInputError(
        `amount: ${formatUsd(account.reserved, 8)} USD of the balance ` +
          `(${formatUsd(account.balance, 8)} USD) is reserved by the gateways for requests in ` +
          `flight and their allowances; debit at most ` +
          `${formatUsd(account.balance - account.reserved, 8)} USD now, or retry once they ` +
          `are returned (idle allowances go back within a minute)`,
        "amount",
      );
    }
    const posted = await postTransaction(trx, {
      kind: "adjustment",
      entries: [
        { book: customerBook(account.id), amount },
        { book: "system:adjustments", accountId: account.id, amount: -amount },
      ],
      memo: reason,
    });
    const balance = posted.balances.get(account.id)!;
    await recordAudit(trx, {
      ...options.audit,
      action: "account.adjust_balance",
      targetType: "account",
      targetId: account.id,
      accountId: account.id,
      diff: {
        amount: formatUsd(amount, 8),
        reason,
        transactionId: posted.transactionId,
        balance: [formatUsd(account.balance, 8), formatUsd(balance, 8)],
      },
    });
    return { accountId: account.id, transactionId: posted.transactionId, balance };
  });
}

export interface RefundRequestInput {
  requestId: string;
  reason: string;
}

export interface RequestRefund {
  requestId: string;
  accountId: string;
  transactionId: string;
  /** What the request was charged and is given back, in microcents. */
  amount: bigint;
  /** The balance after the refund (now, when it was refunded before). */
  balance: bigint;
  /** False when the request had been refunded before: nothing was written. */
  created: boolean;
}

const refundRequestInput = z.object({
  requestId: textField(100),
  reason: textField(500),
});

/**
 * Gives back what one request was charged (operators only): a "refund"
 * transaction crediting the customer's book against system:refunds, posted
 * once per request id (refunding again returns the first refund), with an
 * audit row, in one transaction. A Standard request gets its cost and fee
 * back, a BYOK request its routing fee. The key's spend goes down by as much,
 * so a key spend limit counts only what the key still costs.
 */
export async function refundRequest(
  db: Kysely<Database>,
  input: RefundRequestInput,
  options: { actor: Actor; audit: AuditMeta },
): Promise<RequestRefund> {
  requireOperator(options.actor, "refund a request");
  const { requestId, reason } = parseInput(refundRequestInput, input);
  return await db.transaction().execute(async (trx) => {
    const usage = await trx.selectFrom("usage_events")
      .select(["request_id", "account_id", "api_key_id", "billing_mode", "cost", "fee"])
      .select("ledger_transaction_id")
      .where("request_id", "=", requestId).executeTakeFirst();
    if (!usage) {
      throw new NotFoundError(
        `No request with id "${requestId}" is metered (a request's usage is written within ` +
          "seconds of its end)",
      );
    }
    const amount = usage.billing_mode === "byok" ? usage.fee : BigInt(usage.cost) + usage.fee;
    if (usage.ledger_transaction_id === null || amount <= 0n) {
      throw new InvalidInputError(
        `requestId: request "${requestId}" was not charged, so there is nothing to refund`,
        "requestId",
      );
    }
    // Locks the account first, as settlement does (accounts, then keys).
    const posted = await postTransaction(trx, {
      kind: "refund",
      reference: requestId,
      entries: [
        { book: customerBook(usage.account_id), amount },
        { book: "system:refunds", accountId: usage.account_id, amount: -amount },
      ],
      memo: reason,
    });
    const balance = posted.balances.get(usage.account_id)!;
    const refund = {
      requestId,
      accountId: usage.account_id,
      transactionId: posted.transactionId,
      amount: -posted.entries.find((e) => e.book === "system:refunds")!.amount,
      balance,
      created: posted.created,
    };
    if (!posted.created) return refund;
    await trx.updateTable("api_keys")
      .set((eb) => ({ spent: sql<bigint>`greatest(${eb.ref("spent")} - ${amount}, 0)` }))
      .where("id", "=", usage.api_key_id).execute();
    await recordAudit(trx, {
      ...options.audit,
      action: "request.refund",
      targetType: "request",
      targetId: requestId,
      accountId: usage.account_id,
      diff: {
        amount: formatUsd(amount, 8),
        reason,
        transactionId: posted.transactionId,
        balance: [formatUsd(balance - amount, 8), formatUsd(balance, 8)],
      },
    });
    return refund;
  });
}

const LIST = "ledger_entry";

/** An entry's cursor: its id (entries are only ever appended, in id order). */
export function ledgerEntryCursor(entry: LedgerEntry): string {
  return encodeCursor(LIST, [entry.id.toString()]);
}

/**
 * One page of the entries of an account's own book, newest first: its
 * statement. Viewers and up read it; every read is audited ("ledger.read"),
 * this being how the ledger is exported.
 */
export async function listLedgerEntries(
  db: Kysely<Database>,
  accountId: string,
  page: PageRequest,
  options: { actor: Actor; audit: AuditMeta },
): Promise<LedgerEntry[]> {
  await requireAccount(db, options.actor, accountId, "viewer");
  const window = keysetWindow(
    page,
    "desc",
    (cursor, field) => BigInt(decodeCursor(LIST, cursor, [idPart], field)[0]!),
  );
  await recordRead(db, {
    ...options.audit,
    action: "ledger.read",
    targetType: "account",
    targetId: accountId,
    accountId,
    diff: {},
  });
  let query = db.selectFrom("ledger_entries").selectAll().where(
    "book",
    "=",
    customerBook(accountId),
  );
  if (window.after !== null) query = query.where("id", window.afterOp, window.after);
  if (window.before !== null) query = query.where("id", window.beforeOp, window.before);
  return await query.orderBy("id", window.read).limit(window.limit).execute();
}

export interface AccountReconciliation {
  accountId: string;
  name: string;
  /** The cached balance, accounts.balance. */
  balance: bigint;
  /** The sum of the entries of the account's own book. */
  entriesSum: bigint;
  balanced: boolean;
}

export interface Reconciliation {
  /** Every account balanced, every transaction and so the whole ledger summing to zero. */
  balanced: boolean;
  /** The sum of every entry in every book: zero in a sound ledger. */
  entriesSum: bigint;
  /** How many transactions' entries do not sum to zero. */
  unbalancedTransactions: number;
  accounts: AccountReconciliation[];
}

interface ReconciliationRow {
  entries_sum: bigint;
  unbalanced_transactions: number;
  account_id: string | null;
  name: string | null;
  balance: bigint | null;
  account_entries_sum: bigint | null;
}

/** Checks every cached balance against its book, and the whole ledger, in one query (operators only). */
export async function reconcileLedger(
  db: Kysely<Database>,
  options: { actor: Actor },
): Promise<Reconciliation> {
  requireOperator(options.actor, "reconcile the ledger");
  const { rows } = await sql<ReconciliationRow>`
    with books as (
      select book, sum(amount) as total from ledger_entries group by book
    ), unbalanced as (
      select count(*)::int4 as transactions from (
        select from ledger_entries group by transaction_id having sum(amount) <> 0
      ) as t
    ), totals as (
      select coalesce(sum(total), 0)::int8 as entries_sum from books
    )
    select totals.entries_sum, unbalanced.transactions as unbalanced_transactions,
      a.id as account_id, a.name, a.balance, a.account_entries_sum
    from totals cross join unbalanced left join (
      select accounts.id, accounts.name, accounts.balance, accounts.created_at,
        coalesce(books.total, 0)::int8 as account_entries_sum
      from accounts left join books on books.book = 'customer:' || accounts.id::text
    ) as a on true
    order by a.created_at, a.id`.execute(db);
  const first = rows[0]!;
  const accounts = rows.flatMap((row) =>
    row.account_id === null ? [] : [{
      accountId: row.account_id,
      name: row.name!,
      balance: row.balance!,
      entriesSum: row.account_entries_sum!,
      balanced: row.balance === row.account_entries_sum,
    }]
  );
  return {
    balanced: first.entries_sum === 0n && first.unbalanced_transactions === 0 &&
      accounts.every((a) => a.balanced),
    entriesSum: first.entries_sum,
    unbalancedTransactions: first.unbalanced_transactions,
    accounts,
  };
}

function parseUsdOrNull(text: string): bigint | null {
  try {
    return parseUsd(text);
  } catch {
    return null;
  }
}
