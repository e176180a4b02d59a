/** Tests of lib/client/progress.ts: number formats, the summary line, plain lines, the terminal bar, quiet. */
import assert from "node:assert/strict";
import {
  createReporter,
  formatBarLine,
  formatBytes,
  formatDuration,
  formatProgressLine,
  formatRate,
  formatSummary,
  type ProgressState,
  RateMeter,
} from "../lib/client/progress.ts";

Deno.test("formatBytes() uses binary units with 3 significant digits", () => {
  const cases: Array<[number, string]> = [
    [0, "0 B"],
    [1023, "1023 B"],
    [1024, "1.00 KiB"],
    [1536, "1.50 KiB"],
    [20 * 1024 * 1024, "20.0 MiB"],
    [1024 ** 3 * 1.5, "1.50 GiB"],
  ];
  for (const [n, want] of cases) assert.equal(formatBytes(n), want, String(n));
});

Deno.test("formatRate() and formatDuration() read like rsync and curl", () => {
  assert.equal(formatRate(0), "0.00 MB/s");
  assert.equal(formatRate(350_210_000), "350.2 MB/s");
  assert.equal(formatDuration(4), "0:04");
  assert.equal(formatDuration(750), "12:30");
  assert.equal(formatDuration(7384), "2:03:04");
  assert.equal(formatDuration(Infinity), "-:--");
});

Deno.test("formatSummary() gives files, bytes, seconds, MB/s, skipped and failed", () => {
  assert.equal(
    formatSummary({
      files: 41,
      bytes: 3 * 1024 * 1024,
      seconds: 0.5,
      skipped: 2,
      failed: 1,
      failures: [{ path: "x", message: "y" }],
    }),
    "hsync: 41 files, 3.00 MiB in 0.50 s (6.29 MB/s), 2 skipped, 1 failed",
  );
  assert.equal(
    formatSummary({
      files: 1,
      bytes: 0,
      seconds: 0,
      skipped: 0,
      failed: 0,
      failures: [],
    }),
    "hsync: 1 file, 0 B in 0.00 s (0.00 MB/s), 0 skipped, 0 failed",
  );
});

const state: ProgressState = {
  bytesDone: 512 * 1024 * 1024,
  bytesTotal: 1024 * 1024 * 1024,
  filesDone: 3,
  filesTotal: 10,
  totalFinal: true,
  rate: 100e6,
  failed: 0,
};

Deno.test("formatProgressLine() shows percent, bytes, rate, ETA and files", () => {
  assert.equal(
    formatProgressLine(state),
    " 50% 512.0 MiB/1.00 GiB 100.0 MB/s ETA 0:05 files 3/10",
  );
  assert.equal(
    formatProgressLine({ ...state, totalFinal: false, failed: 2 }),
    " 50% 512.0 MiB/1.00 GiB+ 100.0 MB/s ETA -:-- files 3/10+ failed 2",
  );
});

Deno.test("formatBarLine() draws a bar and fits the width", () => {
  const line = formatBarLine(state, 200);
  assert.ok(line.startsWith("[##########----------]  50%"), line);
  assert.ok(formatBarLine(state, 30).length <= 30);
});

Deno.test("RateMeter measures over its window", () => {
  let t = 0;
  const meter = new RateMeter(() => t, 5000);
  assert.equal(meter.rate, 0);
  for (let i = 0; i < 100; i++) {
    t += 100;
    meter.add(1_000_000);
  }
  // 10 MB/s steady, measured over the last 5 s only.
  assert.ok(Math.abs(meter.rate - 10e6) < 0.5e6, String(meter.rate));
});

Deno.test("a reporter without a terminal prints plain lines now and then, and warnings", async () => {
  let out = "";
  const reporter = await createReporter({
    isTerminal: false,
    write: (text) => out += text,
    intervalMs: 20,
  });
  reporter.onEvent({ type: "total", files: 2, bytes: 2048, final: true });
  reporter.onEvent({ type: "progress", bytes: 1024 });
  reporter.onEvent({ type: "done", path: "a", bytes: 1024 });
  reporter.onEvent({
    type: "warning",
    path: "b",
    message: 'File "b" changed on the server, starting over',
  });
  await new Promise((r) => setTimeout(r, 70));
  reporter.stop();
  reporter.stop();
  const lines = out.trim().split("\n");
  assert.ok(
    lines.includes(
      'hsync: warning: File "b" changed on the server, starting over',
    ),
  );
  assert.ok(
    lines.some((l) => /^hsync: +50% 1.00 KiB\/2.00 KiB .* files 1\/2$/.test(l)),
    out,
  );
  assert.ok(!out.includes("\x1b"), "no escape codes without a terminal");
  const after = out.length;
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(out.length, after, "nothing after stop()");
});

Deno.test("a reporter on a terminal draws a live bar", async () => {
  let out = "";
  const reporter = await createReporter({
    isTerminal: true,
    write: (text) => out += text,
    columns: 80,
  });
  reporter.onEvent({ type: "total", files: 1, bytes: 4096, final: true });
  reporter.onEvent({ type: "progress", bytes: 4096 });
  reporter.onEvent({ type: "done", path: "a", bytes: 4096 });
  await new Promise((r) => setTimeout(r, 250));
  reporter.stop();
  assert.match(out, /\[#+\] 100% 4.00 KiB\/4.00 KiB .* files 1\/1/);
  assert.ok(out.includes("\x1b["), "escape codes on a terminal");
});

Deno.test("a reporter writes to a WritableStream sink too", async () => {
  const chunks: string[] = [];
  const dec = new TextDecoder();
  const sink = new WritableStream<Uint8Array>({
    write(chunk) {
      chunks.push(dec.decode(chunk));
    },
  });
  const reporter = await createReporter({ isTerminal: false, write: sink });
  reporter.onEvent({ type: "warning", message: "Careful" });
  reporter.stop();
  await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(chunks, ["hsync: warning: Careful\n"]);
});

Deno.test("a quiet reporter prints no progress, but warnings and failures", async () => {
  let out = "";
  const reporter = await createReporter({
    quiet: true,
    isTerminal: true,
    write: (text) => out += text,
  });
  reporter.onEvent({ type: "total", files: 1, bytes: 1, final: true });
  reporter.onEvent({ type: "progress", bytes: 1 });
  reporter.onEvent({ type: "warning", message: "x" });
  reporter.onEvent({ type: "failure", path: "a", message: "Gone" });
  reporter.stop();
  assert.equal(out, "hsync: warning: x\nhsync: failed: a: Gone\n");
});
