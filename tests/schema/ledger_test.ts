/**
 * The ledger both planes post to, on a real database (PGlite, or Postgres
 * with DATABASE_URL): balanced transactions only, balances cached in the same
 * transaction, idempotent references, append-only entries; and the charge
 * arithmetic, in integer units.
 */
import assert from "node:assert/strict";
import { type Kysely, sql } from "kysely";
import type { Database } from "../../schema/database.ts";
import {
  byokFee,
  customerBook,
  feeOf,
  LedgerError,
  postTransaction,
  standardCharge,
  type TransactionInput,
} from "../../schema/ledger.ts";
import { UNITS_PER_USD } from "../../schema/money.ts";
import { freshDatabase } from "../helpers/database.ts";

const ACCOUNT = "11111111-1111-4111-8111-111111111111";

Deno.test("the Standard charge debits cost plus the fee rounded up, and credits provider costs and revenue", () => {
  // [cost, fee bps, fee]
  const table: [bigint, number, bigint][] = [
    [1_000_000n, 550, 55_000n], // 0.01 USD at 5.5%
    [UNITS_PER_USD, 550, 5_500_000n],
    [1n, 550, 1n], // 0.055 units rounds up to one
    [19n, 550, 2n], // 1.045
    [20n, 500, 1n], // exactly 1
    [21n, 500, 2n], // 1.05
    [10_000n, 1, 1n],
    [9_999n, 1, 1n],
    [12_345n, 0, 0n],
    [9_000_000_000_000_000n, 10_000, 9_000_000_000_000_000n], // beyond 2^53: no float anywhere
  ];
  for (const [cost, feeBps, fee] of table) {
    const charge = standardCharge(ACCOUNT, { cost, feeBps });
    assert.equal(charge.fee, fee, `${cost} at ${feeBps} bps`);
    assert.equal(charge.total, cost + fee);
    assert.deepEqual(
      charge.entries,
      [
        { book: customerBook(ACCOUNT), amount: -(cost + fee) },
        { book: "system:provider_costs", accountId: ACCOUNT, amount: cost },
        ...(fee > 0n ? [{ book: "system:revenue", accountId: ACCOUNT, amount: fee }] : []),
      ],
      `${cost} at ${feeBps} bps`,
    );
    assert.equal(charge.entries.reduce((sum, e) => sum + e.amount, 0n), 0n);
  }
  assert.deepEqual(standardCharge(ACCOUNT, { cost: 0n, feeBps: 550 }).entries, []);
});

Deno.test("the BYOK fee is a share of the would-be cost, rounded up; nothing goes to provider costs", () => {
  const table: [bigint, number, bigint][] = [
    [UNITS_PER_USD, 500, 5_000_000n],
    [1n, 500, 1n],
    [20n, 500, 1n],
    [21n, 500, 2n],
    [0n, 500, 0n],
    [1_000n, 0, 0n],
  ];
  for (const [wouldBeCost, feeBps, fee] of table) {
    const charge = byokFee(ACCOUNT, { wouldBeCost, feeBps });
    assert.deepEqual(
      { cost: charge.cost, fee: charge.fee, total: charge.total },
      { cost: 0n, fee, total: fee },
    );
    assert.deepEqual(
      charge.entries,
      fee === 0n ? [] : [
        { book: customerBook(ACCOUNT), amount: -fee },
        { book: "system:revenue", accountId: ACCOUNT, amount: fee },
      ],
    );
  }
});

Deno.test("a fee is refused on a negative amount or a rate that is not whole basis points", () => {
  assert.throws(() => feeOf(-1n, 550), RangeError);
  for (const bps of [-1, 5.5, Number.NaN, Infinity]) {
    assert.throws(() => feeOf(100n, bps), RangeError, String(bps));
  }
});

async function withLedger(test: (db: Kysely<Database>) => Promise<void>): Promise<void> {
  const database = await freshDatabase();
  try {
    await test(database.db.db);
  } finally {
    await database.drop();
  }
}

async function newAccount(db: Kysely<Database>, name = "Acme"): Promise<string> {
  const row = await db.insertInto("accounts").values({ name }).returning("id")
    .executeTakeFirstOrThrow();
  return row.id;
}

async function balanceOf(db: Kysely<Database>, id: string): Promise<bigint> {
  const row = await db.selectFrom("accounts").select("balance").where("id", "=", id)
    .executeTakeFirstOrThrow();
  return row.balance;
}

async function entryCount(db: Kysely<Database>): Promise<number> {
  const rows = await db.selectFrom("ledger_entries").select("id").execute();
  return rows.length;
}

function topUp(accountId: string, amount: bigint, reference?: string): TransactionInput {
  return {
    kind: "topup",
    entries: [
      { book: customerBook(accountId), amount },
      { book: "system:payments", accountId, amount: -amount },
    ],
    reference,
  };
}

Deno.test("a transaction that does not balance is refused and writes nothing", async () => {
  await withLedger(async (db) => {
    const id = await newAccount(db);
    const refused: [TransactionInput, RegExp][] = [
      [{
        kind: "topup",
        entries: [
          { book: customerBook(id), amount: 100n },
          { book: "system:payments", amount: -99n },
        ],
      }, /sum to 1 units, not 0/],
      [{ kind: "topup", entries: [] }, /at least two entries/],
      [{
        kind: "adjustment",
        entries: [{ book: customerBook(id), amount: 0n }, {
          book: "system:adjustments",
          amount: 0n,
        }],
      }, /is zero/],
      [{
        kind: "charge",
        entries: [{ book: customerBook(id), amount: -5n }, { book: customerBook(id), amount: 5n }],
      }, /twice/],
      [{
        kind: "charge",
        entries: [
          { book: customerBook(id), amount: -5n },
          { book: "system:nowhere" as "system:revenue", amount: 5n },
        ],
      }, /unknown book/],
      [{
        kind: "charge",
        entries: [{ book: "customer:acme", amount: -5n }, { book: "system:revenue", amount: 5n }],
      }, /does not name an account id/],
      [{
        kind: "charge",
        entries: [
          { book: customerBook(id), accountId: ACCOUNT, amount: -5n },
          { book: "system:revenue", amount: 5n },
        ],
      }, /belongs to/],
      [{ ...topUp(id, 5n), kind: "gift" as "topup" }, /unknown kind/],
    ];
    for (const [input, message] of refused) {
      await assert.rejects(postTransaction(db, input), LedgerError);
      await assert.rejects(postTransaction(db, input), message);
    }
    assert.equal(await entryCount(db), 0);
    assert.equal(await balanceOf(db, id), 0n);
  });
});

Deno.test("a posted transaction updates the balance in the same database transaction", async () => {
  await withLedger(async (db) => {
    const id = await newAccount(db);
    const posted = await postTransaction(db, topUp(id, 10n * UNITS_PER_USD));
    assert.equal(posted.created, true);
    assert.deepEqual(posted.balances, new Map([[id, 10n * UNITS_PER_USD]]));
    assert.deepEqual(posted.entries.map((e) => [e.book, e.account_id, e.amount]), [
      [customerBook(id), id, 10n * UNITS_PER_USD],
      ["system:payments", id, -10n * UNITS_PER_USD],
    ]);
    assert.ok(posted.entries.every((e) => e.transaction_id === posted.transactionId));

    const charge = standardCharge(id, { cost: 1_000_000n, feeBps: 550 });
    await db.transaction().execute(async (trx) => {
      const inside = await postTransaction(trx, { kind: "charge", entries: charge.entries });
      assert.equal(await balanceOf(trx, id), 10n * UNITS_PER_USD - 1_055_000n);
      assert.deepEqual(inside.balances, new Map([[id, 10n * UNITS_PER_USD - 1_055_000n]]));
    });
    assert.equal(await balanceOf(db, id), 10n * UNITS_PER_USD - 1_055_000n);

    // A caller's transaction that fails takes its entries and the balance change with it.
    await assert.rejects(
      db.transaction().execute(async (trx) => {
        await postTransaction(trx, { kind: "charge", entries: charge.entries });
        throw new Error("the caller fails after posting");
      }),
      /the caller fails/,
    );
    assert.equal(await balanceOf(db, id), 10n * UNITS_PER_USD - 1_055_000n);
    assert.equal(await entryCount(db), 5);
  });
});

Deno.test("posting a reference again is a no-op that returns the first transaction", async () => {
  await withLedger(async (db) => {
    const id = await newAccount(db);
    const first = await postTransaction(db, topUp(id, 700n, "pay_123"));
    const again = await postTransaction(db, topUp(id, 700n, "pay_123"));
    assert.equal(again.created, false);
    assert.equal(again.transactionId, first.transactionId);
    assert.deepEqual(again.entries, first.entries);
    assert.deepEqual(again.balances, new Map([[id, 700n]]));
    // The first post wins, even when a retry carries another amount.
    const changed = await postTransaction(db, topUp(id, 900n, "pay_123"));
    assert.equal(changed.transactionId, first.transactionId);
    assert.equal(await balanceOf(db, id), 700n);
    assert.equal(await entryCount(db), 2);

    // The same reference under another kind is another transaction (a refund of a payment).
    const refund = await postTransaction(db, {
      kind: "refund",
      entries: [
        { book: customerBook(id), amount: -200n },
        { book: "system:payments", accountId: id, amount: 200n },
      ],
      reference: "pay_123",
    });
    assert.equal(refund.created, true);
    assert.notEqual(refund.transactionId, first.transactionId);
    assert.equal(await balanceOf(db, id), 500n);

    // Reusing a reference with other books is a caller's mistake, and rolls back.
    await assert.rejects(
      postTransaction(db, {
        kind: "topup",
        entries: [
          { book: customerBook(id), amount: 5n },
          { book: "system:adjustments", accountId: id, amount: -5n },
        ],
        reference: "pay_123",
      }),
      /posted before with other books/,
    );
    assert.equal(await entryCount(db), 4);
    assert.equal(await balanceOf(db, id), 500n);
  });
});

Deno.test("concurrent posts of one reference write it once", async () => {
  await withLedger(async (db) => {
    const id = await newAccount(db);
    const posts = await Promise.all(
      Array.from({ length: 8 }, () => postTransaction(db, topUp(id, 300n, "req_same"))),
    );
    assert.equal(posts.filter((p) => p.created).length, 1);
    assert.equal(new Set(posts.map((p) => p.transactionId)).size, 1);
    assert.equal(await balanceOf(db, id), 300n);
    assert.equal(await entryCount(db), 2);
  });
});

Deno.test("concurrent transfers between two accounts in both directions do not deadlock", async () => {
  await withLedger(async (db) => {
    const a = await newAccount(db, "a");
    const b = await newAccount(db, "b");
    await postTransaction(db, topUp(a, 1_000n));
    await postTransaction(db, topUp(b, 1_000n));
    const transfer = (from: string, to: string, amount: bigint): TransactionInput => ({
      kind: "adjustment",
      entries: [
        { book: customerBook(from), amount: -amount },
        { book: customerBook(to), amount },
      ],
    });
    const results = await Promise.allSettled(
      Array.from(
        { length: 20 },
        (_, i) => postTransaction(db, i % 2 ? transfer(a, b, 7n) : transfer(b, a, 3n)),
      ),
    );
    assert.deepEqual(results.flatMap((r) => r.status === "rejected" ? [String(r.reason)] : []), []);
    assert.equal(await balanceOf(db, a), 1_000n - 10n * 7n + 10n * 3n);
    assert.equal(await balanceOf(db, b), 1_000n + 10n * 7n - 10n * 3n);
  });
});

Deno.test("ledger entries cannot be updated or deleted, and the database refuses malformed ones", async () => {
  await withLedger(async (db) => {
    const id = await newAccount(db);
    const posted = await postTransaction(db, topUp(id, 5n));
    const entryId = posted.entries[0]!.id;
    await assert.rejects(
      db.updateTable("ledger_entries").set({ amount: 6n }).where("id", "=", entryId).execute(),
      /append-only/,
    );
    await assert.rejects(
      db.deleteFrom("ledger_entries").where("id", "=", entryId).execute(),
      /append-only/,
    );
    await assert.rejects(sql`truncate ledger_entries`.execute(db), /append-only/);

    const insert = (values: { book: string; account_id?: string | null; amount: bigint }) =>
      db.insertInto("ledger_entries")
        .values({ transaction_id: crypto.randomUUID(), kind: "adjustment", ...values }).execute();
    await assert.rejects(insert({ book: "system:revenue", amount: 0n }), /amount_nonzero/);
    await assert.rejects(insert({ book: customerBook(id), amount: 1n }), /customer_book/);
    const other = await newAccount(db, "other");
    await assert.rejects(
      insert({ book: customerBook(id), account_id: other, amount: 1n }),
      /customer_book/,
    );
    await assert.rejects(
      db.insertInto("ledger_entries").values({
        transaction_id: crypto.randomUUID(),
        kind: "gift",
        book: "system:revenue",
        amount: 1n,
      }).execute(),
      /kind_check/,
    );
    assert.deepEqual(
      (await db.selectFrom("ledger_entries").select("amount").orderBy("id").execute())
        .map((e) => e.amount),
      [5n, -5n],
    );
  });
});
