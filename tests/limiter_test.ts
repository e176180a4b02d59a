/** Tests of lib/limiter.ts: bounds, FIFO order, aborts. */
import assert from "node:assert/strict";
import { Limiter } from "../lib/limiter.ts";

function tick(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

Deno.test("Limiter never lets more than its limit run", async () => {
  const limiter = new Limiter(3);
  let running = 0;
  let peak = 0;
  await Promise.all(
    Array.from({ length: 50 }, (_, i) =>
      limiter.run(async () => {
        running++;
        peak = Math.max(peak, running);
        await new Promise((r) => setTimeout(r, i % 3));
        running--;
      })),
  );
  assert.equal(peak, 3);
  assert.equal(limiter.active, 0);
  assert.equal(limiter.waiting, 0);
});

Deno.test("Limiter grants slots in the order they were asked for", async () => {
  const limiter = new Limiter(1);
  const first = await limiter.acquire();
  const order: number[] = [];
  const waiters = [1, 2, 3, 4].map((n) =>
    limiter.acquire().then((release) => {
      order.push(n);
      release();
    })
  );
  await tick();
  assert.equal(limiter.waiting, 4);
  first();
  await Promise.all(waiters);
  assert.deepEqual(order, [1, 2, 3, 4]);
});

Deno.test("Limiter gives up the place of an aborted waiter", async () => {
  const limiter = new Limiter(1);
  const first = await limiter.acquire();
  const controller = new AbortController();
  const aborted = limiter.acquire(controller.signal);
  const next = limiter.acquire();
  controller.abort(new Error("Stop"));
  await assert.rejects(aborted, /Stop/);
  first();
  const release = await next;
  assert.equal(limiter.active, 1);
  release();
  release(); // twice is harmless
  assert.equal(limiter.active, 0);
  // Only cancelled waiters queued: a new caller still gets a free slot at once.
  const held = await limiter.acquire();
  const c2 = new AbortController();
  const gone = limiter.acquire(c2.signal);
  c2.abort(new Error("Gone"));
  await assert.rejects(gone, /Gone/);
  held();
  (await limiter.acquire())();
});

Deno.test("Limiter refuses a limit below 1", () => {
  assert.throws(() => new Limiter(0), RangeError);
});
