/** Tests of lib/client/stream_governor.ts, lib/client/piece_queue.ts and lib/client/piece_streams.ts: streams per big file chosen by measured throughput, pieces handed out from the front. */
import assert from "node:assert/strict";
import {
  MIN_PIECE_BYTES,
  StreamGovernor,
} from "../lib/client/stream_governor.ts";
import { PieceQueue } from "../lib/client/piece_queue.ts";
import { fetchInPieces } from "../lib/client/piece_streams.ts";
import type { Exchange } from "../lib/client/remote.ts";

const MiB = 1024 * 1024;

/**
 * Drives a governor with a fake clock: each stream moves `perStream(n)`
 * bytes per ms when `n` streams run, reported every 50 ms, for `ms`.
 */
function drive(
  governor: StreamGovernor,
  clock: { now: number },
  perStream: (streams: number) => number,
  ms: number,
): number[] {
  const targets: number[] = [];
  for (let t = 0; t < ms; t += 50) {
    clock.now += 50;
    const n = governor.target;
    governor.bytes(perStream(n) * n * 50);
    if (targets.at(-1) !== governor.target) targets.push(governor.target);
  }
  return targets;
}

Deno.test("a long path (each stream limited by its window) gets more streams while they add throughput, up to Max_part_num", () => {
  const clock = { now: 0 };
  const governor = new StreamGovernor({ max: 8, now: () => clock.now });
  governor.roundTrip(5);
  // 80 bytes/ms per stream, whatever the count: a window per connection.
  const targets = drive(governor, clock, () => 80, 5000);
  assert.deepEqual(targets, [1, 4, 8]);
  assert.equal(governor.settled, true);
});

Deno.test("a server whose cores are the limit keeps one stream: the try with more shows no gain and is undone", () => {
  const clock = { now: 0 };
  const governor = new StreamGovernor({ max: 8, now: () => clock.now });
  governor.roundTrip(1);
  // 1000 bytes/ms in all, however many streams share it.
  const targets = drive(governor, clock, (n) => 1000 / n, 5000);
  assert.deepEqual(targets, [1, 4, 1]);
  assert.equal(governor.settled, true);
  assert.equal(governor.target, 1);
});

Deno.test("a gain that stops at four streams settles at four", () => {
  const clock = { now: 0 };
  const governor = new StreamGovernor({ max: 16, now: () => clock.now });
  governor.roundTrip(5);
  const targets = drive(governor, clock, (n) => Math.min(4, n) * 100 / n, 5000);
  assert.deepEqual(targets, [1, 4, 16, 4]);
  assert.equal(governor.target, 4);
});

Deno.test("a first round trip of 8 ms or more starts at sixteen streams at once (at most Max_part_num), and the next try is measured against them", () => {
  const clock = { now: 0 };
  // At most sixteen (the default Max_part_num): decided at once.
  const bounded = new StreamGovernor({ max: 16, now: () => clock.now });
  bounded.roundTrip(50);
  assert.equal(bounded.target, 16);
  assert.equal(bounded.settled, true);
  const eight = new StreamGovernor({ max: 8, now: () => clock.now });
  eight.roundTrip(50);
  assert.equal(eight.target, 8);
  // A higher bound: sixteen first, then a try of more.
  const governor = new StreamGovernor({ max: 64, now: () => clock.now });
  let told = 0;
  governor.onChange(() => told++);
  governor.roundTrip(50);
  assert.equal(governor.target, 16);
  assert.equal(told, 1);
  // Sixteen paid nothing more than 64 would: it settles at sixteen.
  const targets = drive(
    governor,
    clock,
    (n) => Math.min(n, 16) * 80 / n,
    5000,
  );
  assert.deepEqual(targets, [16, 64, 16]);
  assert.equal(governor.settled, true);
  // Near (a round trip under 8 ms): one stream first.
  const near = new StreamGovernor({ max: 8, now: () => clock.now });
  near.roundTrip(2);
  assert.equal(near.target, 1);
});

Deno.test("Max_part_num = 1 is one stream from the start, never tried higher", () => {
  const clock = { now: 0 };
  const governor = new StreamGovernor({ max: 1, now: () => clock.now });
  assert.equal(governor.settled, true);
  assert.deepEqual(drive(governor, clock, () => 80, 3000), [1]);
});

Deno.test("the bytes of the warm-up after a change are not measured: new streams still connecting do not undo a try that pays", () => {
  const clock = { now: 0 };
  const governor = new StreamGovernor({ max: 64, now: () => clock.now });
  governor.roundTrip(50);
  let sinceChange = 0;
  let last = governor.target;
  const targets: number[] = [last];
  for (let t = 0; t < 6000; t += 50) {
    clock.now += 50;
    if (governor.target !== last) {
      last = governor.target;
      sinceChange = 0;
      targets.push(last);
    }
    sinceChange += 50;
    // Added streams deliver nothing for their first 200 ms (connect, ask).
    const n = sinceChange <= 200 ? 1 : governor.target;
    governor.bytes(80 * n * 50);
  }
  assert.deepEqual(targets, [16, 64]);
  assert.equal(governor.target, 64);
});

Deno.test("pieces: at least the minimum (a round trip stays small beside them) unless less is left, and room left for streams a try adds", () => {
  const clock = { now: 0 };
  const governor = new StreamGovernor({ max: 8, now: () => clock.now });
  assert.equal(governor.pieceBytes(256 * MiB, 1), MIN_PIECE_BYTES);
  assert.equal(governor.pieceBytes(1000, 1), 1000);
  // Measured fast: while trying, a piece leaves three quarters for the added streams.
  drive(governor, clock, () => 1_000_000, 150);
  assert.equal(governor.settled, false);
  assert.ok(governor.pieceBytes(256 * MiB, 1) <= 64 * MiB);
  // The last bytes of a file: never pieces below the minimum.
  drive(governor, clock, () => 1_000_000, 3000);
  assert.equal(governor.pieceBytes(6 * MiB, 8), MIN_PIECE_BYTES);
  assert.equal(governor.pieceBytes(3 * MiB, 8), 3 * MiB);
  // Decided at once far away, before any rate: four minimum pieces at a
  // time (a round trip each), or a share of what is left.
  const far = new StreamGovernor({ max: 16, now: () => clock.now });
  far.roundTrip(50);
  assert.equal(far.pieceBytes(1024 * MiB, 16), 4 * MIN_PIECE_BYTES);
  assert.equal(far.pieceBytes(128 * MiB, 16), 8 * MiB);
});

Deno.test("PieceQueue hands out the gaps from the front, never across a gap, and says what is left", () => {
  const queue = new PieceQueue([
    { start: 0, end: 10 },
    { start: 20, end: 25 },
    { start: 30, end: 30 },
  ]);
  assert.equal(queue.remaining, 15);
  assert.deepEqual(queue.take(4), { start: 0, end: 4 });
  assert.deepEqual(queue.take(100), { start: 4, end: 10 });
  assert.deepEqual(queue.take(2), { start: 20, end: 22 });
  assert.equal(queue.remaining, 3);
  assert.deepEqual(queue.take(100), { start: 22, end: 25 });
  assert.equal(queue.take(100), undefined);
  assert.equal(queue.remaining, 0);
});

Deno.test("fetchInPieces: streams starting together far away get equal pieces (not each a share of what the ones before left), and the pieces cover the file once", async () => {
  const governor = new StreamGovernor({ max: 16 });
  governor.roundTrip(50);
  const size = 256 * MiB;
  const taken: Array<{ start: number; end: number; early: boolean }> = [];
  const pending: Array<() => void> = [];
  const finishing = fetchInPieces({
    gaps: [{ start: 0, end: size }],
    governor,
    most: 16,
    early: { exchange: {} as Exchange, end: 8 * MiB },
    signal: new AbortController().signal,
    fail: (error) => {
      throw error;
    },
    fetch: (cursor, exchange) => {
      taken.push({
        start: cursor.pos,
        end: cursor.end,
        early: exchange !== undefined,
      });
      // Arrives only when the test says so: every stream takes its first
      // piece before any byte of another arrived.
      return new Promise<void>((resolve) =>
        pending.push(() => {
          cursor.pos = cursor.end;
          resolve();
        })
      );
    },
  });
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(taken.length, 16);
  assert.deepEqual(taken[0], { start: 0, end: 8 * MiB, early: true });
  const sizes = new Set(taken.slice(1).map((p) => p.end - p.start));
  assert.deepEqual([...sizes], [16 * MiB]);
  while (pending.length > 0) {
    pending.shift()!();
    await new Promise((r) => setTimeout(r, 0));
  }
  await finishing;
  const sorted = taken.map(({ start, end }) => ({ start, end }))
    .sort((a, b) => a.start - b.start);
  let next = 0;
  for (const piece of sorted) {
    assert.equal(piece.start, next);
    next = piece.end;
  }
  assert.equal(next, size);
});
