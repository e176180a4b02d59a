/** Tests of lib/server/body_buffers.ts: large bodies' buffers are kept for the next, each handed out once. */
import assert from "node:assert/strict";
import {
  giveBodyBuffer,
  keptBodyBytes,
  lendBodyBuffer,
  POOLED_MIN_BYTES,
  takeBodyBuffer,
} from "../lib/server/body_buffers.ts";

const MiB = 1024 * 1024;

/** Takes a buffer for `length` bytes and lends it, as request_body.ts does after reading into it. */
function body(length: number): Uint8Array {
  const buffer = takeBodyBuffer(length);
  lendBodyBuffer(buffer);
  return new Uint8Array(buffer, 0, length);
}

/** Empties the pool (takes every kept buffer of the sizes these tests use). */
function drain(): void {
  for (let size = MiB; size <= 16 * MiB; size *= 2) {
    while (keptBodyBytes() > 0) {
      const before = keptBodyBytes();
      takeBodyBuffer(size);
      if (keptBodyBytes() === before) break;
    }
  }
}

Deno.test("a large body's buffer, given back, is the next body's of that size; a small body gets a buffer of its own", () => {
  drain();
  const first = body(8 * MiB - 5);
  assert.equal(first.buffer.byteLength, 8 * MiB);
  giveBodyBuffer([first]);
  assert.equal(keptBodyBytes(), 8 * MiB);
  // A body of another size class does not get it.
  const other = takeBodyBuffer(2 * MiB);
  assert.notEqual(other, first.buffer);
  assert.equal(keptBodyBytes(), 8 * MiB);
  const next = takeBodyBuffer(5 * MiB);
  assert.equal(next, first.buffer, "the kept buffer is used again");
  assert.equal(keptBodyBytes(), 0);

  const small = takeBodyBuffer(POOLED_MIN_BYTES - 1);
  assert.equal(small.byteLength, POOLED_MIN_BYTES - 1);
  lendBodyBuffer(small);
  giveBodyBuffer([new Uint8Array(small)]);
  assert.equal(keptBodyBytes(), 0, "a small buffer is never kept");
});

Deno.test("a buffer comes back once: given back twice, or never handed out, it is not kept twice and never goes to two bodies", () => {
  drain();
  const a = body(4 * MiB);
  giveBodyBuffer([a]);
  giveBodyBuffer([a]);
  assert.equal(keptBodyBytes(), 4 * MiB, "the second give-back is ignored");
  const one = takeBodyBuffer(4 * MiB);
  const two = takeBodyBuffer(4 * MiB);
  assert.notEqual(one, two);

  // Memory this module did not hand out (a body of Deno's own chunks).
  giveBodyBuffer([new Uint8Array(4 * MiB)]);
  assert.equal(keptBodyBytes(), 0);
  // Taken but not lent (the read into it failed): not taken back either.
  giveBodyBuffer([new Uint8Array(takeBodyBuffer(4 * MiB))]);
  assert.equal(keptBodyBytes(), 0);
});

Deno.test("at most 32 MiB of buffers are kept; the rest are left to the collector", () => {
  drain();
  const bodies = Array.from({ length: 6 }, () => body(8 * MiB));
  giveBodyBuffer(bodies);
  assert.equal(keptBodyBytes(), 32 * MiB);
  drain();
});
