/**
 * The money check under load, outside the test suite: several gateway
 * processes on one fresh Postgres database, many small prepaid accounts run
 * dry by concurrent requests (streamed and not), optionally a gateway killed
 * with SIGKILL mid-run and started again on the same spool. Then it counts
 * what must be zero: accounts that overspent, usage lost, requests billed
 * twice, answers left unbilled, a ledger that does not reconcile, money
 * still reserved after the gateways stopped.
 *
 *   deno run -A tests/bench/money_run.ts [--gateways 2] [--accounts 20] [--credit 0.002]
 *     [--concurrency 64] [--seconds 20] [--stream-share 0.5] [--kill-at 0] [--json]
 *
 * --kill-at S sends SIGKILL to the last gateway S seconds in and starts a new
 * one in its place (its requests in flight fail; the spool bills what the
 * upstream received). Exits 1 when any count that must be zero is not.
 */
import { parseArgs } from "node:util";
import { sql } from "kysely";
import { createDb } from "../../schema/db.ts";
import { generateSecret, hashSecret } from "../../schema/keys.ts";
import { customerBook, postTransaction } from "../../schema/ledger.ts";
import { formatUsd, parseUsd } from "../../schema/money.ts";
import { deriveServerKeys } from "../../schema/secrets.ts";
import { BENCH_SECRET, prepareDatabase } from "./database.ts";
import { type Child, startDeno, stopAll } from "./processes.ts";
import { startGateway } from "./targets.ts";
import { requestBody } from "./wrk.ts";

const { values: opts } = parseArgs({
  args: Deno.args,
  options: {
    gateways: { type: "string", default: "2" },
    accounts: { type: "string", default: "20" },
    credit: { type: "string", default: "0.002" },
    concurrency: { type: "string", default: "64" },
    seconds: { type: "string", default: "20" },
    "stream-share": { type: "string", default: "0.5" },
    "kill-at": { type: "string", default: "0" },
    "database-url": { type: "string" },
    json: { type: "boolean", default: false },
  },
});
const num = (name: keyof typeof opts) => {
  const value = Number(opts[name]);
  if (!Number.isFinite(value) || value < 0) {
    console.error(`--${name} "${opts[name]}": expected a number >= 0`);
    Deno.exit(2);
  }
  return value;
};
const gatewayCount = Math.max(1, num("gateways"));
const accountCount = Math.max(1, num("accounts"));
const concurrency = Math.max(1, num("concurrency"));
const seconds = num("seconds");
const streamShare = num("stream-share");
const killAt = num("kill-at");
const credit = parseUsd(String(opts.credit));
const MODEL = "gpt-4o-mini";
const progress = (message: string) => !opts.json && console.error(`# ${message}`);

const fake = await startDeno("fake", ["-A", "tests/bench/fake_upstream.ts", "--port", "0"], {
  ready: /listening on (http:\/\/\S+?)\/v1/,
});
const database = await prepareDatabase({
  pglite: false,
  adminUrl: opts["database-url"] ?? (Deno.env.get("DATABASE_URL") ||
    "postgres://postgres@127.0.0.1:5432/postgres"),
  upstreamUrl: `${fake.url}/v1`,
  model: MODEL,
});
const db = await createDb({
  databaseUrl: database.env.DATABASE_URL,
  dataDir: "memory://",
  maxConnections: 2,
});
let exitCode = 0;
try {
  const hashing = deriveServerKeys(BENCH_SECRET).hashing;
  const accounts: { id: string; secret: string }[] = [];
  for (let i = 0; i < accountCount; i++) {
    const { id } = await db.db.insertInto("accounts").values({ name: `money-run-${i}` })
      .returning("id").executeTakeFirstOrThrow();
    await postTransaction(db.db, {
      kind: "adjustment",
      entries: [
        { book: customerBook(id), amount: credit },
        { book: "system:adjustments", accountId: id, amount: -credit },
      ],
      memo: "money run credit",
    });
    const issued = generateSecret();
    await db.db.insertInto("api_keys").values({
      account_id: id,
      name: "money-run",
      key_hash: hashSecret(issued.secret, hashing),
      prefix: issued.prefix,
      last4: issued.last4,
    }).execute();
    accounts.push({ id, secret: issued.secret });
  }
  const gateways: Child[] = [];
  for (let i = 0; i < gatewayCount; i++) gateways.push(await startGateway(database.env, []));
  progress(
    `${gatewayCount} gateways, ${accountCount} accounts of ${formatUsd(credit)} USD, ` +
      `${concurrency} concurrent clients for ${seconds} s`,
  );

  const counts = { sent: 0, ok: 0, refused402: 0, otherStatus: 0, failed: 0, cut: 0 };
  const dry = new Set<number>();
  /** Other statuses, with one body each. */
  const other = new Map<number, string>();
  const deadline = performance.now() + seconds * 1000;
  let killed = false;
  const bodies = {
    plain: requestBody({ model: MODEL, stream: false, promptBytes: 256, maxTokens: 32 }),
    sse: requestBody({ model: MODEL, stream: true, promptBytes: 256, maxTokens: 32 }),
  };
  let next = 0;
  const worker = async (w: number) => {
    while (performance.now() < deadline && dry.size < accounts.length) {
      const n = next++;
      const a = n % accounts.length;
      if (dry.has(a)) continue;
      const gateway = gateways[(n + w) % gateways.length]!;
      const stream = Math.random() < streamShare;
      counts.sent++;
      try {
        const response = await fetch(`${gateway.url}/v1/chat/completions`, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            authorization: `Bearer ${accounts[a]!.secret}`,
          },
          body: stream ? bodies.sse : bodies.plain,
        });
        const text = await response.text();
        if (response.status === 200) {
          counts.ok++;
          if (stream && !text.includes("[DONE]")) counts.cut++;
        } else if (response.status === 402) {
          counts.refused402++;
          // The balance cannot cover a worst case: this account is done.
          dry.add(a);
        } else {
          counts.otherStatus++;
          other.set(response.status, text.slice(0, 200));
        }
      } catch {
        counts.failed++; // a killed gateway's requests in flight
      }
    }
  };
  const killer = killAt > 0 && gatewayCount > 0
    ? (async () => {
      await new Promise((resolve) => setTimeout(resolve, killAt * 1000));
      const victim = gateways[gateways.length - 1]!;
      Deno.kill(victim.pid, "SIGKILL");
      await victim.stop().catch(() => {});
      progress(`SIGKILL to gateway pid ${victim.pid}; starting another on its spool`);
      gateways[gateways.length - 1] = await startGateway(database.env, []);
      killed = true;
    })()
    : Promise.resolve();
  // While the load runs: how often some account had more leased out than its balance.
  const ids = accounts.map((a) => a.id);
  const live = { samples: 0, overcommitted: 0 };
  let loading = true;
  const sampler = (async () => {
    while (loading) {
      const { rows } = await sql<{ n: number }>`
        select count(*)::int4 as n from accounts
        where id = any(${ids}::uuid[]) and (balance < 0 or reserved > balance)
      `.execute(db.db);
      live.samples++;
      if (rows[0]!.n > 0) live.overcommitted++;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  })();
  await Promise.all([...Array.from({ length: concurrency }, (_, w) => worker(w)), killer]);
  loading = false;
  await sampler;
  const answered = (await (await fetch(`${fake.url}/stats`)).json()).answered as number;
  progress(`load done: ${counts.sent} sent, ${counts.ok} answered 200`);
  // Idle gateways give their leases back; a killed one's expire and are swept by the others.
  const reservedNow = async () => {
    const { rows } = await sql<{ reserved: string }>`
      select coalesce(sum(reserved), 0)::text as reserved from accounts
      where id = any(${ids}::uuid[])
    `.execute(db.db);
    return BigInt(rows[0]!.reserved);
  };
  const waitStarted = performance.now();
  while ((await reservedNow()) > 0n && performance.now() - waitStarted < 150_000) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  const reservedWaitS = Math.round((performance.now() - waitStarted) / 1000);
  progress(`leases back after ${reservedWaitS} s; stopping the gateways`);
  const logs = gateways.flatMap((g) => g.stderrTail?.() ?? []);
  await Promise.all(gateways.map((g) => g.stop()));

  const { rows: perAccount } = await sql<{
    id: string;
    balance: string;
    reserved: string;
    entries: string;
    charged: string;
    billed: string;
  }>`
    select a.id, a.balance::text, a.reserved::text,
      (select coalesce(sum(amount), 0) from ledger_entries l
        where l.book = 'customer:' || a.id)::text as entries,
      (select coalesce(-sum(amount), 0) from ledger_entries l
        where l.book = 'customer:' || a.id and l.kind in ('charge', 'byok_fee'))::text as charged,
      (select coalesce(sum(u.cost + u.fee), 0) from usage_events u
        where u.account_id = a.id and u.billing_mode = 'standard')::text as billed
    from accounts a where a.id = any(${ids}::uuid[])
  `.execute(db.db);
  const { rows: [usage] } = await sql<{
    rows: number;
    answered: number;
    interrupted: number;
    unbilled: number;
    mismatched: number;
  }>`
    select count(*)::int4 as rows,
      count(*) filter (where status = 200)::int4 as answered,
      count(*) filter (where error_code = 'interrupted')::int4 as interrupted,
      count(*) filter (where cost + fee > 0 and not exists (
        select 1 from ledger_entries l where l.kind in ('charge', 'byok_fee')
          and l.transaction_id = u.ledger_transaction_id and l.book = 'customer:' || u.account_id
      ))::int4 as unbilled,
      -- Charges whose customer entry is not minus the sum of the rows naming its transaction.
      (select count(*)::int4 from ledger_entries l
        left join (
          select ledger_transaction_id as tx, account_id, sum(cost + fee) as total
          from usage_events where ledger_transaction_id is not null group by 1, 2
        ) as r on r.tx = l.transaction_id and r.account_id = l.account_id
        where l.book like 'customer:%' and l.kind in ('charge', 'byok_fee')
          and -l.amount <> coalesce(r.total, 0)
      ) as mismatched
    from usage_events u where u.account_id = any(${ids}::uuid[])
  `.execute(db.db);
  const { rows: [ledger] } = await sql<{ total: string; unbalanced: number }>`
    select (select coalesce(sum(amount), 0) from ledger_entries)::text as total,
      (select count(*)::int4 from (
        select from ledger_entries group by transaction_id having sum(amount) <> 0
      ) as t) as unbalanced
  `.execute(db.db);

  const overspent = perAccount.filter((a) =>
    BigInt(a.balance) < 0n || BigInt(a.charged) > credit
  ).length;
  const unreconciled = perAccount.filter((a) => a.entries !== a.balance).length;
  const ledgerVsUsage = perAccount.filter((a) => a.charged !== a.billed).length;
  const stillReserved = perAccount.reduce((sum, a) => sum + BigInt(a.reserved), 0n);
  const reached = usage!.answered + usage!.interrupted;
  const report = {
    gateways: gatewayCount,
    accounts: accountCount,
    creditUsd: formatUsd(credit),
    killed,
    requests: counts,
    otherStatuses: Object.fromEntries(other),
    leasesBackAfterS: reservedWaitS,
    upstreamAnswered: answered,
    usageRows: usage!.rows,
    usageAnswered: usage!.answered,
    usageInterrupted: usage!.interrupted,
    accountsRunDry: dry.size,
    spentUsd: formatUsd(perAccount.reduce((sum, a) => sum + BigInt(a.charged), 0n)),
    liveSamples: live.samples,
    mustBeZero: {
      // Samples during the load in which some account had leased out more than its balance.
      samplesOvercommitted: live.overcommitted,
      accountsOverspent: overspent,
      // Answers the upstream gave with no usage row (answered or interrupted) to bill them.
      usageLost: Math.max(0, answered - reached),
      // Requests answered 200 to the client without a 200 usage row.
      answeredWithoutRow: Math.max(0, counts.ok - usage!.answered),
      // Charges that are not the sum of their requests' rows (a request billed twice, or not).
      chargesNotTheirRows: usage!.mismatched,
      rowsUnbilled: usage!.unbilled,
      accountsLedgerNotBalance: unreconciled,
      accountsLedgerNotUsage: ledgerVsUsage,
      ledgerSum: Number(ledger!.total),
      unbalancedTransactions: ledger!.unbalanced,
      reservedAfterStop: Number(stillReserved),
    },
  };
  const failures = Object.entries(report.mustBeZero).filter(([, v]) => v !== 0);
  if (opts.json) console.log(JSON.stringify(report, null, 2));
  else {
    console.log(
      `requests: ${counts.sent} sent, ${counts.ok} answered 200 (${counts.cut} streams cut), ` +
        `${counts.refused402} refused 402, ${counts.otherStatus} other status, ` +
        `${counts.failed} failed in flight`,
    );
    console.log(
      `upstream answered ${answered}; usage rows ${usage!.rows} (${usage!.answered} answered, ` +
        `${usage!.interrupted} interrupted); ${dry.size}/${accountCount} accounts ran dry; ` +
        `${report.spentUsd} USD spent of ${formatUsd(credit * BigInt(accountCount))}; ` +
        `${live.samples} samples of the balances during the load`,
    );
    for (const [status, body] of other) console.log(`status ${status}, for one: ${body}`);
    if (other.size > 0 && logs.length > 0) {
      console.log(`the gateways' last log lines:\n${logs.join("\n")}`);
    }
    for (const [name, value] of Object.entries(report.mustBeZero)) {
      console.log(
        `${name.padEnd(26)} ${String(value).padStart(8)}  ${value === 0 ? "ok" : "FAIL"}`,
      );
    }
  }
  if (failures.length > 0) exitCode = 1;
} finally {
  await db.close();
  await stopAll();
  await database.drop();
}
Deno.exit(exitCode);
