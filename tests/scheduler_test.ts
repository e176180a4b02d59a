/** Tests of lib/client/scheduler.ts: the named limits of a pull, and background tasks that are never lost. */
import assert from "node:assert/strict";
import defaults from "../hsync.ini" with { type: "text" };
import { clientSettings, loadConfig } from "../lib/shared/config.ts";
import { BUNDLE_SLOTS, Scheduler, TaskGroup } from "../lib/client/scheduler.ts";

async function settings(overrides: Record<string, string>) {
  const config = await loadConfig({ defaults, hsyncDir: "/nonexistent" });
  return clientSettings(config, "hscp", overrides);
}

Deno.test("Scheduler: -n bounds ranged files, the smaller of Max_runing and Max_tcp_conn bounds data requests, bundles stay within both", async () => {
  const s = new Scheduler(
    await settings({ Max_runing: "16", Max_tcp_conn: "3" }),
    5,
  );
  assert.equal(s.files.limit, 5);
  assert.equal(s.requests.limit, 3);
  assert.equal(s.bundles.limit, 3);
  const wide = new Scheduler(
    await settings({ Max_runing: "6", Max_tcp_conn: "100" }),
    0,
  );
  assert.equal(wide.files.limit, 1, "-n 0 still moves one file");
  assert.equal(wide.requests.limit, 6);
  assert.equal(wide.bundles.limit, BUNDLE_SLOTS);
});

Deno.test("TaskGroup.drain() waits for tasks spawned while it waits, and reports a task's error", async () => {
  const errors: unknown[] = [];
  const group = new TaskGroup((e) => errors.push(e));
  const order: string[] = [];
  group.spawn((async () => {
    await new Promise((r) => setTimeout(r, 10));
    order.push("first");
    group.spawn((async () => {
      await new Promise((r) => setTimeout(r, 10));
      order.push("second");
      throw new Error("boom");
    })());
  })());
  assert.equal(group.size, 1);
  await group.drain();
  assert.deepEqual(order, ["first", "second"]);
  assert.equal(group.size, 0);
  assert.deepEqual(errors.map((e) => (e as Error).message), ["boom"]);
});
