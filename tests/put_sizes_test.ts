/** Tests of a push's PUT sizes and the buffers PUTs are read into (lib/client/put_sizes.ts). */
import assert from "node:assert/strict";
import { PutBuffers, PutSizes } from "../lib/client/put_sizes.ts";

const MiB = 1024 * 1024;

Deno.test("a PUT carries 8 MiB while every stream's fits in 128 MiB, then the power of two that does, never below 2 MiB; a size asked for is kept", () => {
  const sizes = new PutSizes();
  const ends: Array<() => void> = [];
  const seen: number[] = [];
  for (let streams = 1; streams <= 80; streams++) {
    ends.push(sizes.stream());
    seen.push(sizes.next() / MiB);
  }
  assert.deepEqual([...new Set(seen.slice(0, 16))], [8]);
  assert.deepEqual([...new Set(seen.slice(16, 32))], [4]);
  assert.deepEqual([...new Set(seen.slice(32))], [2]);
  for (const end of ends.splice(4)) end();
  assert.equal(sizes.next(), 8 * MiB);
  const pinned = new PutSizes(100 * 1024);
  for (let i = 0; i < 20; i++) pinned.stream();
  assert.equal(pinned.next(), 100 * 1024);
});

Deno.test("a PUT's buffer is a view of a power-of-two one, used again once given back, and no more than 128 MiB are kept", () => {
  const buffers = new PutBuffers();
  const a = buffers.take(3 * MiB);
  assert.equal(a.length, 3 * MiB);
  assert.equal(a.buffer.byteLength, 4 * MiB);
  buffers.give(a);
  const b = buffers.take(4 * MiB);
  assert.equal(b.buffer, a.buffer, "the buffer given back is taken again");
  assert.equal(buffers.take(1).buffer.byteLength, 64 * 1024);
  // Twenty 8 MiB buffers given back: sixteen are kept (128 MiB), the rest dropped.
  const many = Array.from({ length: 20 }, () => buffers.take(8 * MiB));
  for (const buffer of many) buffers.give(buffer);
  const again = Array.from({ length: 20 }, () => buffers.take(8 * MiB));
  const reused = again.filter((x) => many.some((m) => m.buffer === x.buffer));
  assert.equal(reused.length, 16);
});
