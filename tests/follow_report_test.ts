/** Tests of lib/client/follow_report.ts: what `hsync --sync` tells the user, with and without --quiet. */
import assert from "node:assert/strict";
import {
  createFollowReporter,
  describeFollowEvent,
  formatFollowSummary,
} from "../lib/client/follow_report.ts";
import type { FollowEvent } from "../lib/client/follow_events.ts";

const events: FollowEvent[] = [
  { type: "following", local: "/o", files: 2, resumed: false, fromNow: false },
  { type: "fetched", path: "new.log", bytes: 2048, reason: "new" },
  { type: "fetched", path: "a.log", bytes: 10, reason: "truncated" },
  { type: "appended", path: "a.log", bytes: 5, size: 15 },
  {
    type: "reconnecting",
    attempt: 1,
    max: 5,
    delayMs: 1500,
    message: "connection refused",
  },
  { type: "warning", path: "x", message: "Careful" },
];

async function lines(quiet: boolean): Promise<string[]> {
  const out: string[] = [];
  const reporter = await createFollowReporter({
    write: (text) => out.push(text),
    isTerminal: false,
    quiet,
    debug: false,
    host: "h:1",
  });
  try {
    for (const e of events) reporter.onEvent(e);
  } finally {
    reporter.stop();
  }
  return out;
}

Deno.test("the follow reporter tells each event in one line; --quiet keeps what the user must know", async () => {
  assert.deepEqual(await lines(false), [
    'hsync: following into "/o" (2 file(s)); Ctrl-C stops\n',
    "hsync: new file new.log (2.00 KiB)\n",
    "hsync: a.log got shorter on the server: fetched it again whole (10 B)\n",
    "hsync: cannot reach h:1: connection refused; retry 1 of 5 in 1.5 s\n",
    "hsync: warning: x: Careful\n",
  ]);
  assert.deepEqual(await lines(true), [
    "hsync: a.log got shorter on the server: fetched it again whole (10 B)\n",
    "hsync: cannot reach h:1: connection refused; retry 1 of 5 in 1.5 s\n",
    "hsync: warning: x: Careful\n",
  ]);
  assert.equal(describeFollowEvent(events[3], "h:1"), undefined);
  assert.match(
    formatFollowSummary({
      appendedBytes: 5,
      fetchedFiles: 1,
      fetchedBytes: 10,
      seconds: 2,
    }),
    /^hsync: stopped following after 2\.0 s: 5 B appended, 1 file\(s\) fetched whole \(10 B\)$/,
  );
});
