/** Tests of lib/shared/range_set.ts: byte ranges added, cut out and complemented, in the one half-open shape. */
import assert from "node:assert/strict";
import fc from "fast-check";
import { RangeSet } from "../lib/shared/range_set.ts";

/** `[start, end)` pairs as ranges, for short tables. */
function r(...pairs: Array<[number, number]>) {
  return pairs.map(([start, end]) => ({ start, end }));
}

Deno.test("RangeSet merges overlapping and touching ranges and reports the gaps", () => {
  const set = new RangeSet(r([10, 20], [0, 5], [5, 8], [18, 30]));
  assert.deepEqual(set.toArray(), r([0, 8], [10, 30]));
  assert.equal(set.covered, 28);
  assert.equal(set.end, 30);
  assert.deepEqual(set.gaps(40), r([8, 10], [30, 40]));
  assert.equal(set.isComplete(30), false);
  set.add({ start: 8, end: 10 });
  assert.equal(set.isComplete(30), true);
  assert.equal(new RangeSet().end, 0);
  assert.deepEqual(new RangeSet().gaps(0), []);
  assert.equal(new RangeSet().isComplete(0), true);
});

Deno.test("RangeSet: covered bytes plus gaps always make up the whole file", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 10_000 }),
      fc.array(fc.tuple(fc.nat(10_000), fc.nat(10_000))),
      (size, pairs) => {
        const set = new RangeSet(
          pairs.map(([a, b]) => ({
            start: Math.min(a, b, size),
            end: Math.min(Math.max(a, b), size),
          })),
        );
        const gaps = set.gaps(size);
        const gapBytes = gaps.reduce((n, g) => n + g.end - g.start, 0);
        assert.equal(set.covered + gapBytes, size);
        const arr = set.toArray();
        for (let i = 1; i < arr.length; i++) {
          assert.ok(arr[i].start > arr[i - 1].end);
        }
        assert.equal(set.isComplete(size), gaps.length === 0);
      },
    ),
  );
});

Deno.test("RangeSet.remove() cuts bytes out of ranges, and covered plus gaps still make the whole", () => {
  const set = new RangeSet(r([0, 100], [200, 300]));
  set.remove({ start: 50, end: 250 });
  assert.deepEqual(set.toArray(), r([0, 50], [250, 300]));
  set.remove({ start: 0, end: 10 });
  set.remove({ start: 290, end: 400 });
  set.remove({ start: 20, end: 20 });
  assert.deepEqual(set.toArray(), r([10, 50], [250, 290]));
  assert.deepEqual(set.gaps(300), r([0, 10], [50, 250], [290, 300]));
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat(1000), fc.nat(1000), fc.boolean()), {
        maxLength: 30,
      }),
      (ops) => {
        const set = new RangeSet();
        const bits = new Uint8Array(1000);
        for (const [a, b, add] of ops) {
          const [s, e] = a <= b ? [a, b] : [b, a];
          if (add) set.add({ start: s, end: e });
          else set.remove({ start: s, end: e });
          bits.fill(add ? 1 : 0, s, e);
        }
        const want = bits.reduce((n, x) => n + x, 0);
        assert.equal(set.covered, want);
        for (const { start: s, end: e } of set.toArray()) {
          assert.ok(s < e);
          for (let i = s; i < e; i++) assert.equal(bits[i], 1);
        }
      },
    ),
  );
});
