/**
 * The double-entry, append-only ledger both planes post to. A transaction is
 * a set of entries sharing one transaction id whose amounts sum to zero; the
 * balance of every customer book it touches is updated in accounts.balance by
 * the same database transaction. A reference (a request id, a payment id)
 * makes posting idempotent: posting the same kind and reference again writes
 * nothing and returns the first transaction.
 *
 * Also the charge rules, pure and in integer microcents: a Standard-mode
 * request's charge and the BYOK routing fee.
 */
import { type Kysely, type Selectable, sql } from "kysely";
import type { Database, LedgerEntriesTable } from "./database.ts";

/**
 * revenue: operator fees; provider_costs: what is owed to upstream providers;
 * adjustments: the other side of an operator's manual adjustment; payments:
 * money received; refunds: charges the operator gave back (against revenue).
 */
export const SYSTEM_BOOKS = [
  "system:revenue",
  "system:provider_costs",
  "system:adjustments",
  "system:payments",
  "system:refunds",
] as const;
export type SystemBook = (typeof SYSTEM_BOOKS)[number];
/** An account's own book; its entries sum to the account's balance. */
export type CustomerBook = `customer:${string}`;
export type Book = SystemBook | CustomerBook;

export const LEDGER_KINDS = ["topup", "charge", "fee", "refund", "adjustment", "byok_fee"] as const;
export type LedgerKind = (typeof LEDGER_KINDS)[number];

export type LedgerEntry = Selectable<LedgerEntriesTable>;

export interface EntryInput {
  book: Book;
  /** For a customer book, its account (implied by the book); for a system book, who it concerns. */
  accountId?: string;
  /** Signed microcents: positive credits the book, negative debits it. Never zero. */
  amount: bigint;
}

export interface TransactionInput {
  kind: LedgerKind;
  /** At least two, each book at most once, summing to zero. */
  entries: readonly EntryInput[];
  /** Makes the posting idempotent per kind: the first post of a reference wins. */
  reference?: string | null;
  memo?: string | null;
}

export interface PostedTransaction {
  transactionId: string;
  /** False when the kind and reference had been posted before: nothing was written. */
  created: boolean;
  entries: LedgerEntry[];
  /** The balance of each customer account the transaction touches, after it. */
  balances: Map<string, bigint>;
}

/** A transaction that cannot be posted: a caller's mistake, never an expected outcome. */
export class LedgerError extends Error {
  override readonly name = "LedgerError";
}

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const CUSTOMER_PREFIX = "customer:";
const BASIS_POINTS_PER_UNIT = 10_000n;

export function customerBook(accountId: string): CustomerBook {
  return `${CUSTOMER_PREFIX}${accountId}`;
}

/**
 * Posts a transaction: checks it, inserts its entries under one new
 * transaction id and adds each customer book's total to its account's
 * balance, one update per account in id order (so concurrent posts lock
 * accounts in the same order). Runs in `db` when it is a transaction,
 * otherwise in a transaction of its own.
 *
 * Throws a LedgerError before writing anything when the transaction does not
 * balance or names an unknown kind or book. Reusing a reference with other
 * books also throws, after writing: the caller's transaction must roll back.
 */
export async function postTransaction(
  db: Kysely<Database>,
  input: TransactionInput,
): Promise<PostedTransaction> {
  if (!db.isTransaction) {
    return await db.transaction().execute((trx) => postTransaction(trx, input));
  }
  const rows = entryRows(input);
  const transactionId = crypto.randomUUID();
  const entries = await db.insertInto("ledger_entries")
    .values(rows.map((row) => ({ ...row, transaction_id: transactionId })))
    .onConflict((oc) =>
      oc.columns(["kind", "reference", "book"]).where("reference", "is not", null).doNothing()
    )
    .returningAll()
    .execute();
  if (entries.length === 0 && input.reference != null) {
    return await replay(db, input.kind, input.reference);
  }
  if (entries.length !== rows.length) {
    throw new LedgerError(
      `Cannot post ${input.kind} "${input.reference}": that reference was posted before ` +
        "with other books",
    );
  }
  return { transactionId, created: true, entries, balances: await applyBalances(db, entries) };
}

/** Checks a transaction and returns its rows, without the transaction id. */
function entryRows(input: TransactionInput) {
  const fail = (problem: string) => {
    throw new LedgerError(`Cannot post a ${input.kind} transaction: ${problem}`);
  };
  if (!(LEDGER_KINDS as readonly string[]).includes(input.kind)) fail("unknown kind");
  if (input.entries.length < 2) fail("it needs at least two entries");
  const books = new Set<string>();
  let sum = 0n;
  const rows = input.entries.map(({ book, accountId, amount }) => {
    if (books.has(book)) fail(`it names ${book} twice`);
    books.add(book);
    if (amount === 0n) fail(`the entry for ${book} is zero`);
    sum += amount;
    return {
      book,
      account_id: accountOf(book, accountId, fail),
      kind: input.kind,
      amount,
      reference: input.reference ?? null,
      memo: input.memo ?? null,
    };
  });
  if (sum !== 0n) fail(`its entries sum to ${sum} units, not 0`);
  return rows;
}

function accountOf(
  book: string,
  accountId: string | undefined,
  fail: (problem: string) => never,
): string | null {
  if (book.startsWith(CUSTOMER_PREFIX)) {
    const owner = book.slice(CUSTOMER_PREFIX.length);
    if (!UUID_PATTERN.test(owner)) fail(`${book} does not name an account id`);
    if (accountId !== undefined && accountId !== owner) {
      fail(`${book} belongs to ${owner}, not ${accountId}`);
    }
    return owner;
  }
  if (!(SYSTEM_BOOKS as readonly string[]).includes(book)) fail(`unknown book ${book}`);
  if (accountId !== undefined && !UUID_PATTERN.test(accountId)) {
    fail(`"${accountId}" is not an account id`);
  }
  return accountId ?? null;
}

async function applyBalances(
  trx: Kysely<Database>,
  entries: readonly LedgerEntry[],
): Promise<Map<string, bigint>> {
  const deltas = customerTotals(entries);
  const balances = new Map<string, bigint>();
  for (const accountId of [...deltas.keys()].sort()) {
    const { balance } = await trx.updateTable("accounts")
      .set((eb) => ({
        balance: eb("balance", "+", deltas.get(accountId)!),
        updated_at: sql<Date>`now()`,
      }))
      .where("id", "=", accountId)
      .returning("balance")
      .executeTakeFirstOrThrow();
    balances.set(accountId, balance);
  }
  return balances;
}

async function replay(
  trx: Kysely<Database>,
  kind: LedgerKind,
  reference: string,
): Promise<PostedTransaction> {
  const entries = await trx.selectFrom("ledger_entries").selectAll()
    .where("kind", "=", kind).where("reference", "=", reference).orderBy("id").execute();
  const first = entries[0];
  if (!first) throw new LedgerError(`Cannot find ${kind} "${reference}" after it conflicted`);
  const accountIds = [...customerTotals(entries).keys()];
  const accounts = accountIds.length === 0 ? [] : await trx.selectFrom("accounts")
    .select(["id", "balance"]).where("id", "in", accountIds).execute();
  return {
    transactionId: first.transaction_id,
    created: false,
    entries,
    balances: new Map(accounts.map((a) => [a.id, a.balance])),
  };
}

/** Each customer book's total, by account id. */
function customerTotals(entries: readonly LedgerEntry[]): Map<string, bigint> {
  const totals = new Map<string, bigint>();
  for (const entry of entries) {
    if (!entry.book.startsWith(CUSTOMER_PREFIX) || entry.account_id === null) continue;
    totals.set(entry.account_id, (totals.get(entry.account_id) ?? 0n) + entry.amount);
  }
  return totals;
}

/** What one request costs the customer, and the entries that charge it. */
export interface Charge {
  /** What is owed to the provider (zero in BYOK mode). */
  cost: bigint;
  /** The operator's fee. */
  fee: bigint;
  /** What the customer pays: cost + fee. */
  total: bigint;
  /** The transaction's entries; none when the total is zero (there is nothing to post). */
  entries: EntryInput[];
}

/**
 * A Standard-mode request: the customer is debited cost + fee, the provider
 * costs book credited the cost and revenue the fee, where the fee is
 * cost x feeBps / 10,000 rounded up to the next unit. Post it as a "charge".
 */
export function standardCharge(
  accountId: string,
  options: { cost: bigint; feeBps: number },
): Charge {
  const { cost } = options;
  const fee = feeOf(cost, options.feeBps);
  return {
    cost,
    fee,
    total: cost + fee,
    entries: nonZero([
      { book: customerBook(accountId), amount: -(cost + fee) },
      { book: "system:provider_costs", accountId, amount: cost },
      { book: "system:revenue", accountId, amount: fee },
    ]),
  };
}

/**
 * A BYOK request past the free requests: the customer is debited the routing
 * fee, wouldBeCost x feeBps / 10,000 rounded up, and revenue credited it.
 * Post it as a "byok_fee".
 */
export function byokFee(
  accountId: string,
  options: { wouldBeCost: bigint; feeBps: number },
): Charge {
  const fee = feeOf(options.wouldBeCost, options.feeBps);
  return {
    cost: 0n,
    fee,
    total: fee,
    entries: nonZero([
      { book: customerBook(accountId), amount: -fee },
      { book: "system:revenue", accountId, amount: fee },
    ]),
  };
}

/** `amount` x `bps` / 10,000, rounded up to the next unit. */
export function feeOf(amount: bigint, bps: number): bigint {
  if (amount < 0n) throw new RangeError(`Cannot take a fee on ${amount} units: it is negative`);
  if (!Number.isSafeInteger(bps) || bps < 0) {
    throw new RangeError(`Cannot take a fee of ${bps} basis points: expected a whole number >= 0`);
  }
  const product = amount * BigInt(bps);
  return (product + BASIS_POINTS_PER_UNIT - 1n) / BASIS_POINTS_PER_UNIT;
}

function nonZero(entries: EntryInput[]): EntryInput[] {
  return entries.filter((entry) => entry.amount !== 0n);
}
