/** Tests of lib/shared/chunk_writer.ts: a chunk lands at its offset, never past its range, and what reached the file is known even when the stream breaks. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { writeChunk, WrittenRanges } from "../lib/shared/chunk_writer.ts";
import { ProtocolError } from "../lib/shared/errors.ts";

function streamOf(
  chunks: Uint8Array[],
  end: "close" | Error = "close",
): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream({
    pull(c) {
      if (i < chunks.length) c.enqueue(chunks[i++]);
      else if (end === "close") c.close();
      else c.error(end);
    },
  });
}

function bytes(n: number, value: number): Uint8Array {
  return new Uint8Array(n).fill(value);
}

async function withFile(
  fn: (file: Deno.FsFile, path: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "f.hsync-part");
  try {
    using file = await Deno.open(path, {
      read: true,
      write: true,
      createNew: true,
    });
    await fn(file, path);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("writeChunk() writes a chunk at its offset and counts it as written", async () => {
  await withFile(async (file, path) => {
    const written = new WrittenRanges();
    const result = await writeChunk(
      file,
      path,
      streamOf([bytes(3, 0x41), bytes(2, 0x42)]),
      { start: 10, end: 15 },
      { written, sync: true },
    );
    assert.deepEqual(result, { pos: 15, error: undefined });
    assert.deepEqual(written.toArray(), [{ start: 10, end: 15 }]);
    const data = await Deno.readFile(path);
    assert.equal(data.length, 15);
    assert.deepEqual([...data.subarray(10)], [0x41, 0x41, 0x41, 0x42, 0x42]);
  });
});

Deno.test("writeChunk() refuses a stream longer than its range and writes nothing past the range", async () => {
  await withFile(async (file, path) => {
    const progress: number[] = [];
    const result = await writeChunk(
      file,
      path,
      streamOf([bytes(4, 1), bytes(4, 2)]),
      { start: 0, end: 6 },
      { onProgress: (pos) => progress.push(pos) },
    );
    assert.ok(result.error instanceof ProtocolError, String(result.error));
    assert.equal(result.pos, 4);
    assert.deepEqual(progress, [4]);
    assert.equal((await Deno.stat(path)).size, 4);
  });
});

Deno.test("writeChunk() returns a broken stream's error with the position reached, for a resume from there", async () => {
  await withFile(async (file, path) => {
    const written = new WrittenRanges();
    const result = await writeChunk(
      file,
      path,
      streamOf([bytes(1000, 7)], new TypeError("connection reset")),
      { start: 500, end: 5000 },
      { written },
    );
    assert.ok(result.error instanceof TypeError);
    assert.equal(result.pos, 1500);
    assert.deepEqual(written.toArray(), [{ start: 500, end: 1500 }]);
  });
});

Deno.test("WrittenRanges.probe() counts the bytes of a chunk still being written", async () => {
  await withFile(async (file, path) => {
    const written = new WrittenRanges([{ start: 0, end: 100 }]);
    let release!: () => void;
    const gate = new Promise<void>((r) => release = r);
    let sent = false;
    const body = new ReadableStream<Uint8Array>({
      async pull(c) {
        if (!sent) {
          sent = true;
          c.enqueue(bytes(300, 9));
          return;
        }
        await gate;
        c.close();
      },
    });
    const running = writeChunk(file, path, body, { start: 1000, end: 1300 }, {
      written,
    });
    // The first chunk reaches the file while the stream waits for more.
    for (let i = 0; i < 100 && written.covered < 400; i++) {
      written.probe();
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.deepEqual(written.toArray(), [
      { start: 0, end: 100 },
      { start: 1000, end: 1300 },
    ]);
    release();
    assert.equal((await running).pos, 1300);
  });
});
