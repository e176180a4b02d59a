/** `--bwlimit`: the token bucket, the throttled stream and the rate syntax (lib/client/bandwidth.ts). */
import assert from "node:assert/strict";
import { parseRate, throttled, TokenBucket } from "../lib/client/bandwidth.ts";
import { parseClientArgs } from "../lib/client/client_args.ts";
import { UsageError } from "../lib/shared/errors.ts";

Deno.test("parseRate: plain bytes, K/M/G as powers of 1024, fractions; anything else is undefined", () => {
  assert.equal(parseRate("1000"), 1000);
  assert.equal(parseRate("500K"), 500 * 1024);
  assert.equal(parseRate("10M"), 10 * 1024 * 1024);
  assert.equal(parseRate("1.5M"), 1.5 * 1024 * 1024);
  assert.equal(parseRate("2g"), 2 * 1024 ** 3);
  assert.equal(parseRate("10MB/s"), 10 * 1024 * 1024);
  for (const bad of ["", "0", "0.1", "-1M", "1X", "M", "1 M M", "abc"]) {
    assert.equal(parseRate(bad), undefined, bad);
  }
});

Deno.test("--bwlimit: a bad value is a usage error naming it; a good one reaches the command", () => {
  assert.throws(
    () => parseClientArgs(["h:/x", ".", "--bwlimit", "fast"]),
    (e: Error) =>
      e instanceof UsageError && /^Invalid value "fast" for --bwlimit/.test(
        e.message,
      ),
  );
  const pull = parseClientArgs(["h:/x", ".", "--bwlimit", "1M"]);
  assert.equal(pull.kind === "pull" && pull.bwlimit, 1024 * 1024);
  const push = parseClientArgs(["./a", "h:/x", "--bwlimit", "500K"]);
  assert.equal(push.kind === "push" && push.bwlimit, 500 * 1024);
  const none = parseClientArgs(["h:/x", "."]);
  assert.equal(none.kind === "pull" && none.bwlimit, undefined);
});

Deno.test("TokenBucket: a burst passes at once, then reservations wait rate-long, in order, over all callers", () => {
  let t = 0;
  const bucket = new TokenBucket(1000, { now: () => t, burst: 100 });
  assert.equal(bucket.reserve(100), 0);
  // Two callers asking at the same moment queue behind each other.
  assert.equal(bucket.reserve(100), 100);
  assert.equal(bucket.reserve(100), 200);
  t = 1000;
  // A second later 1000 bytes came in: the 200 owed are paid, the bucket is full again (capped at the burst).
  assert.equal(bucket.reserve(100), 0);
  assert.equal(bucket.reserve(50), 50);
});

Deno.test("throttled: every byte passes, in order, cut to the burst, at about the rate", async () => {
  const bucket = new TokenBucket(64 * 1024, { burst: 8 * 1024 });
  const data = new Uint8Array(40 * 1024).map((_, i) => i & 255);
  const source = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(data.subarray(0, 30 * 1024));
      c.enqueue(data.subarray(30 * 1024));
      c.close();
    },
  });
  let passes = 0;
  const started = performance.now();
  const chunks: Uint8Array[] = [];
  for await (const chunk of throttled(source, bucket, () => passes++)) {
    assert.ok(chunk.length <= 8 * 1024);
    chunks.push(chunk);
  }
  const ms = performance.now() - started;
  const got = new Uint8Array(data.length);
  let at = 0;
  for (const c of chunks) {
    got.set(c, at);
    at += c.length;
  }
  assert.equal(at, data.length);
  assert.deepEqual(got, data);
  assert.equal(passes, chunks.length);
  // 40 KiB at 64 KiB/s with 8 KiB free: about 0.5 s.
  assert.ok(ms > 350 && ms < 2000, `${ms} ms`);
});

Deno.test("throttled: cancelling the stream cancels its source", async () => {
  let cancelled: unknown;
  const source = new ReadableStream<Uint8Array>({
    pull(c) {
      c.enqueue(new Uint8Array(1024));
    },
    cancel(reason) {
      cancelled = reason;
    },
  });
  const stream = throttled(source, new TokenBucket(1024, { burst: 1024 }));
  const reader = stream.getReader();
  await reader.read();
  await reader.cancel("stop");
  assert.equal(cancelled, "stop");
});
