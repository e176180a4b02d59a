/** The `--json` mapping of pull, push and `--sync` events (lib/client/json_events.ts). */
import assert from "node:assert/strict";
import {
  errorSummaryJson,
  followEventJson,
  followSummaryJson,
  pullEventJson,
  summaryJson,
} from "../lib/client/json_events.ts";
import { emptySummary } from "../lib/client/transfer.ts";

Deno.test("pullEventJson: one file object per entry with its status, warnings and plans; nothing for progress", () => {
  assert.deepEqual(pullEventJson({ type: "done", path: "a", bytes: 3 }), {
    type: "file",
    path: "a",
    bytes: 3,
    status: "transferred",
  });
  assert.deepEqual(pullEventJson({ type: "skip", path: "b", bytes: 4 }), {
    type: "file",
    path: "b",
    bytes: 4,
    status: "skipped",
    reason: "identical",
  });
  assert.deepEqual(
    pullEventJson({ type: "failure", path: "c", message: "no space" }),
    { type: "file", path: "c", bytes: 0, status: "failed", reason: "no space" },
  );
  assert.deepEqual(
    pullEventJson({ type: "omitted", path: "f", message: "a FIFO" }),
    {
      type: "file",
      path: "f",
      bytes: 0,
      status: "not_transferred",
      reason: "a FIFO",
    },
  );
  assert.equal(
    pullEventJson({ type: "omitted", message: "withheld" }),
    undefined,
  );
  assert.deepEqual(pullEventJson({ type: "deleted", path: "d" }), {
    type: "file",
    path: "d",
    bytes: 0,
    status: "deleted",
  });
  assert.deepEqual(pullEventJson({ type: "warning", message: "w" }), {
    type: "warning",
    message: "w",
  });
  assert.deepEqual(
    pullEventJson({ type: "warning", message: "w", path: "p" }),
    { type: "warning", message: "w", path: "p" },
  );
  assert.deepEqual(
    pullEventJson({ type: "plan", action: "transfer", path: "p", bytes: 9 }),
    { type: "plan", action: "transfer", path: "p", bytes: 9 },
  );
  assert.equal(pullEventJson({ type: "progress", bytes: 10 }), undefined);
  assert.equal(
    pullEventJson({ type: "total", files: 1, bytes: 1, final: true }),
    undefined,
  );
});

Deno.test("followEventJson: append with its offset, new file, refetch with its reason", () => {
  assert.deepEqual(
    followEventJson({ type: "appended", path: "x.log", bytes: 5, size: 105 }),
    { type: "append", path: "x.log", offset: 100, bytes: 5 },
  );
  assert.deepEqual(
    followEventJson({
      type: "fetched",
      path: "n",
      bytes: 7,
      reason: "new",
    }),
    { type: "file", path: "n", bytes: 7, status: "new" },
  );
  assert.deepEqual(
    followEventJson({
      type: "fetched",
      path: "r",
      bytes: 7,
      reason: "truncated",
    }),
    { type: "refetch", path: "r", bytes: 7, reason: "truncated" },
  );
  assert.deepEqual(
    followEventJson({
      type: "pull",
      event: { type: "done", path: "a", bytes: 1 },
    }),
    { type: "file", path: "a", bytes: 1, status: "transferred" },
  );
});

Deno.test("summaries carry the totals of the summary line, elapsed_ms and exit_code (and error when a run was stopped)", () => {
  const s = {
    ...emptySummary(),
    files: 2,
    bytes: 10,
    skipped: 1,
    failed: 1,
    omissions: [{ path: "f", message: "m" }],
    withheld: 2,
    deleted: 3,
  };
  assert.deepEqual(summaryJson(s, 2, 1234.4), {
    type: "summary",
    files: 2,
    bytes: 10,
    skipped: 1,
    failed: 1,
    not_transferred: 3,
    deleted: 3,
    resumed_bytes: 0,
    elapsed_ms: 1234,
    exit_code: 2,
  });
  assert.deepEqual(errorSummaryJson("Cannot reach h: x", 4, 5), {
    type: "summary",
    elapsed_ms: 5,
    exit_code: 4,
    error: "Cannot reach h: x",
  });
  assert.deepEqual(
    followSummaryJson(
      { appendedBytes: 5, fetchedFiles: 1, fetchedBytes: 7, seconds: 1 },
      0,
      1000,
    ),
    {
      type: "summary",
      appended_bytes: 5,
      fetched_files: 1,
      fetched_bytes: 7,
      elapsed_ms: 1000,
      exit_code: 0,
    },
  );
});
