/** Tests of lib/shared/span_hash.ts: SHA-256 of local spans, read only from the file expected. */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { fileIdOf } from "../lib/shared/checked_open.ts";
import { LocalPathError } from "../lib/shared/errors.ts";
import { hashSpans, sha256Hex, spansOf } from "../lib/shared/span_hash.ts";

function sha(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

Deno.test("hashSpans() hashes each span as the bytes it covers; a span past the end hashes what there is", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "f");
    const data = new Uint8Array(3 * 1024 * 1024 + 17).map((_, i) => i * 7);
    await Deno.writeFile(path, data);
    const id = fileIdOf(await Deno.lstat(path));
    const spans = [
      { start: 0, end: data.length },
      { start: 5, end: 5 },
      { start: 1024 * 1024 - 3, end: 2 * 1024 * 1024 + 5 },
      { start: data.length - 10, end: data.length + 100 },
    ];
    assert.deepEqual(await hashSpans(path, spans, { expected: id }), [
      sha(data),
      sha(new Uint8Array(0)),
      sha(data.subarray(1024 * 1024 - 3, 2 * 1024 * 1024 + 5)),
      sha(data.subarray(data.length - 10)),
    ]);
    assert.equal(sha256Hex(data), sha(data));
    const stop = new AbortController();
    stop.abort(new Error("stopped"));
    await assert.rejects(
      () => hashSpans(path, spans, { expected: id, signal: stop.signal }),
      /stopped/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("hashSpans() reads nothing from a link or another inode at the name", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "f");
    await Deno.writeTextFile(path, "mine");
    const id = fileIdOf(await Deno.lstat(path));
    await Deno.remove(path);
    await Deno.writeTextFile(join(dir, "other"), "mine");
    await Deno.symlink(join(dir, "other"), path);
    const span = [{ start: 0, end: 4 }];
    await assert.rejects(
      () => hashSpans(path, span, { expected: id }),
      (e: unknown) =>
        e instanceof LocalPathError && /symbolic link/.test(e.message),
    );
    await Deno.remove(path);
    await Deno.writeTextFile(path, "mine");
    await assert.rejects(
      () => hashSpans(path, span, { expected: id }),
      /replaced/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("spansOf() covers a range in order with spans of at most the size given (one empty span for an empty range)", () => {
  assert.deepEqual(spansOf({ start: 0, end: 0 }, 10), [{ start: 0, end: 0 }]);
  assert.deepEqual(spansOf({ start: 0, end: 25 }, 10), [
    { start: 0, end: 10 },
    { start: 10, end: 20 },
    { start: 20, end: 25 },
  ]);
  assert.deepEqual(spansOf({ start: 5, end: 15 }, 10), [{ start: 5, end: 15 }]);
});
