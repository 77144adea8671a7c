/** Attempt deadlines on one coarse clock. */
import assert from "node:assert/strict";
import { createDeadlines } from "../../gateway/routing/deadlines.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test("a deadline fires once, after its time and at most a tick late", async () => {
  const deadlines = createDeadlines({ tickMs: 10 });
  const started = performance.now();
  const fired: number[] = [];
  deadlines.add(40, () => fired.push(performance.now() - started));
  await sleep(20);
  assert.deepEqual(fired, []);
  await sleep(60);
  assert.equal(fired.length, 1);
  assert.ok(fired[0]! >= 40 && fired[0]! < 40 + 10 + 30, `fired after ${fired[0]} ms`);
  assert.equal(deadlines.size, 0);
});

Deno.test("a cancelled deadline never fires, and the others still do", async () => {
  const deadlines = createDeadlines({ tickMs: 5 });
  const fired: string[] = [];
  const cancelA = deadlines.add(20, () => fired.push("a"));
  deadlines.add(20, () => fired.push("b"));
  deadlines.add(1_000, () => fired.push("late"));
  assert.equal(deadlines.size, 3);
  cancelA();
  cancelA(); // cancelling twice is harmless
  await sleep(60);
  assert.deepEqual(fired, ["b"]);
  assert.equal(deadlines.size, 1);
});

Deno.test("the clock stops when nothing is armed, and an armed deadline does not hold the process", async () => {
  let reads = 0;
  const deadlines = createDeadlines({
    tickMs: 5,
    now: () => {
      reads++;
      return performance.now();
    },
  });
  const cancel = deadlines.add(10_000, () => {});
  cancel();
  await sleep(30);
  const after = reads;
  await sleep(30);
  assert.equal(reads, after, "the interval kept ticking with nothing armed");
  // Left armed on purpose: Deno's test sanitizer would report a live, ref'd timer.
  deadlines.add(60_000, () => {});
});

Deno.test("expireAll fires every armed deadline at once, and only those", () => {
  const deadlines = createDeadlines({ tickMs: 5 });
  const fired: string[] = [];
  deadlines.add(60_000, () => fired.push("a"));
  const cancelB = deadlines.add(60_000, () => fired.push("b"));
  deadlines.add(120_000, () => fired.push("c"));
  cancelB();
  deadlines.expireAll();
  assert.deepEqual(fired, ["a", "c"]);
  assert.equal(deadlines.size, 0);
  deadlines.expireAll();
  assert.deepEqual(fired, ["a", "c"], "an expired deadline fired twice");
});
