/** Tests of the one abortable wait (lib/shared/sleep.ts). */
import assert from "node:assert/strict";
import process from "node:process";
import { sleep } from "../lib/shared/sleep.ts";

Deno.test("sleep with a time already past (negative) resolves at once, with no runtime warning on stderr", async () => {
  // Deno's timers are node's: a negative delay prints a TimeoutNegativeWarning.
  const warnings: string[] = [];
  const onWarning = (warning: Error) => warnings.push(warning.name);
  process.on("warning", onWarning);
  try {
    const started = performance.now();
    await sleep(-3.39);
    await sleep(Number.NaN);
    assert.ok(performance.now() - started < 1000);
    // Warnings are emitted on a later turn.
    await new Promise((done) => setTimeout(done, 20));
    assert.deepEqual(warnings, []);
  } finally {
    process.off("warning", onWarning);
  }
});

Deno.test("sleep rejects with the signal's reason when it aborts, before or during the wait", async () => {
  const stop = new AbortController();
  const waiting = sleep(60_000, stop.signal);
  stop.abort(new Error("stopped"));
  await assert.rejects(waiting, /stopped/);
  await assert.rejects(sleep(10, stop.signal), /stopped/);
});
