/** Tests of lib/shared/range_header.ts: one `Range` header against a file size, never throwing. */
import assert from "node:assert/strict";
import fc from "fast-check";
import { parseRange, type RangeRequest } from "../lib/shared/range_header.ts";

const NONE: RangeRequest = { kind: "none" };
const UNSAT: RangeRequest = { kind: "unsatisfiable" };
const range = (start: number, end: number): RangeRequest => ({
  kind: "range",
  start,
  end,
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
  Deno.test(`parseRange() handles ${name}: ${JSON.stringify(header)}`, () => {
    assert.deepEqual(parseRange(header, size), expected);
  });
}

Deno.test("parseRange() never throws and any range it returns lies inside the file", () => {
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
      const r = parseRange(h, size);
      if (r.kind === "range") {
        assert.ok(Number.isSafeInteger(r.start) && Number.isSafeInteger(r.end));
        assert.ok(0 <= r.start && r.start <= r.end && r.end < size);
      }
      if (size === 0) assert.equal(r.kind, "none");
    }),
    { numRuns: 2000 },
  );
});
