/** Tests of the buffers a push's PUTs are read into (lib/client/put_sizes.ts). */
import assert from "node:assert/strict";
import { PutBuffers } from "../lib/client/put_sizes.ts";

const MiB = 1024 * 1024;

Deno.test("a PUT's buffer is a view of a power-of-two one, used again once given back, and no more than 64 MiB are kept", () => {
  const buffers = new PutBuffers();
  const a = buffers.take(3 * MiB);
  assert.equal(a.length, 3 * MiB);
  assert.equal(a.buffer.byteLength, 4 * MiB);
  buffers.give(a);
  const b = buffers.take(4 * MiB);
  assert.equal(b.buffer, a.buffer, "the buffer given back is taken again");
  assert.equal(buffers.take(1).buffer.byteLength, 64 * 1024);
  // Twenty 8 MiB buffers given back: eight are kept (64 MiB), the rest dropped.
  const many = Array.from({ length: 20 }, () => buffers.take(8 * MiB));
  for (const buffer of many) buffers.give(buffer);
  const again = Array.from({ length: 20 }, () => buffers.take(8 * MiB));
  const reused = again.filter((x) => many.some((m) => m.buffer === x.buffer));
  assert.equal(reused.length, 8);
});
