/** Tests of lib/shared/limiter.ts: bounds, FIFO order, aborts, bounded queues, per-key caps. */
import assert from "node:assert/strict";
import { KeyedLimiter, Limiter, LimitError } from "../lib/shared/limiter.ts";

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

Deno.test("Limiter refuses a caller past its queue with a LimitError naming the limit", async () => {
  const limiter = new Limiter(1, { queue: 2, name: "hashQueue" });
  const first = await limiter.acquire();
  const waiting = [limiter.acquire(), limiter.acquire()];
  assert.equal(limiter.full, true);
  await assert.rejects(
    limiter.acquire(),
    (error) => error instanceof LimitError && error.limit === "hashQueue",
  );
  assert.equal(limiter.waiting, 2, "the refused caller took no place");
  first();
  (await waiting[0])();
  (await waiting[1])();
  assert.equal(limiter.active, 0);
  assert.equal(limiter.full, false);
});

Deno.test("Limiter.take takes units now or refuses; a released slot goes to a waiter first", async () => {
  const bytes = new Limiter(100, { queue: 0, name: "bodyBytes" });
  const a = bytes.take(60);
  assert.throws(
    () => bytes.take(41),
    (error) => error instanceof LimitError && error.limit === "bodyBytes",
  );
  const b = bytes.take(40);
  assert.equal(bytes.active, 100);
  a();
  a();
  assert.equal(bytes.active, 40);
  b();
  const slots = new Limiter(1);
  const held = await slots.acquire();
  const waiter = slots.acquire();
  held();
  // The waiter was given the slot on release.
  assert.throws(() => slots.take(), LimitError);
  (await waiter)();
  slots.take()();
});

Deno.test("KeyedLimiter keeps one key to its own share of the slots, so another key is served at once", async () => {
  const hashes = new KeyedLimiter(
    new Limiter(2, { queue: 16, name: "hashQueue" }),
    { perKey: 1, perKeyQueue: 8, name: "peerHashQueue" },
  );
  const flood: Array<Promise<unknown>> = [];
  const granted: Array<() => void> = [];
  let refused = 0;
  for (let i = 0; i < 18; i++) {
    flood.push(
      hashes.acquire("a").then((release) => granted.push(release), (error) => {
        assert.ok(error instanceof LimitError);
        assert.equal(error.limit, "peerHashQueue");
        refused++;
      }),
    );
  }
  await tick();
  assert.equal(refused, 9);
  assert.equal(granted.length, 1);
  assert.equal(hashes.active("a"), 1);
  assert.equal(hashes.waiting("a"), 8);
  assert.equal(hashes.refusal("a"), "peerHashQueue");
  assert.equal(hashes.refusal("b"), undefined);
  const other = await hashes.acquire("b");
  assert.equal(hashes.total.active, 2);
  other();
  while (granted.length > 0) {
    granted.shift()!();
    await tick();
  }
  await Promise.all(flood);
  assert.equal(hashes.keys, 0, "idle keys are forgotten");
  assert.equal(hashes.total.active, 0);
});

Deno.test("KeyedLimiter.take refuses by the key's cap or the shared one, naming which, and gives back both", () => {
  const requests = new KeyedLimiter(
    new Limiter(3, { queue: 0, name: "maxRequests" }),
    { perKey: 2, name: "peerRequests" },
  );
  const a1 = requests.take("a");
  requests.take("a");
  assert.throws(
    () => requests.take("a"),
    (error) => error instanceof LimitError && error.limit === "peerRequests",
  );
  requests.take("b");
  assert.throws(
    () => requests.take("c"),
    (error) => error instanceof LimitError && error.limit === "maxRequests",
  );
  assert.equal(requests.keys, 2, "a refused key is not kept");
  a1();
  requests.take("c");
  assert.equal(requests.total.active, 3);
});

Deno.test("KeyedLimiter gives up the place of an aborted waiter in either queue", async () => {
  const bundles = new KeyedLimiter(new Limiter(1, { queue: 4 }), {
    perKey: 1,
    perKeyQueue: 4,
  });
  const held = await bundles.acquire("a");
  const inShared = new AbortController();
  const b = bundles.acquire("b", inShared.signal);
  const inOwn = new AbortController();
  const a = bundles.acquire("a", inOwn.signal);
  await tick();
  inShared.abort(new Error("Gone b"));
  inOwn.abort(new Error("Gone a"));
  await assert.rejects(b, /Gone b/);
  await assert.rejects(a, /Gone a/);
  assert.equal(bundles.active("b"), 0);
  assert.equal(bundles.waiting("a"), 0);
  held();
  assert.equal(bundles.keys, 0);
  (await bundles.acquire("c"))();
});
