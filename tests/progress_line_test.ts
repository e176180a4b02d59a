/** Tests of lib/client/progress_line.ts and the terminal side of progress.ts: width, ETA, phases, tally, summary, the list of failures. */
import assert from "node:assert/strict";
import {
  DEFAULT_COLUMNS,
  displayWidth,
  formatBarLine,
  formatProgressLine,
  lineWidthFor,
  type ProgressState,
  shortenMiddle,
} from "../lib/client/progress_line.ts";
import {
  createReporter,
  formatFailedList,
  formatSummary,
} from "../lib/client/progress.ts";
import { emptySummary, type PullEvent } from "../lib/client/transfer.ts";

const MiB = 1024 * 1024;

const busy: ProgressState = {
  bytesDone: 1234 * MiB,
  bytesTotal: 98765 * MiB,
  filesDone: 12345,
  filesTotal: 99999,
  totalFinal: false,
  rate: 123.4e6,
  failed: 17,
  name: "some/deep/directory/with-a-rather-long-file-name-indeed.tar.gz",
};

Deno.test("formatBarLine() never passes the width, from 200 columns down to 10", () => {
  for (let width = 200; width >= 10; width--) {
    for (
      const state of [busy, { ...busy, name: "日本語のファイル名".repeat(4) }]
    ) {
      const line = formatBarLine(state, width);
      assert.ok(displayWidth(line) <= width, `${width}: ${line}`);
      assert.match(line, /\d+%/, `${width}: the percentage stays`);
    }
  }
});

Deno.test("formatBarLine() at 80 and 60 columns keeps the bar and drops the least useful fields first", () => {
  const usual = { ...busy, filesDone: 12, filesTotal: 40, failed: 0 };
  const usual80 = formatBarLine(usual, lineWidthFor(80));
  assert.ok(usual80.length <= 79, usual80);
  assert.match(
    usual80,
    /^\[-{20}\] {3}1% 1\.21 GiB\/96\.5 GiB\+ 123\.4 MB\/s ETA -:-- files 12\/40\+$/,
  );
  const at80 = formatBarLine(busy, lineWidthFor(80));
  assert.ok(at80.length <= 79, at80);
  assert.match(at80, /1% 1\.21 GiB\/96\.5 GiB\+ 123\.4 MB\/s/);
  assert.match(at80, /files 12345\/99999\+ failed 17/);
  const at60 = formatBarLine(busy, lineWidthFor(60));
  assert.ok(at60.length <= 59, at60);
  assert.match(at60, /1\.21 GiB\/96\.5 GiB\+/);
  const at30 = formatBarLine(busy, lineWidthFor(30));
  assert.ok(at30.length <= 29, at30);
});

Deno.test("formatBarLine() shortens a long name in the middle with …", () => {
  const line = formatBarLine({ ...busy, failed: 0 }, 100);
  assert.ok(line.length <= 100, line);
  assert.match(line, / some\/.*….*tar\.gz$/);
});

Deno.test("shortenMiddle() and displayWidth() count wide characters as two columns", () => {
  assert.equal(shortenMiddle("abcdefghij", 5), "ab…ij");
  assert.equal(shortenMiddle("short", 10), "short");
  assert.equal(displayWidth("日本"), 4);
  const cut = shortenMiddle("日本語のファイル名", 9);
  assert.ok(displayWidth(cut) <= 9, cut);
  assert.ok(cut.includes("…"));
});

Deno.test("lineWidthFor() leaves the last column free", () => {
  assert.equal(lineWidthFor(80), 79);
  assert.equal(lineWidthFor(60), 59);
  assert.equal(DEFAULT_COLUMNS, 80);
});

Deno.test("the ETA shows once the total is final, and the + goes away", () => {
  const state: ProgressState = {
    bytesDone: 10 * MiB,
    bytesTotal: 30 * MiB,
    filesDone: 0,
    filesTotal: 1,
    totalFinal: true,
    rate: 2 * MiB,
    failed: 0,
  };
  assert.equal(
    formatProgressLine(state),
    " 33% 10.0 MiB/30.0 MiB 2.10 MB/s ETA 0:10 files 0/1",
  );
  assert.match(
    formatProgressLine({ ...state, totalFinal: false }),
    /30\.0 MiB\+ .* ETA -:-- files 0\/1\+$/,
  );
});

Deno.test("a hashing phase shows its word and its own progress", () => {
  const state: ProgressState = {
    bytesDone: 0,
    bytesTotal: 100 * MiB,
    filesDone: 0,
    filesTotal: 1,
    totalFinal: true,
    rate: 0,
    failed: 0,
    hashing: { phase: "checking", done: 25 * MiB, total: 100 * MiB },
  };
  assert.equal(
    formatProgressLine(state),
    "checking  25% 25.0 MiB/100.0 MiB files 0/1",
  );
  const bar = formatBarLine(
    { ...state, hashing: { phase: "verifying", done: 50, total: 100 } },
    79,
  );
  assert.match(bar, /^\[#{10}-{10}\] verifying {2}50% /);
});

Deno.test("the reporter shows the checking phase from hashing events, then the transfer again", async () => {
  let out = "";
  const reporter = await createReporter({
    isTerminal: false,
    write: (text) => out += text,
    intervalMs: 10,
  });
  reporter.onEvent({ type: "total", files: 1, bytes: 4 * MiB, final: true });
  reporter.onEvent({
    type: "hashing",
    phase: "checking",
    bytes: 0,
    total: 4 * MiB,
  });
  reporter.onEvent({ type: "hashing", phase: "checking", bytes: MiB });
  await new Promise((r) => setTimeout(r, 40));
  assert.match(out, /^hsync: checking {2}25% 1\.00 MiB\/4\.00 MiB/m);
  reporter.onEvent({ type: "hashing", phase: "checking", bytes: 3 * MiB });
  out = "";
  await new Promise((r) => setTimeout(r, 40));
  reporter.stop();
  assert.match(out, /^hsync: +0% 0 B\/4\.00 MiB/m);
  assert.doesNotMatch(out, /checking/);
});

Deno.test("a terminal bar is redrawn in place and fits the asked width; stop() clears it", async () => {
  let out = "";
  let columns = 60;
  const reporter = await createReporter({
    isTerminal: true,
    write: (text) => out += text,
    columns: () => columns,
  });
  reporter.onEvent({ type: "total", files: 3, bytes: 3 * MiB, final: false });
  reporter.onEvent({ type: "progress", bytes: MiB });
  reporter.onEvent({ type: "warning", message: "Careful" });
  columns = 40;
  await new Promise((r) => setTimeout(r, 250));
  reporter.onEvent({ type: "progress", bytes: MiB });
  await new Promise((r) => setTimeout(r, 250));
  reporter.stop();
  assert.ok(out.includes("\r\x1b[Khsync: warning: Careful\n"), out);
  const draws = out.split("\r").filter((d) =>
    d !== "" && !d.startsWith("\x1b[K")
  );
  assert.ok(draws.length >= 2, JSON.stringify(out));
  for (const d of draws) {
    assert.ok(!d.includes("\n"), "a redraw never moves to a new line");
    assert.ok(d.replace("\x1b[K", "").length <= 59, d);
  }
  assert.ok(draws.at(-1)!.replace("\x1b[K", "").length <= 39, draws.at(-1));
  assert.ok(out.endsWith("\r\x1b[K"), "the bar is cleared at the end");
  const after = out.length;
  reporter.onEvent({ type: "progress", bytes: MiB });
  reporter.onEvent({ type: "failure", path: "x", message: "Gone" });
  assert.equal(out.slice(after), "\r\x1b[Khsync: failed: x: Gone\n");
});

/** The tally of a reporter told `events`, one after another. */
async function tallyOf(events: PullEvent[]) {
  const reporter = await createReporter({
    isTerminal: false,
    write: () => {},
  });
  for (const event of events) reporter.onEvent(event);
  reporter.stop();
  return reporter.tally();
}

Deno.test("the tally counts this run's bytes apart from resumed ones, and what is kept", async () => {
  const tally = await tallyOf([
    { type: "progress", bytes: 12 * MiB, resumed: true },
    { type: "progress", bytes: 8 * MiB },
    { type: "done", path: "a", bytes: 20 * MiB },
    { type: "progress", bytes: 3 * MiB },
  ]);
  assert.deepEqual(tally, {
    transferred: 11 * MiB,
    resumed: 12 * MiB,
    holes: 0,
    kept: 3 * MiB,
  });
});

Deno.test("the tally counts a sparse file's holes apart: neither moved nor resumed, and done", async () => {
  const tally = await tallyOf([
    { type: "progress", bytes: 60 * MiB, holes: true },
    { type: "progress", bytes: 4 * MiB },
    { type: "done", path: "a", bytes: 64 * MiB },
  ]);
  assert.deepEqual(tally, {
    transferred: 4 * MiB,
    resumed: 0,
    holes: 60 * MiB,
    kept: 0,
  });
});

Deno.test("formatSummary() with a tally: this run's bytes, the resumed ones apart, and what an interruption kept", () => {
  const summary = { ...emptySummary(), files: 1, bytes: 20 * MiB, seconds: 2 };
  const tally = { transferred: 8 * MiB, resumed: 12 * MiB, holes: 0, kept: 0 };
  assert.equal(
    formatSummary(summary, tally),
    "hsync: 1 file, 8.00 MiB (12.0 MiB resumed) in 2.00 s (4.19 MB/s), 0 skipped, 0 failed",
  );
  // A sparse file's holes (-S) are not said to be resumed.
  assert.equal(
    formatSummary(summary, { ...tally, resumed: 0, holes: 12 * MiB }),
    "hsync: 1 file, 8.00 MiB (12.0 MiB of holes) in 2.00 s (4.19 MB/s), 0 skipped, 0 failed",
  );
  assert.equal(
    formatSummary(summary, { ...tally, resumed: 4 * MiB, holes: 8 * MiB }),
    "hsync: 1 file, 8.00 MiB (4.00 MiB resumed, 8.00 MiB of holes) in 2.00 s (4.19 MB/s), 0 skipped, 0 failed",
  );
  assert.equal(
    formatSummary(
      { ...emptySummary(), seconds: 1 },
      {
        transferred: 22.5 * MiB,
        resumed: 0,
        holes: 0,
        kept: 22.5 * MiB,
        interrupted: true,
      },
    ),
    "hsync: interrupted: 0 files, 22.5 MiB in 1.00 s (23.6 MB/s), 0 skipped, 0 failed, 22.5 MiB kept for resume",
  );
});

Deno.test("formatFailedList() names what failed, one a line, at most 20", () => {
  assert.deepEqual(formatFailedList(emptySummary()), []);
  const summary = emptySummary();
  for (let i = 0; i < 23; i++) {
    summary.failures.push({ path: `d/f${i}`, message: "x" });
  }
  summary.failed = 23;
  const lines = formatFailedList(summary);
  assert.equal(lines[0], "hsync: failed (23):");
  assert.equal(lines[1], "hsync:   d/f0");
  assert.equal(lines[20], "hsync:   d/f19");
  assert.equal(lines[21], "hsync:   and 3 more");
  assert.equal(lines.length, 22);
});
