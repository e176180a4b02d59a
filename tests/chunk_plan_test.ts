/** Tests of lib/shared/chunk_plan.ts: table cases and a property test of the byte coverage. */
import assert from "node:assert/strict";
import fc from "fast-check";
import { planChunks } from "../lib/shared/chunk_plan.ts";

const MiB = 1024 * 1024;

Deno.test("planChunks() splits sizes as the table says", () => {
  const cases: Array<{
    size: number;
    maxParts: number;
    minPartSize: number;
    want: Array<[number, number]>;
  }> = [
    { size: 0, maxParts: 8, minPartSize: MiB, want: [] },
    { size: 1, maxParts: 8, minPartSize: MiB, want: [[0, 1]] },
    { size: MiB - 1, maxParts: 8, minPartSize: MiB, want: [[0, MiB - 1]] },
    {
      size: 2 * MiB - 1,
      maxParts: 8,
      minPartSize: MiB,
      want: [[0, 2 * MiB - 1]],
    },
    {
      size: 2 * MiB,
      maxParts: 8,
      minPartSize: MiB,
      want: [[0, MiB], [MiB, 2 * MiB]],
    },
    { size: 10, maxParts: 3, minPartSize: 1, want: [[0, 4], [4, 7], [7, 10]] },
    { size: 100 * MiB, maxParts: 1, minPartSize: MiB, want: [[0, 100 * MiB]] },
  ];
  for (const c of cases) {
    const got = planChunks(c.size, c);
    assert.deepEqual(
      got.map((r) => [r.start, r.end]),
      c.want,
      JSON.stringify(c),
    );
  }
});

Deno.test("planChunks() refuses negative, fractional and zero arguments", () => {
  assert.throws(
    () => planChunks(-1, { maxParts: 1, minPartSize: 1 }),
    RangeError,
  );
  assert.throws(
    () => planChunks(1.5, { maxParts: 1, minPartSize: 1 }),
    RangeError,
  );
  assert.throws(
    () => planChunks(10, { maxParts: 0, minPartSize: 1 }),
    RangeError,
  );
  assert.throws(
    () => planChunks(10, { maxParts: 1, minPartSize: 0 }),
    RangeError,
  );
});

Deno.test("planChunks() covers every byte exactly once, in order, sizes within bounds", () => {
  fc.assert(
    fc.property(
      fc.nat({ max: 2 ** 40 }),
      fc.integer({ min: 1, max: 64 }),
      fc.integer({ min: 1, max: 2 ** 30 }),
      (size, maxParts, minPartSize) => {
        const ranges = planChunks(size, { maxParts, minPartSize });
        if (size === 0) return ranges.length === 0;
        assert.ok(ranges.length >= 1 && ranges.length <= maxParts);
        let pos = 0;
        for (const r of ranges) {
          assert.equal(r.start, pos, "contiguous, in order");
          assert.ok(r.end > r.start, "not empty");
          pos = r.end;
        }
        assert.equal(pos, size, "covers the whole file");
        const sizes = ranges.map((r) => r.end - r.start);
        if (ranges.length > 1) {
          assert.ok(
            sizes.every((n) => n >= minPartSize),
            "at least minPartSize",
          );
        }
        assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1, "balanced");
        // As many parts as allowed: one more would break a bound.
        assert.ok(
          ranges.length === maxParts ||
            Math.floor(size / (ranges.length + 1)) < minPartSize,
        );
        return true;
      },
    ),
    { numRuns: 2000 },
  );
});
