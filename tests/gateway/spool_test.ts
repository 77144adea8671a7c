import assert from "node:assert/strict";
import { sql } from "kysely";
import { openSpool, type Spool } from "../../gateway/metering/spool.ts";
import { replaySpool } from "../../gateway/metering/spool_replay.ts";
import { createUsageQueue, INTERRUPTED_OUTCOME } from "../../gateway/metering/usage_queue.ts";
import type { NewUsageEvent } from "../../schema/database.ts";
import { freshDatabase, POSTGRES_URL, type TestDatabase } from "../helpers/database.ts";

const quiet = () => {};

function usageRow(overrides: Partial<NewUsageEvent> = {}): NewUsageEvent {
  return {
    request_id: `req_${crypto.randomUUID().replaceAll("-", "")}`,
    account_id: crypto.randomUUID(),
    api_key_id: crypto.randomUUID(),
    agent_name: null,
    agent_purpose: null,
    agent_owner: null,
    endpoint: "/v1/chat/completions",
    model: "gpt-test",
    provider_id: crypto.randomUUID(),
    provider_name: "fake",
    upstream_model: "gpt-test-upstream",
    status: 200,
    error_code: null,
    stream: false,
    prompt_tokens: 11,
    completion_tokens: 7,
    cached_tokens: 0,
    total_tokens: 18,
    cost: 12_345n,
    billing_mode: "standard",
    fee: 679n,
    estimated: false,
    latency_ms: 42,
    ttfb_ms: 40,
    created_at: new Date("2026-11-22T10:00:00.123Z"),
    ...overrides,
  };
}

/** The row an intent records: billed as interrupted if no completion follows. */
function intentRow(overrides: Partial<NewUsageEvent> = {}): NewUsageEvent {
  return usageRow({
    status: INTERRUPTED_OUTCOME.status,
    error_code: INTERRUPTED_OUTCOME.errorCode,
    estimated: INTERRUPTED_OUTCOME.estimated,
    prompt_tokens: 300,
    completion_tokens: 0,
    total_tokens: 300,
    cost: 4_500n,
    fee: 248n,
    ttfb_ms: null,
    ...overrides,
  });
}

async function withSpoolDir(test: (dir: string, database: TestDatabase) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "tollgate-spool-" });
  const database = await freshDatabase();
  try {
    await test(dir, database);
  } finally {
    await database.drop();
    await Deno.remove(dir, { recursive: true });
  }
}

async function rows(database: TestDatabase) {
  const found = await database.db.db.selectFrom("usage_events").selectAll()
    .orderBy("request_id").execute();
  return found.map((row) => ({ ...row, created_at: new Date(row.created_at).toISOString() }));
}

/** The row an unbilled event makes (not charged: no ledger transaction). */
function asRow(event: NewUsageEvent) {
  return {
    ...event,
    created_at: new Date(event.created_at).toISOString(),
    ledger_transaction_id: null,
  };
}

async function files(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  return names.sort();
}

async function segmentFiles(dir: string): Promise<string[]> {
  return (await files(dir)).filter((name) => name.endsWith(".log")).map((name) => `${dir}/${name}`);
}

/** A spool closed with records it could not hand to the database: what a stopped gateway leaves. */
async function leftSpool(
  dir: string,
  write: (spool: Spool) => unknown,
): Promise<void> {
  const spool = await openSpool({ dir, fsync: "always", log: quiet });
  await write(spool);
  await spool.written();
  await spool.close();
}

const replay = (database: TestDatabase, dir: string) =>
  replaySpool(database.db.db, { dir, batchSize: 2, log: quiet });

Deno.test({
  name: "spooled completions and intents without one are inserted at the next start, then deleted",
  ignore: !POSTGRES_URL,
  async fn() {
    await withSpoolDir(async (dir, database) => {
      const completed = [usageRow(), usageRow({ stream: true, error_code: "client_cancelled" })];
      const interrupted = intentRow({ model: "modèle ✓" });
      await leftSpool(dir, async (spool) => {
        for (const event of completed) {
          void spool.intent(intentRow({ request_id: event.request_id }));
          spool.complete(event);
        }
        await spool.intent(interrupted);
      });

      const result = await replay(database, dir);

      assert.deepEqual(result, {
        replicas: 1,
        completed: 2,
        interrupted: 1,
        refused: 0,
        skipped: 0,
      });
      assert.deepEqual(
        await rows(database),
        [...completed, interrupted].map(asRow).sort((a, b) => a.request_id < b.request_id ? -1 : 1),
      );
      assert.deepEqual(await files(dir), [], "the replayed spool is deleted");
    });
  },
});

Deno.test({
  name: "a torn last line (a crash mid-write) is skipped and the lines before it are replayed",
  ignore: !POSTGRES_URL,
  async fn() {
    await withSpoolDir(async (dir, database) => {
      const events = [usageRow(), usageRow()];
      await leftSpool(dir, (spool) => {
        for (const event of events) spool.complete(event);
      });
      const [segment] = await segmentFiles(dir);
      const whole = await Deno.readFile(segment!);
      const torn = whole.subarray(0, whole.indexOf(10) + 1 + 60); // line 1, then 60 bytes of line 2
      await Deno.writeFile(segment!, torn);

      const result = await replay(database, dir);

      assert.equal(result.skipped, 1);
      assert.deepEqual((await rows(database)).map((row) => row.request_id), [
        events[0]!.request_id,
      ]);
    });
  },
});

Deno.test({
  name: "a line whose checksum does not match is skipped, the others are replayed",
  ignore: !POSTGRES_URL,
  async fn() {
    await withSpoolDir(async (dir, database) => {
      const events = [usageRow(), usageRow({ prompt_tokens: 11 }), usageRow()];
      await leftSpool(dir, (spool) => {
        for (const event of events) spool.complete(event);
      });
      const [segment] = await segmentFiles(dir);
      const lines = (await Deno.readTextFile(segment!)).split("\n");
      lines[1] = lines[1]!.replace('"prompt_tokens":11', '"prompt_tokens":99');
      await Deno.writeTextFile(segment!, lines.join("\n"));

      const result = await replay(database, dir);

      assert.deepEqual(result, {
        replicas: 1,
        completed: 2,
        interrupted: 0,
        refused: 0,
        skipped: 1,
      });
      assert.deepEqual(
        (await rows(database)).map((row) => row.request_id),
        [events[0]!.request_id, events[2]!.request_id].sort(),
      );
    });
  },
});

Deno.test({
  name: "an event the database refuses is set aside in refused.jsonl and blocks no other",
  ignore: !POSTGRES_URL,
  async fn() {
    await withSpoolDir(async (dir, database) => {
      // An agent is recorded for its account, which this database does not have.
      const refused = usageRow({ agent_name: "crawler" });
      const fine = [usageRow(), usageRow()];
      await leftSpool(dir, (spool) => {
        for (const event of [fine[0]!, refused, fine[1]!]) spool.complete(event);
      });

      const result = await replay(database, dir);

      assert.equal(result.refused, 1);
      assert.deepEqual(
        (await rows(database)).map((row) => row.request_id),
        fine.map((event) => event.request_id).sort(),
      );
      const [line, ...more] = (await Deno.readTextFile(`${dir}/refused.jsonl`)).trim().split("\n");
      assert.deepEqual(more, []);
      const kept = JSON.parse(line!);
      assert.equal(kept.event.request_id, refused.request_id);
      assert.match(kept.error, /agents_account_id_fkey|foreign key/);
    });
  },
});

Deno.test({
  name: "replaying the same spool twice leaves the same rows",
  ignore: !POSTGRES_URL,
  async fn() {
    await withSpoolDir(async (dir, database) => {
      const completed = usageRow();
      await leftSpool(dir, async (spool) => {
        void spool.intent(intentRow({ request_id: completed.request_id }));
        spool.complete(completed);
        await spool.intent(intentRow());
      });
      const saved = new Map<string, Uint8Array>();
      for (const name of await files(dir)) saved.set(name, await Deno.readFile(`${dir}/${name}`));

      await replay(database, dir);
      const first = await rows(database);
      for (const [name, bytes] of saved) await Deno.writeFile(`${dir}/${name}`, bytes);
      await replay(database, dir);

      assert.equal(first.length, 2);
      assert.deepEqual(await rows(database), first);
    });
  },
});

Deno.test({
  name: "the spool of a gateway that is still running is not replayed",
  ignore: !POSTGRES_URL,
  async fn() {
    await withSpoolDir(async (dir, database) => {
      const spool = await openSpool({ dir, fsync: 100, log: quiet });
      try {
        spool.complete(usageRow());
        await spool.intent(intentRow());

        const result = await replay(database, dir);

        assert.equal(result.replicas, 0);
        assert.deepEqual(await rows(database), []);
        assert.equal((await segmentFiles(dir)).length, 1);
      } finally {
        await spool.close();
      }
    });
  },
});

Deno.test({
  name: "closed segments are deleted once their events are committed, the current one truncated",
  ignore: !POSTGRES_URL,
  async fn() {
    await withSpoolDir(async (dir, database) => {
      const spool = await openSpool({ dir, fsync: "always", segmentBytes: 2_000, log: quiet });
      const queue = createUsageQueue(database.db.db, { flushMs: 10_000, batchSize: 4, spool });
      const events = Array.from({ length: 12 }, () => usageRow());
      for (const event of events) {
        await queue.intent!(intentRow({ request_id: event.request_id }));
        queue.push(event);
      }
      await queue.written();
      assert.ok((await segmentFiles(dir)).length > 3, "the records span several segments");

      await queue.flush();
      await waitUntil(async () => (await segmentFiles(dir)).length === 1);

      const [current] = await segmentFiles(dir);
      assert.equal((await Deno.stat(current!)).size, 0, "nothing left to keep in the current one");
      assert.equal((await rows(database)).length, 12);
      await queue.close();
      assert.deepEqual(await files(dir), [], "a clean close leaves no spool behind");
    });
  },
});

Deno.test({
  name: "an open intent survives the deletion of the segment it was first written to",
  ignore: !POSTGRES_URL,
  async fn() {
    await withSpoolDir(async (dir, database) => {
      const spool = await openSpool({ dir, fsync: "always", segmentBytes: 2_000, log: quiet });
      const queue = createUsageQueue(database.db.db, { flushMs: 10_000, batchSize: 4, spool });
      const open = intentRow();
      await queue.intent!(open);
      const [first] = await segmentFiles(dir);
      for (let i = 0; i < 12; i++) queue.push(usageRow());
      await queue.flush();
      await waitUntil(async () => !(await segmentFiles(dir)).includes(first!));
      await queue.close(); // the intent is still open: the spool is kept

      const result = await replay(database, dir);

      assert.equal(result.interrupted, 1);
      const row = (await rows(database)).find((r) => r.request_id === open.request_id);
      assert.deepEqual(row, asRow(open));
    });
  },
});

Deno.test({
  name:
    "past maxPending, events wait only in the spool and are read back once the database returns",
  ignore: !POSTGRES_URL,
  async fn() {
    await withSpoolDir(async (dir, database) => {
      const spool = await openSpool({ dir, fsync: 50, log: quiet });
      const queue = createUsageQueue(database.db.db, {
        flushMs: 10_000,
        batchSize: 3,
        maxPending: 5,
        spool,
        log: quiet,
      });
      const db = database.db.db;
      await sql`alter table usage_events rename to usage_events_away`.execute(db);
      const events = Array.from({ length: 40 }, () => usageRow());
      for (const event of events) queue.push(event);
      await assert.rejects(queue.flush(), /40 usage events are not written yet/);
      assert.equal(queue.pending, 40);
      assert.equal(queue.spilled, 35, "memory holds maxPending events, the spool the rest");

      await sql`alter table usage_events_away rename to usage_events`.execute(db);
      await queue.flush();

      assert.equal(queue.pending, 0);
      assert.deepEqual(
        (await rows(database)).map((row) => row.request_id),
        events.map((event) => event.request_id).sort(),
      );
      await queue.close();
      assert.deepEqual(await files(dir), []);
    });
  },
});

async function waitUntil(condition: () => Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`Condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
