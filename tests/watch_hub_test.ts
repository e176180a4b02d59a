/** Tests of lib/watch_hub.ts: cursors, inotify wake-ups, file rotation, and the stat-poll fallback. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { WatchHub } from "../lib/watch_hub.ts";

async function withHub(
  fn: (hub: WatchHub, dir: string) => Promise<void>,
  options: ConstructorParameters<typeof WatchHub>[0] = {},
) {
  const dir = await Deno.realPath(await Deno.makeTempDir());
  const hub = new WatchHub(options);
  try {
    await fn(hub, dir);
  } finally {
    hub.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const wait = { timeoutMs: 2000, pollMs: 50 };

Deno.test("a first poll without a cursor answers at once with rescan and a cursor", async () => {
  await withHub(async (hub, dir) => {
    const r = await hub.wait(dir, true, null, wait);
    assert.equal(r.rescan, true);
    assert.match(r.cursor, /^\w+\.0$/);
    const bogus = await hub.wait(dir, true, "nope.3", wait);
    assert.equal(bogus.rescan, true);
  });
});

Deno.test("an append under a watched directory wakes the poll within milliseconds", async () => {
  await withHub(async (hub, dir) => {
    await Deno.mkdir(join(dir, "sub"));
    await Deno.writeTextFile(join(dir, "sub/log.txt"), "a\n");
    const { cursor } = await hub.wait(dir, true, null, wait);
    const started = performance.now();
    const pending = hub.wait(dir, true, cursor, wait);
    setTimeout(
      () =>
        Deno.writeTextFile(join(dir, "sub/log.txt"), "b\n", { append: true }),
      20,
    );
    const r = await pending;
    const ms = performance.now() - started;
    assert.equal(r.rescan, false);
    assert.ok(r.changed.includes("sub/log.txt"), JSON.stringify(r));
    assert.ok(ms < 1500, `took ${ms} ms`);
    assert.notEqual(r.cursor, cursor);
  });
});

Deno.test("changes between two polls are returned by the next poll, not lost", async () => {
  await withHub(async (hub, dir) => {
    const { cursor } = await hub.wait(dir, true, null, wait);
    await Deno.writeTextFile(join(dir, "a"), "1");
    await Deno.writeTextFile(join(dir, "b"), "2");
    await new Promise((r) => setTimeout(r, 100));
    const r = await hub.wait(dir, true, cursor, wait);
    assert.deepEqual([...new Set(r.changed)].sort(), ["a", "b"]);
  });
});

Deno.test("a quiet root times out with no changes and the same cursor", async () => {
  await withHub(async (hub, dir) => {
    const { cursor } = await hub.wait(dir, true, null, wait);
    const r = await hub.wait(dir, true, cursor, { timeoutMs: 100, pollMs: 50 });
    assert.deepEqual(r, { cursor, changed: [], rescan: false });
  });
});

Deno.test("a watched file reports its rotation (renamed away and created again)", async () => {
  await withHub(async (hub, dir) => {
    const file = join(dir, "run.log");
    await Deno.writeTextFile(file, "old");
    const { cursor } = await hub.wait(file, false, null, wait);
    const pending = hub.wait(file, false, cursor, wait);
    await Deno.writeTextFile(join(dir, "other.txt"), "x"); // not the watched file
    await Deno.rename(file, join(dir, "run.log.1"));
    await Deno.writeTextFile(file, "new");
    const r = await pending;
    assert.deepEqual([...new Set(r.changed)], [""]);
  });
});

Deno.test("where inotify is unavailable, a stat-poll finds appends and new files", async () => {
  await withHub(async (hub, dir) => {
    await Deno.writeTextFile(join(dir, "x"), "1");
    const { cursor } = await hub.wait(dir, true, null, wait);
    await new Promise((r) => setTimeout(r, 120)); // let the first snapshot be taken
    const pending = hub.wait(dir, true, cursor, wait);
    await Deno.writeTextFile(join(dir, "x"), "22", { append: true });
    await Deno.writeTextFile(join(dir, "y"), "new");
    let r = await pending;
    const seen = new Set(r.changed);
    while (seen.size < 2) {
      r = await hub.wait(dir, true, r.cursor, wait);
      r.changed.forEach((p) => seen.add(p));
    }
    assert.deepEqual([...seen].sort(), ["x", "y"]);
  }, {
    watchFs: () => {
      throw new Error("inotify unavailable");
    },
  });
});
