/** Tests of lib/shared/byte_range.ts: plans of parts and gaps, and the Range and Content-Range headers, in one half-open shape. */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  contentRange,
  parseContentRange,
  parseRangeHeader,
  planChunks,
  planGaps,
  rangeHeader,
  type RangeRequest,
} from "../lib/shared/byte_range.ts";

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

const NONE: RangeRequest = { kind: "none" };
const UNSAT: RangeRequest = { kind: "unsatisfiable" };
/** A range as HTTP writes it (inclusive last byte), in the half-open shape. */
const range = (first: number, last: number): RangeRequest => ({
  kind: "range",
  range: { start: first, end: last + 1 },
});

const CASES: Array<[string, string | null, number, RangeRequest]> = [
  ["absent header", null, 1000, NONE],
  ["empty header", "", 1000, NONE],
  ["first 100 bytes (curl -r 0-99)", "bytes=0-99", 1000, range(0, 99)],
  ["middle range", "bytes=100-199", 1000, range(100, 199)],
  ["one byte", "bytes=5-5", 1000, range(5, 5)],
  ["open-ended range", "bytes=900-", 1000, range(900, 999)],
  ["suffix range", "bytes=-100", 1000, range(900, 999)],
  ["suffix longer than the file", "bytes=-5000", 1000, range(0, 999)],
  ["end past the file is clamped", "bytes=500-99999", 1000, range(500, 999)],
  ["start at the last byte", "bytes=999-", 1000, range(999, 999)],
  ["start at the size", "bytes=1000-", 1000, UNSAT],
  ["start past the size", "bytes=2000-3000", 1000, UNSAT],
  ["zero-length suffix", "bytes=-0", 1000, UNSAT],
  ["end before start is ignored", "bytes=200-100", 1000, NONE],
  ["two ranges are served whole", "bytes=0-1,5-6", 1000, NONE],
  ["other unit", "items=0-1", 1000, NONE],
  ["no numbers", "bytes=-", 1000, NONE],
  ["garbage", "bytes=abc-def", 1000, NONE],
  ["negative start", "bytes=-1-5", 1000, NONE],
  ["unit is case-insensitive", "Bytes=0-0", 1000, range(0, 0)],
  ["spaces around the numbers", " bytes = 1 - 2 ", 1000, range(1, 2)],
  ["empty file ignores ranges", "bytes=0-99", 0, NONE],
  ["empty file ignores suffix", "bytes=-1", 0, NONE],
  [
    "huge numbers",
    "bytes=99999999999999999999999-",
    1000,
    UNSAT,
  ],
  ["huge end", "bytes=0-99999999999999999999999", 1000, range(0, 999)],
];

for (const [name, header, size, expected] of CASES) {
  Deno.test(`parseRangeHeader() handles ${name}: ${JSON.stringify(header)}`, () => {
    assert.deepEqual(parseRangeHeader(header, size), expected);
  });
}

Deno.test("parseRangeHeader() never throws and any range it returns lies inside the file", () => {
  const header = fc.oneof(
    fc.string(),
    fc.constant(null),
    fc.tuple(
      fc.constantFrom("bytes=", "Bytes=", "bytes =", "x="),
      fc.option(fc.nat(), { nil: undefined }),
      fc.option(fc.nat(), { nil: undefined }),
      fc.constantFrom("", ",0-1", " "),
    ).map(([u, a, b, tail]) => `${u}${a ?? ""}-${b ?? ""}${tail}`),
  );
  fc.assert(
    fc.property(header, fc.nat({ max: 1 << 30 }), (h, size) => {
      const r = parseRangeHeader(h, size);
      if (r.kind === "range") {
        const { start, end } = r.range;
        assert.ok(Number.isSafeInteger(start) && Number.isSafeInteger(end));
        assert.ok(0 <= start && start < end && end <= size);
      }
      if (size === 0) assert.equal(r.kind, "none");
    }),
    { numRuns: 2000 },
  );
});

Deno.test("planGaps() splits one gap like a file and halves the largest of several while parts are left", () => {
  const opts = { maxParts: 4, minPartSize: 10 };
  assert.deepEqual(planGaps([{ start: 100, end: 140 }], opts), [
    { start: 100, end: 110 },
    { start: 110, end: 120 },
    { start: 120, end: 130 },
    { start: 130, end: 140 },
  ]);
  assert.deepEqual(
    planGaps([{ start: 0, end: 10 }, { start: 50, end: 90 }], opts),
    [
      { start: 0, end: 10 },
      { start: 50, end: 60 },
      { start: 60, end: 70 },
      { start: 70, end: 90 },
    ],
  );
  // No gap (an empty file, or one held whole): nothing to send, no throw.
  assert.deepEqual(planGaps([], opts), []);
  // Nothing below twice the minimum is halved.
  assert.deepEqual(
    planGaps([{ start: 0, end: 19 }, { start: 30, end: 49 }], opts),
    [{ start: 0, end: 19 }, { start: 30, end: 49 }],
  );
});

Deno.test("planGaps() covers exactly the gaps, never more parts than allowed when it splits", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.tuple(fc.nat({ max: 1000 }), fc.integer({ min: 1, max: 1000 })),
        {
          minLength: 1,
          maxLength: 6,
        },
      ),
      fc.integer({ min: 1, max: 16 }),
      fc.integer({ min: 1, max: 300 }),
      (pieces, maxParts, minPartSize) => {
        let at = 0;
        const gaps = pieces.map(([skip, length]) => {
          const start = at + skip;
          at = start + length + 1;
          return { start, end: start + length };
        });
        const ranges = planGaps(gaps, { maxParts, minPartSize });
        const covered = (list: Array<{ start: number; end: number }>) =>
          list.flatMap((r) =>
            Array.from({ length: r.end - r.start }, (_, i) => r.start + i)
          );
        assert.deepEqual(covered(ranges), covered(gaps));
        if (ranges.length > gaps.length) {
          assert.ok(ranges.length <= maxParts);
        }
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("rangeHeader(), contentRange() and parseContentRange() write and read the inclusive HTTP form of a half-open range", () => {
  assert.equal(rangeHeader({ start: 0, end: 100 }), "bytes=0-99");
  assert.equal(rangeHeader({ start: 900 }), "bytes=900-");
  assert.equal(contentRange({ start: 0, end: 100 }, 1000), "bytes 0-99/1000");
  assert.equal(contentRange(undefined, 1000), "bytes */1000");
  assert.deepEqual(parseContentRange("bytes 0-99/1000"), {
    range: { start: 0, end: 100 },
    size: 1000,
  });
  for (
    const bad of [
      null,
      "bytes */1000",
      "bytes 5-4/1000",
      "bytes 0-1000/1000",
      "items 0-1/2",
      "bytes 0-1",
    ]
  ) {
    assert.equal(parseContentRange(bad), undefined, String(bad));
  }
  // A served range reads back as itself.
  fc.assert(
    fc.property(fc.nat({ max: 1e9 }), fc.nat({ max: 1e9 }), (a, b) => {
      const size = Math.max(a, b) + 1;
      const range = { start: Math.min(a, b), end: Math.max(a, b) + 1 };
      assert.deepEqual(parseContentRange(contentRange(range, size)), {
        range,
        size,
      });
    }),
  );
});
