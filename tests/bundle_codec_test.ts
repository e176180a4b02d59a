/** Tests of lib/shared/bundle_codec.ts: frames round-trip through any chunking, and truncated or hostile streams are refused. */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  decodeFrames,
  encodeFrame,
  encodeFrames,
} from "../lib/shared/bundle_codec.ts";
import type { BundleHeader } from "../lib/shared/wire.ts";

function streamOf(
  bytes: Uint8Array,
  cuts: number[],
): ReadableStream<Uint8Array> {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((
    a,
    b,
  ) => a - b);
  const chunks: Uint8Array[] = [];
  let last = 0;
  for (const p of [...points, bytes.length]) {
    if (p > last) chunks.push(bytes.slice(last, p));
    last = Math.max(last, p);
  }
  return ReadableStream.from(chunks);
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

async function collect(stream: ReadableStream<Uint8Array>) {
  const frames = [];
  for await (const f of decodeFrames(stream)) frames.push(f);
  return frames;
}

Deno.test("decodeFrames() returns exactly the frames encoded, however the stream is chunked", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.tuple(fc.string(), fc.uint8Array({ maxLength: 300 })), {
        maxLength: 8,
      }),
      fc.array(fc.nat(), { maxLength: 20 }),
      async (files, cuts) => {
        const parts = files.map(([path, data], i) =>
          encodeFrame({
            path,
            size: data.length,
            mtime: i,
            mode: 0o644,
            etag: `"${i}"`,
          }, data)
        );
        parts.push(
          encodeFrame({ path: "bad", error: "forbidden", message: "Refused" }),
        );
        parts.push(encodeFrame({ end: true }));
        const frames = await collect(streamOf(concat(parts), cuts));
        assert.equal(frames.length, files.length + 1);
        files.forEach(([path, data], i) => {
          assert.deepEqual(frames[i].header, {
            path,
            size: data.length,
            mtime: i,
            mode: 0o644,
            etag: `"${i}"`,
          });
          assert.deepEqual([...frames[i].data], [...data]);
        });
        assert.deepEqual(frames[files.length].header, {
          path: "bad",
          error: "forbidden",
          message: "Refused",
        });
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("encodeFrames() writes the same bytes as encodeFrame() of each, also for views into one buffer", () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.string(), fc.uint8Array({ maxLength: 300 })), {
        maxLength: 8,
      }),
      fc.nat({ max: 7 }),
      (files, lead) => {
        // The data as views at odd offsets of one slab, as the server reads it.
        const slab = new Uint8Array(
          lead + files.reduce((n, [, d]) => n + d.length, 0),
        );
        let at = lead;
        const frames = files.map(([path, data], i) => {
          slab.set(data, at);
          const view = slab.subarray(at, at + data.length);
          at += data.length;
          return {
            header: {
              path,
              size: data.length,
              mtime: i,
              mode: 0o600,
              etag: `"${i}"`,
            },
            data: view,
          };
        });
        assert.deepEqual(
          [...encodeFrames(frames)],
          [...concat(frames.map((f) => encodeFrame(f.header, f.data)))],
        );
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("decodeFrames() refuses a stream cut anywhere before its end frame", async () => {
  const header: BundleHeader = {
    path: "a",
    size: 10,
    mtime: 1,
    mode: 0o644,
    etag: '"x"',
  };
  const whole = concat([
    encodeFrame(header, new Uint8Array(10).fill(7)),
    encodeFrame({ end: true }),
  ]);
  for (let cut = 0; cut < whole.length; cut++) {
    await assert.rejects(
      () => collect(streamOf(whole.slice(0, cut), [])),
      TypeError,
      `cut at ${cut}`,
    );
  }
  assert.equal((await collect(streamOf(whole, []))).length, 1);
});

Deno.test("decodeFrames() refuses malformed headers, huge headers, oversized data and trailing bytes", async () => {
  const bad: Array<[string, Uint8Array]> = [
    ["zero header length", new Uint8Array([0, 0, 0, 0])],
    ["huge header length", new Uint8Array([0x7f, 0, 0, 0])],
    [
      "not json",
      concat([new Uint8Array([0, 0, 0, 3]), new TextEncoder().encode("{{{")]),
    ],
    [
      "negative size",
      encodeFrame(
        { path: "a", size: -1, mtime: 0, mode: 0, etag: "" } as BundleHeader,
      ),
    ],
    [
      "trailing bytes",
      concat([encodeFrame({ end: true }), new Uint8Array([1])]),
    ],
  ];
  for (const [name, bytes] of bad) {
    await assert.rejects(() => collect(streamOf(bytes, [])), TypeError, name);
  }
  const big = encodeFrame(
    { path: "a", size: 100, mtime: 0, mode: 0, etag: "" },
    new Uint8Array(100),
  );
  await assert.rejects(async () => {
    for await (
      const _ of decodeFrames(
        streamOf(concat([big, encodeFrame({ end: true })]), []),
        50,
      )
    ) {
      // nothing
    }
  }, /above the limit of 50/);
});
