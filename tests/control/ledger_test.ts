/**
 * Balances and the ledger as an operator meets them: GraphQL requests to the
 * control plane's handler on a fresh database (PGlite, or Postgres with
 * DATABASE_URL).
 */
import assert from "node:assert/strict";
import { sql } from "kysely";
import { loadConfig } from "../../control/config.ts";
import { verifyAuditChain } from "../../control/services/audit.ts";
import { createYoga } from "../../control/yoga.ts";
import { createAllowanceStore } from "../../gateway/billing/allowance_store.ts";
import { customerBook } from "../../schema/ledger.ts";
import { deriveServerKeys } from "../../schema/secrets.ts";
import { executeAs, userWith } from "../helpers/as_actor.ts";
import { freshDatabase, type TestDatabase } from "../helpers/database.ts";

const SECRET = "ledger-test-secret-".padEnd(48, "x");
const ADMIN_TOKEN = "ledger-test-admin-token-0123456789";
const NO_SUCH_ID = "00000000-0000-4000-8000-000000000000";

interface Control {
  database: TestDatabase;
  graphql<T>(query: string, variables?: Record<string, unknown>, token?: string | null): Promise<{
    status: number;
    data?: T;
    errors?: { message: string; extensions?: Record<string, unknown> }[];
  }>;
}

async function withControl(test: (control: Control) => Promise<void>): Promise<void> {
  const database = await freshDatabase();
  const yoga = createYoga({
    db: database.db.db,
    keys: deriveServerKeys(SECRET),
    config: loadConfig({ TOLLGATE_DATA_DIR: "memory://", TOLLGATE_ADMIN_TOKEN: ADMIN_TOKEN }),
  });
  const graphql: Control["graphql"] = async (query, variables = {}, token = ADMIN_TOKEN) => {
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (token) headers.authorization = `Bearer ${token}`;
    const response = await yoga.fetch("http://control.test/graphql", {
      method: "POST",
      headers,
      body: JSON.stringify({ query, variables }),
    });
    return { status: response.status, ...await response.json() };
  };
  try {
    await test({ database, graphql });
  } finally {
    await database.drop();
  }
}

interface Adjusted {
  __typename: string;
  accountId?: string;
  transactionId?: string;
  balance?: string;
  message?: string;
  field?: string;
}

async function adjust(
  control: Control,
  input: { accountId: string; amount: string; reason?: string },
): Promise<Adjusted> {
  const result = await control.graphql<{ adjustBalance: Adjusted }>(
    `mutation ($input: AdjustBalanceInput!) { adjustBalance(input: $input) { __typename
      ... on BalanceAdjustment { accountId transactionId balance }
      ... on Error { message } ... on InvalidInputError { field } } }`,
    { input: { reason: "test", ...input } },
  );
  assert.equal(result.errors, undefined, JSON.stringify(result.errors));
  return result.data!.adjustBalance;
}

async function createAccount(control: Control, name = "Acme"): Promise<string> {
  const result = await control.graphql<{ createAccount: { id: string } }>(
    `mutation ($name: String!) { createAccount(input: { name: $name }) { ... on Account { id } } }`,
    { name },
  );
  return result.data!.createAccount.id;
}

async function balanceOf(control: Control, accountId: string): Promise<string> {
  const result = await control.graphql<{ account: { balance: string } }>(
    "query ($id: ID!) { account(id: $id) { balance } }",
    { id: accountId },
  );
  return result.data!.account.balance;
}

async function entryCount(control: Control): Promise<number> {
  return (await control.database.db.db.selectFrom("ledger_entries").select("id").execute()).length;
}

Deno.test("adjustBalance credits and debits an account through the ledger, with an audit row", async () => {
  await withControl(async (control) => {
    const accountId = await createAccount(control);
    const credit = await adjust(control, { accountId, amount: "10", reason: "welcome credit" });
    assert.equal(credit.__typename, "BalanceAdjustment");
    assert.equal(credit.accountId, accountId);
    assert.equal(credit.balance, "10.00000000");
    const debit = await adjust(control, { accountId, amount: "-2.5", reason: "goodwill reversal" });
    assert.equal(debit.balance, "7.50000000");
    assert.notEqual(debit.transactionId, credit.transactionId);
    assert.equal(await balanceOf(control, accountId), "7.50000000");

    const db = control.database.db.db;
    const entries = await db.selectFrom("ledger_entries").selectAll().orderBy("id").execute();
    assert.deepEqual(
      entries.map((e) => [e.transaction_id, e.kind, e.book, e.account_id, e.amount, e.memo]),
      [
        [
          credit.transactionId,
          "adjustment",
          customerBook(accountId),
          accountId,
          1_000_000_000n,
          "welcome credit",
        ],
        [
          credit.transactionId,
          "adjustment",
          "system:adjustments",
          accountId,
          -1_000_000_000n,
          "welcome credit",
        ],
        [
          debit.transactionId,
          "adjustment",
          customerBook(accountId),
          accountId,
          -250_000_000n,
          "goodwill reversal",
        ],
        [
          debit.transactionId,
          "adjustment",
          "system:adjustments",
          accountId,
          250_000_000n,
          "goodwill reversal",
        ],
      ],
    );

    const audit = await db.selectFrom("audit_log").selectAll()
      .where("action", "=", "account.adjust_balance").orderBy("id").execute();
    assert.deepEqual(
      audit.map((row) => [row.actor, row.target_type, row.target_id, row.diff]),
      [
        ["admin:configured", "account", accountId, {
          amount: "10.00000000",
          reason: "welcome credit",
          transactionId: credit.transactionId,
          balance: ["0.00000000", "10.00000000"],
        }],
        ["admin:configured", "account", accountId, {
          amount: "-2.50000000",
          reason: "goodwill reversal",
          transactionId: debit.transactionId,
          balance: ["10.00000000", "7.50000000"],
        }],
      ],
    );
    assert.deepEqual(await verifyAuditChain(db), { ok: true, rows: 3 });
  });
});

Deno.test("adjustBalance refuses bad amounts and reasons naming the field, and writes nothing", async () => {
  await withControl(async (control) => {
    const accountId = await createAccount(control);
    await adjust(control, { accountId, amount: "1" });
    const refused: [Record<string, string>, string, RegExp][] = [
      [{ amount: "0" }, "amount", /must not be zero/],
      [{ amount: "-0.00" }, "amount", /must not be zero/],
      [{ amount: "ten" }, "amount", /USD amount/],
      [{ amount: "1e3" }, "amount", /USD amount/],
      [{ amount: "" }, "amount", /USD amount/],
      [{ amount: "0.000000001" }, "amount", /8 decimals/],
      [{ amount: "1000000000.00000001" }, "amount", /at most 1000000000 USD/],
      [{ amount: "-1.00000001" }, "amount", /below zero/],
      [{ amount: "5", reason: "  " }, "reason", /must not be empty/],
      [{ amount: "5", reason: "x".repeat(501) }, "reason", /at most 500/],
    ];
    const before = await entryCount(control);
    for (const [input, field, message] of refused) {
      const result = await adjust(control, { accountId, amount: "1", ...input });
      assert.equal(result.__typename, "InvalidInputError", JSON.stringify(input));
      assert.equal(result.field, field, JSON.stringify(input));
      assert.match(result.message!, message, JSON.stringify(input));
    }
    assert.equal(await entryCount(control), before);
    assert.equal(await balanceOf(control, accountId), "1.00000000");

    const emptied = await adjust(control, { accountId, amount: "-1" });
    assert.equal(emptied.balance, "0.00000000", "a debit may take the balance to exactly zero");
  });
});

Deno.test("adjustBalance does not debit what the gateways hold reserved, and says how much it may", async () => {
  await withControl(async (control) => {
    const accountId = await createAccount(control);
    await adjust(control, { accountId, amount: "1" });
    // A gateway leases 0.25 USD of it (billing/allowance_store.ts).
    const lease = await createAllowanceStore(control.database.db.db).grow({
      accountId,
      leaseId: null,
      replicaId: "r",
      min: 25_000_000n,
      max: 25_000_000n,
      share: 1,
      ttlMs: 60_000,
    });
    assert.equal(lease?.amount, 25_000_000n);
    const before = await entryCount(control);
    const refused = await adjust(control, { accountId, amount: "-0.80" });
    assert.equal(refused.__typename, "InvalidInputError");
    assert.equal(refused.field, "amount");
    assert.match(refused.message!, /0\.25000000 USD .* reserved .* at most 0\.75000000 USD/);
    assert.equal(await entryCount(control), before);
    const debited = await adjust(control, { accountId, amount: "-0.75" });
    assert.equal(debited.balance, "0.25000000");
  });
});

Deno.test("adjustBalance on an unknown account is NotFoundError; without the admin token, 401", async () => {
  await withControl(async (control) => {
    for (const accountId of [NO_SUCH_ID, "not-a-uuid"]) {
      const result = await adjust(control, { accountId, amount: "5" });
      assert.equal(result.__typename, "NotFoundError", accountId);
      assert.match(result.message!, /No account with id/);
    }
    const accountId = await createAccount(control);
    for (const token of [null, "not-the-admin-token-0123456789"]) {
      const result = await control.graphql(
        `mutation ($id: ID!) { adjustBalance(input: { accountId: $id, amount: "5", reason: "x" }) {
          __typename } }`,
        { id: accountId },
        token,
      );
      assert.equal(result.status, 401);
      assert.equal(result.data ?? null, null);
    }
    assert.equal(await entryCount(control), 0);
  });
});

interface LedgerPage {
  edges: {
    cursor: string;
    node: { kind: string; amount: string; book: string; memo: string; transactionId: string };
  }[];
  pageInfo: { hasNextPage: boolean; endCursor: string | null };
}

Deno.test("ledgerEntries pages through an account's own book, newest first", async () => {
  await withControl(async (control) => {
    const accountId = await createAccount(control);
    const other = await createAccount(control, "Other");
    const amounts = ["5", "-1", "0.5", "2", "-0.25"];
    for (const [i, amount] of amounts.entries()) {
      await adjust(control, { accountId, amount, reason: `step ${i}` });
      await adjust(control, { accountId: other, amount: "1", reason: "elsewhere" });
    }
    const page = async (first: number | null, after: string | null) => {
      const result = await control.graphql<{ ledgerEntries: LedgerPage }>(
        `query ($id: ID!, $first: Int, $after: String) {
          ledgerEntries(accountId: $id, first: $first, after: $after) {
            edges { cursor node { kind amount book memo transactionId } }
            pageInfo { hasNextPage endCursor } } }`,
        { id: accountId, first, after },
      );
      assert.equal(result.errors, undefined, JSON.stringify(result.errors));
      return result.data!.ledgerEntries;
    };

    const seen: string[] = [];
    let after: string | null = null;
    const pages: boolean[] = [];
    for (;;) {
      const current: LedgerPage = await page(2, after);
      for (const { node, cursor } of current.edges) {
        assert.equal(node.kind, "adjustment");
        assert.equal(node.book, customerBook(accountId));
        assert.ok(cursor);
        seen.push(`${node.amount} ${node.memo}`);
      }
      pages.push(current.pageInfo.hasNextPage);
      if (!current.pageInfo.hasNextPage) break;
      after = current.pageInfo.endCursor;
    }
    assert.deepEqual(pages, [true, true, false]);
    assert.deepEqual(seen, [
      "-0.25000000 step 4",
      "2.00000000 step 3",
      "0.50000000 step 2",
      "-1.00000000 step 1",
      "5.00000000 step 0",
    ]);
    const all = await page(null, null);
    assert.equal(all.edges.length, 5, "the default page holds them all");
    assert.equal(all.pageInfo.hasNextPage, false);
  });
});

Deno.test("ledgerEntries refuses a bad cursor or page size, and an unknown account", async () => {
  await withControl(async (control) => {
    const accountId = await createAccount(control);
    const cases: [Record<string, unknown>, string][] = [
      [{ id: accountId, after: "not a cursor" }, "BAD_USER_INPUT"],
      [{ id: accountId, after: btoa("ledger_entry:12x") }, "BAD_USER_INPUT"],
      [{ id: accountId, first: 0 }, "BAD_USER_INPUT"],
      [{ id: accountId, first: 501 }, "BAD_USER_INPUT"],
      [{ id: NO_SUCH_ID }, "NOT_FOUND"],
      [{ id: "not-a-uuid" }, "NOT_FOUND"],
    ];
    for (const [variables, code] of cases) {
      const result = await control.graphql(
        `query ($id: ID!, $first: Int, $after: String) {
          ledgerEntries(accountId: $id, first: $first, after: $after) { edges { cursor } } }`,
        variables,
      );
      assert.equal(result.errors?.[0]?.extensions?.code, code, JSON.stringify(variables));
    }
  });
});

interface Reconciliation {
  balanced: boolean;
  entriesSum: string;
  unbalancedTransactions: number;
  accounts: {
    accountId: string;
    name: string;
    balance: string;
    entriesSum: string;
    balanced: boolean;
  }[];
}

async function reconcile(control: Control): Promise<Reconciliation> {
  const result = await control.graphql<{ ledgerReconciliation: Reconciliation }>(
    `{ ledgerReconciliation { balanced entriesSum unbalancedTransactions
      accounts { accountId name balance entriesSum balanced } } }`,
  );
  assert.equal(result.errors, undefined, JSON.stringify(result.errors));
  return result.data!.ledgerReconciliation;
}

Deno.test("ledgerReconciliation says balanced, then shows a tampered balance and an unbalanced entry", async () => {
  await withControl(async (control) => {
    assert.deepEqual(await reconcile(control), {
      balanced: true,
      entriesSum: "0.00000000",
      unbalancedTransactions: 0,
      accounts: [],
    });
    const acme = await createAccount(control, "Acme");
    const globex = await createAccount(control, "Globex");
    await adjust(control, { accountId: acme, amount: "10" });
    await adjust(control, { accountId: acme, amount: "-3" });
    await adjust(control, { accountId: globex, amount: "4.2" });
    assert.deepEqual(await reconcile(control), {
      balanced: true,
      entriesSum: "0.00000000",
      unbalancedTransactions: 0,
      accounts: [
        {
          accountId: acme,
          name: "Acme",
          balance: "7.00000000",
          entriesSum: "7.00000000",
          balanced: true,
        },
        {
          accountId: globex,
          name: "Globex",
          balance: "4.20000000",
          entriesSum: "4.20000000",
          balanced: true,
        },
      ],
    });

    const db = control.database.db.db;
    await sql`update accounts set balance = balance + 1 where id = ${acme}`.execute(db);
    const tampered = await reconcile(control);
    assert.equal(tampered.balanced, false);
    assert.deepEqual(
      tampered.accounts.map((a) => [a.name, a.balance, a.entriesSum, a.balanced]),
      [["Acme", "7.00000001", "7.00000000", false], ["Globex", "4.20000000", "4.20000000", true]],
    );
    assert.equal(tampered.entriesSum, "0.00000000");

    // Entries cannot be edited, but a one-sided one can be inserted behind the ledger's back.
    await db.insertInto("ledger_entries").values({
      transaction_id: crypto.randomUUID(),
      book: "system:revenue",
      kind: "fee",
      amount: 5n,
    }).execute();
    const oneSided = await reconcile(control);
    assert.equal(oneSided.entriesSum, "0.00000005");
    assert.equal(oneSided.unbalancedTransactions, 1);
  });
});

Deno.test("an account's viewers read its ledger entries, each read audited; reserved and available show the leases", async () => {
  await withControl(async (control) => {
    const db = control.database.db.db;
    const acme = await createAccount(control, "Acme");
    const globex = await createAccount(control, "Globex");
    await adjust(control, { accountId: acme, amount: "10" });
    await adjust(control, { accountId: globex, amount: "3" });
    // A gateway replica leases 2.5 USD of Acme's balance.
    await db.updateTable("accounts").set({ reserved: 250_000_000n }).where("id", "=", acme)
      .execute();

    const query = `query ($id: ID!) {
      account(id: $id) { balance reserved available }
      ledgerEntries(accountId: $id) { edges { node { amount book } } } }`;
    const viewer = userWith({ [acme]: "viewer" });
    const read = await executeAs<{
      account: Record<string, string>;
      ledgerEntries: { edges: { node: { amount: string; book: string } }[] };
    }>(db, viewer, query, { id: acme });
    assert.equal(read.errors, undefined, JSON.stringify(read.errors));
    assert.deepEqual(read.data!.account, {
      balance: "10.00000000",
      reserved: "2.50000000",
      available: "7.50000000",
    });
    assert.deepEqual(read.data!.ledgerEntries.edges.map((e) => e.node), [
      { amount: "10.00000000", book: customerBook(acme) },
    ]);

    const hidden = await executeAs(
      db,
      viewer,
      `query ($id: ID!) { ledgerEntries(accountId: $id) { edges { cursor } } }`,
      { id: globex },
    );
    assert.equal(hidden.errors?.[0]?.extensions?.code, "NOT_FOUND");

    const reads = await db.selectFrom("audit_log").selectAll().where("action", "=", "ledger.read")
      .execute();
    assert.deepEqual(reads.map((r) => [r.actor, r.account_id, r.target_id]), [
      [viewer.id, acme, acme],
    ]);
  });
});
