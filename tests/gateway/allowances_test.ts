/**
 * Allowances on a real database: reservations from a leased allowance never
 * let spent + reserved exceed what was credited, across replicas, and a
 * reservation is refused only when the balance truly cannot cover it.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { type Kysely, sql } from "kysely";
import {
  type AllowanceStore,
  consumeLeases,
  createAllowanceStore,
} from "../../gateway/billing/allowance_store.ts";
import {
  type Allowances,
  createAllowances,
  type Reservation,
} from "../../gateway/billing/allowances.ts";
import type { Database } from "../../schema/database.ts";
import { freshDatabase } from "../helpers/database.ts";

async function account(db: Kysely<Database>, balance: bigint): Promise<string> {
  const { rows } = await sql<{ id: string }>`
    insert into accounts (name, balance) values ('acme', ${balance}) returning id
  `.execute(db);
  return rows[0]!.id;
}

async function books(db: Kysely<Database>, accountId: string) {
  const { rows } = await sql<{ balance: string; reserved: string; leased: string }>`
    select balance::text, reserved::text,
      (select coalesce(sum(amount), 0) from allowances where account_id = accounts.id)::text as leased
    from accounts where id = ${accountId}
  `.execute(db);
  const row = rows[0]!;
  return {
    balance: BigInt(row.balance),
    reserved: BigInt(row.reserved),
    leased: BigInt(row.leased),
  };
}

const TTL_MS = 60_000;

function allowances(
  store: AllowanceStore,
  replicaId: string,
  maxGrowth = 1_000n,
  now?: () => number,
): Allowances {
  return createAllowances({
    store,
    replicaId,
    maxGrowth,
    share: 4,
    ttlMs: TTL_MS,
    now,
    log: () => {},
  });
}

/** What a replica owes per lease: charges settled but not yet committed to the ledger. */
class Owed {
  readonly byLease = new Map<string, bigint>();
  add(r: Reservation, cost: bigint) {
    this.byLease.set(r.leaseId, (this.byLease.get(r.leaseId) ?? 0n) + cost);
  }
  /** Commits the owed charges as the usage writer will: leases consumed, balance debited. */
  async commit(db: Kysely<Database>, accountId: string, replica: Allowances): Promise<bigint> {
    let total = 0n;
    for (const amount of this.byLease.values()) total += amount;
    if (total === 0n) return 0n;
    await db.transaction().execute(async (trx) => {
      await consumeLeases(trx, this.byLease);
      await sql`update accounts set balance = balance - ${total} where id = ${accountId}`
        .execute(trx);
    });
    for (const [leaseId, amount] of this.byLease) replica.committed(accountId, leaseId, amount);
    this.byLease.clear();
    return total;
  }
}

Deno.test("a cold account costs one round trip; a warm allowance reserves synchronously", async () => {
  const database = await freshDatabase();
  try {
    const db = database.db.db;
    const id = await account(db, 10_000n);
    let grows = 0;
    const real = createAllowanceStore(db);
    const store: AllowanceStore = { ...real, grow: (r) => (grows++, real.grow(r)) };
    const replica = allowances(store, "a");
    const first = await replica.reserve(id, 100n);
    assert.ok(first);
    assert.equal(grows, 1);
    // A quarter of the free 10,000, capped at maxGrowth 1,000.
    assert.deepEqual(await books(db, id), { balance: 10_000n, reserved: 1_000n, leased: 1_000n });
    const second = replica.reserve(id, 100n);
    assert.ok(!(second instanceof Promise), "a warm allowance went to the database");
    assert.equal(grows, 1);
    await replica.close();
  } finally {
    await database.drop();
  }
});

Deno.test("a reservation the free balance cannot cover is refused, and one it can is granted", async () => {
  const database = await freshDatabase();
  try {
    const db = database.db.db;
    const id = await account(db, 500n);
    const replica = allowances(createAllowanceStore(db), "a");
    assert.equal(await replica.reserve(id, 501n), null);
    const all = await replica.reserve(id, 500n);
    assert.ok(all);
    assert.equal(await replica.reserve(id, 1n), null);
    replica.settle(all, 0n);
    assert.ok(await replica.reserve(id, 500n), "a settled reservation frees its allowance");
    await replica.close();
  } finally {
    await database.drop();
  }
});

Deno.test("two replicas racing for a small balance never reserve more than it holds", async () => {
  const database = await freshDatabase();
  try {
    const db = database.db.db;
    const id = await account(db, 1_000n);
    const store = createAllowanceStore(db);
    const replicas = [allowances(store, "a", 10_000n), allowances(store, "b", 10_000n)];
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) => replicas[i % 2]!.reserve(id, 100n)),
    );
    const granted = results.filter((r) => r !== null).length;
    assert.equal(granted, 10, "the balance covers exactly ten");
    const { balance, reserved, leased } = await books(db, id);
    assert.equal(reserved, leased);
    assert.ok(reserved <= balance);
    for (const replica of replicas) await replica.close();
  } finally {
    await database.drop();
  }
});

Deno.test("after a charge past its reservation, nothing more is reserved until the database agrees", async () => {
  const database = await freshDatabase();
  try {
    const db = database.db.db;
    const id = await account(db, 1_000n);
    const replica = allowances(createAllowanceStore(db), "a");
    const owed = new Owed();
    const first = (await replica.reserve(id, 100n))!;
    // The upstream reported far more than was reserved: the balance goes negative.
    replica.settle(first, 1_500n);
    owed.add(first, 1_500n);
    assert.equal(await replica.reserve(id, 10n), null, "reserved before the overspend was settled");
    await owed.commit(db, id, replica);
    assert.equal((await books(db, id)).balance, -500n);
    assert.equal(await replica.reserve(id, 10n), null, "reserved from a negative balance");
    await sql`update accounts set balance = balance + 1000 where id = ${id}`.execute(db);
    assert.ok(await replica.reserve(id, 10n), "a top-up did not unblock the account");
    await replica.close();
  } finally {
    await database.drop();
  }
});

Deno.test("an idle allowance is given back, and an expired one is swept back", async () => {
  const database = await freshDatabase();
  try {
    const db = database.db.db;
    const id = await account(db, 10_000n);
    const store = createAllowanceStore(db);
    const replica = allowances(store, "a");
    const owed = new Owed();
    const reservation = (await replica.reserve(id, 300n))!;
    replica.settle(reservation, 120n);
    owed.add(reservation, 120n);
    await replica.tick(); // still owes 120: the lease is renewed, not released
    assert.equal((await books(db, id)).reserved, 1_000n);
    await owed.commit(db, id, replica);
    await replica.tick();
    assert.deepEqual(await books(db, id), { balance: 9_880n, reserved: 0n, leased: 0n });

    const dead = createAllowances({
      store,
      replicaId: "dead",
      maxGrowth: 1_000n,
      share: 4,
      ttlMs: 1,
      log: () => {},
    });
    assert.ok(await dead.reserve(id, 100n));
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(await store.sweep(), 1);
    assert.deepEqual(await books(db, id), { balance: 9_880n, reserved: 0n, leased: 0n });
    await dead.close();
    await replica.close();
  } finally {
    await database.drop();
  }
});

Deno.test("a replica cut off from the database stops reserving from its lease before it can be swept", async () => {
  const database = await freshDatabase();
  try {
    const db = database.db.db;
    const id = await account(db, 1_000n);
    const store = createAllowanceStore(db);
    let down = false;
    const unreachable = () => Promise.reject(new Error("connection refused"));
    const cutOff: AllowanceStore = {
      ...store,
      grow: (request) => down ? unreachable() : store.grow(request),
      renew: (leaseId, ttlMs) => down ? unreachable() : store.renew(leaseId, ttlMs),
    };
    let clock = 0;
    const TTL = 60_000;
    const a = createAllowances({
      store: cutOff,
      replicaId: "a",
      maxGrowth: 1_000n,
      share: 1,
      ttlMs: TTL,
      now: () => clock,
      log: () => {},
    });
    const first = (await a.reserve(id, 100n))!;
    assert.equal(a.peek(id)?.leased, 1_000n, "the whole balance is leased to replica a");
    down = true;
    clock = TTL * 0.5;
    await a.tick(); // the renewal fails
    assert.ok(a.reserve(id, 100n), "within its TTL the lease still serves");
    // Past 90% of the TTL since its last renewal, the lease is not used any
    // more: the next reservation needs the database, which is unreachable.
    clock = TTL * 0.9;
    await assert.rejects(async () => await a.reserve(id, 100n), /connection refused/);
    // Meanwhile the database expires the lease, and another replica leases the money again.
    await sql`update allowances set expires_at = now() - interval '1 second'`.execute(db);
    assert.equal(await store.sweep(), 1);
    const b = allowances(store, "b");
    assert.ok(await b.reserve(id, 900n));
    await assert.rejects(async () => await a.reserve(id, 1n), /connection refused/);
    a.settle(first, 0n);
    await b.close();
    await a.close();
  } finally {
    await database.drop();
  }
});

type Step =
  | { op: "topup"; amount: number }
  | { op: "reserve"; replica: number; amount: number }
  | { op: "settle"; pick: number; percent: number }
  | { op: "commit"; replica: number }
  | { op: "tick"; replica: number }
  | { op: "expire"; replica: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ op: fc.constant("topup" as const), amount: fc.integer({ min: 1, max: 2_000 }) }),
  fc.record({
    op: fc.constant("reserve" as const),
    replica: fc.integer({ min: 0, max: 1 }),
    amount: fc.integer({ min: 1, max: 800 }),
  }),
  fc.record({
    op: fc.constant("settle" as const),
    pick: fc.nat(),
    // Mostly under the reservation; sometimes over it (the upstream reported more).
    percent: fc.oneof(fc.integer({ min: 0, max: 100 }), fc.integer({ min: 101, max: 300 })),
  }),
  fc.record({ op: fc.constant("commit" as const), replica: fc.integer({ min: 0, max: 1 }) }),
  fc.record({ op: fc.constant("tick" as const), replica: fc.integer({ min: 0, max: 1 }) }),
  // The replica stalls past its leases' TTL; the database expires and sweeps them.
  fc.record({ op: fc.constant("expire" as const), replica: fc.integer({ min: 0, max: 1 }) }),
);

Deno.test("property: random top-ups, reservations, settlements (refunds of the unused part), commits, releases and expiries keep the books", async () => {
  const database = await freshDatabase();
  const db = database.db.db;
  const store = createAllowanceStore(db);
  try {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 3_000 }),
        fc.array(step, { minLength: 5, maxLength: 60, size: "max" }),
        async (start, steps) => {
          const id = await account(db, BigInt(start));
          const names = ["a", "b"];
          const clocks = [0, 0];
          const replicas = names.map((name, i) => allowances(store, name, 700n, () => clocks[i]!));
          const owed = [new Owed(), new Owed()];
          const open: { replica: number; reservation: Reservation }[] = [];
          // The model: credits, committed spending, and how far charges went past reservations.
          let credits = BigInt(start);
          let spent = 0n;
          let overage = 0n;
          const replicaOverage = [0n, 0n];
          // What replicas held against leases swept from under them (reservations
          // still open, charges not yet committed): money the sweep gave back that
          // they may still spend. This is the design's one exposure, and its bound.
          let swept = 0n;
          // The same per replica: it keeps counting those as held in its next lease.
          const orphaned = [0n, 0n];
          try {
            for (const s of steps) {
              if (s.op === "topup") {
                credits += BigInt(s.amount);
                await sql`update accounts set balance = balance + ${s.amount} where id = ${id}`
                  .execute(db);
              } else if (s.op === "reserve") {
                const before = await books(db, id);
                const local = replicas[s.replica]!.peek(id);
                const localFree = local?.usable ? local.leased - local.held : 0n;
                const reservation = await replicas[s.replica]!.reserve(id, BigInt(s.amount));
                if (reservation) open.push({ replica: s.replica, reservation });
                else {
                  // Refused only when neither the local allowance nor the free balance covered
                  // it, or after an overspend (until the database has judged the balance),
                  // counting what the replica still holds from leases swept from under it.
                  assert.ok(
                    local?.overdrawn ||
                      localFree + (before.balance - before.reserved) <
                        BigInt(s.amount) + orphaned[s.replica]!,
                    `refused ${s.amount} with ${localFree} local and ${
                      before.balance - before.reserved
                    } free`,
                  );
                }
              } else if (s.op === "settle") {
                if (open.length === 0) continue;
                const { replica, reservation } = open.splice(s.pick % open.length, 1)[0]!;
                const cost = reservation.amount * BigInt(s.percent) / 100n;
                if (cost > reservation.amount) {
                  overage += cost - reservation.amount;
                  replicaOverage[replica]! += cost - reservation.amount;
                }
                replicas[replica]!.settle(reservation, cost);
                owed[replica]!.add(reservation, cost);
              } else if (s.op === "commit") {
                spent += await owed[s.replica]!.commit(db, id, replicas[s.replica]!);
              } else if (s.op === "expire") {
                clocks[s.replica]! += TTL_MS;
                const { rows } = await sql<{ n: number }>`
                  with expired as (
                    update allowances set expires_at = now() - interval '1 second'
                    where replica_id = ${names[s.replica]!} and account_id = ${id} returning 1
                  ) select count(*)::int4 as n from expired
                `.execute(db);
                if (rows[0]!.n > 0) {
                  let held = 0n;
                  for (const amount of owed[s.replica]!.byLease.values()) held += amount;
                  for (const o of open) if (o.replica === s.replica) held += o.reservation.amount;
                  swept += held;
                  orphaned[s.replica]! += held;
                }
                await store.sweep();
              } else {
                await replicas[s.replica]!.tick();
              }
              const { balance, reserved, leased } = await books(db, id);
              assert.equal(reserved, leased, "reserved is the sum of the leases");
              assert.equal(
                balance,
                credits - spent,
                "the balance is credits less committed spending",
              );
              assert.ok(
                spent + reserved <= credits + overage + swept,
                `spent ${spent} + reserved ${reserved} > credits ${credits} ` +
                  `(+ overage ${overage}, + swept ${swept})`,
              );
              assert.ok(reserved >= 0n);
              // What a replica holds in memory is inside what it has leased in the database.
              for (const [i, replica] of replicas.entries()) {
                const local = replica.peek(id);
                // A lease past its TTL here is not used; the database may have swept it.
                if (!local?.leaseId || !local.usable) continue;
                const { rows } = await sql<{ amount: string }>`
                select amount::text from allowances where id = ${local.leaseId}
              `.execute(db);
                assert.equal(
                  local.leased,
                  BigInt(rows[0]?.amount ?? 0),
                  "the lease as the replica knows it",
                );
                // Reservations made against a swept lease are held beyond the new one.
                assert.ok(
                  local.held <= local.leased + replicaOverage[i]! + orphaned[i]!,
                  `replica ${i} holds ${local.held} of a ${local.leased} lease`,
                );
              }
            }
          } finally {
            for (const replica of replicas) await replica.close();
          }
        },
      ),
      { numRuns: Number(Deno.env.get("PROPERTY_RUNS") ?? 40) },
    );
  } finally {
    await database.drop();
  }
});
