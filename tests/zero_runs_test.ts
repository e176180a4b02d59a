/** Tests of lib/shared/zero_runs.ts and lib/shared/link_target.ts: where holes may be, and which link targets stay inside a copy. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { linkStaysInside } from "../lib/shared/link_target.ts";
import { dataExtents, isZero, zeroRuns } from "../lib/shared/zero_runs.ts";
import { tempDir } from "./_programs.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

Deno.test("isZero looks at every byte, aligned or not", () => {
  const b = new Uint8Array(100);
  assert.equal(isZero(b), true);
  assert.equal(isZero(b.subarray(3, 97)), true);
  b[96] = 1;
  assert.equal(isZero(b.subarray(3, 97)), false);
  assert.equal(isZero(b.subarray(3, 96)), true);
  b[5] = 7;
  assert.equal(isZero(b), false);
});

Deno.test("zeroRuns finds aligned runs of whole blocks at least minBytes long", () => {
  const b = new Uint8Array(256 * KiB);
  b[10] = 1; // block 0 is data
  b[100 * KiB] = 1; // block 25 is data
  // [4 KiB, 100 KiB) zero, then [104 KiB, 256 KiB) zero.
  assert.deepEqual(zeroRuns(b, 0), [[4 * KiB, 100 * KiB], [
    104 * KiB,
    256 * KiB,
  ]]);
  // Too short a run is data.
  assert.deepEqual(zeroRuns(b, 0, 120 * KiB), [[104 * KiB, 256 * KiB]]);
  // At an unaligned offset only whole aligned blocks count.
  const c = new Uint8Array(64 * KiB);
  assert.deepEqual(zeroRuns(c, 100, 1), [[4 * KiB, 64 * KiB + 100]]);
});

Deno.test("dataExtents of a sparse file of 64 MiB: data where bytes are, the rest holes; runs cross reads", async () => {
  await using dir = await tempDir();
  const path = join(dir.path, "sparse.bin");
  const f = await Deno.open(path, { create: true, write: true, read: true });
  await f.truncate(64 * MiB);
  await f.seek(5 * MiB + 3, Deno.SeekMode.Start);
  await f.write(new Uint8Array([1, 2, 3]));
  await f.seek(64 * MiB - 1, Deno.SeekMode.Start);
  await f.write(new Uint8Array([9]));
  assert.deepEqual(await dataExtents(f, 64 * MiB), [
    [5 * MiB, 5 * MiB + 4 * KiB],
    [64 * MiB - 4 * KiB, 64 * MiB],
  ]);
  // A dense file is one extent; an empty one none.
  await f.truncate(0);
  assert.deepEqual(await dataExtents(f, 0), []);
  await f.seek(0, Deno.SeekMode.Start);
  await f.write(new Uint8Array(3 * MiB).fill(7));
  assert.deepEqual(await dataExtents(f, 3 * MiB), [[0, 3 * MiB]]);
  // All zeros: no data at all.
  await f.truncate(0);
  await f.truncate(2 * MiB + 5);
  assert.deepEqual(await dataExtents(f, 2 * MiB + 5), []);
  f.close();
});

Deno.test("linkStaysInside: relative targets that stay below the copy root only", () => {
  assert.equal(linkStaysInside("latest", "run_0423"), true);
  assert.equal(linkStaysInside("a/b/l", "../c/x"), true);
  assert.equal(linkStaysInside("a/b/l", "../../x"), true);
  assert.equal(linkStaysInside("a/b/l", "../../../x"), false);
  assert.equal(linkStaysInside("l", "./x/../../y"), false);
  assert.equal(linkStaysInside("l", "/etc/passwd"), false);
  assert.equal(linkStaysInside("l", ""), false);
  assert.equal(linkStaysInside("l", "a\0b"), false);
  assert.equal(linkStaysInside("d/l", "."), true);
  assert.equal(linkStaysInside("l", ".."), false);
});
