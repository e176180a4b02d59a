/** Tests of lib/server/watch_hub.ts: cursors, inotify wake-ups, file rotation, and the stat-poll fallback. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fsTypeFromMountinfo, WatchHub } from "../lib/server/watch_hub.ts";

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

/** Lets the hub consume the events emitted so far. */
function settle(): Promise<void> {
  return new Promise((r) => setTimeout(r, 20));
}

/** A watcher fed by hand: each `emit` is one inotify event. */
function fakeWatcher() {
  let push: ((e: Deno.FsEvent) => void) | undefined;
  const queue: Deno.FsEvent[] = [];
  let closed = false;
  const watcher = {
    close() {
      closed = true;
      push?.({ kind: "other", paths: [] });
    },
    async *[Symbol.asyncIterator]() {
      while (!closed) {
        if (queue.length === 0) {
          await new Promise<void>((r) => push = () => r());
          continue;
        }
        yield queue.shift()!;
      }
    },
  };
  return {
    watchFs: () => watcher,
    emit(dir: string, ...names: string[]) {
      for (const n of names) {
        queue.push({ kind: "modify", paths: [join(dir, n)] });
      }
      push?.({ kind: "other", paths: [] });
    },
  };
}

Deno.test("a path changed many times between polls is returned once", async () => {
  const fake = fakeWatcher();
  await withHub(async (hub, dir) => {
    const { cursor } = await hub.wait(dir, true, null, wait);
    fake.emit(dir, ...Array(5000).fill("busy.log"), "other.log", "busy.log");
    await settle();
    const r = await hub.wait(dir, true, cursor, wait);
    assert.deepEqual(r.changed, ["other.log", "busy.log"]);
    assert.equal(r.cursor.split(".")[1], "5002");
  }, { watchFs: fake.watchFs });
});

Deno.test("a cursor from before forgotten changes gets rescan, a recent one does not", async () => {
  const fake = fakeWatcher();
  await withHub(async (hub, dir) => {
    const { cursor: old } = await hub.wait(dir, true, null, wait);
    fake.emit(dir, "a", "b", "c");
    await settle();
    const { cursor } = await hub.wait(dir, true, old, wait);
    assert.equal(cursor.split(".")[1], "3");
    // Only 3 distinct paths are remembered: "a" is forgotten when "d" comes.
    fake.emit(dir, "d");
    await settle();
    let recent = await hub.wait(dir, true, cursor, wait);
    assert.deepEqual(recent.changed, ["d"]);
    assert.equal(recent.rescan, false);
    recent = await hub.wait(dir, true, old, wait);
    assert.equal(recent.rescan, true);
    // Changed again, a path is remembered as its latest change only.
    fake.emit(dir, "b");
    await settle();
    const again = await hub.wait(dir, true, cursor, wait);
    assert.deepEqual(again.changed.sort(), ["b", "d"]);
  }, { watchFs: fake.watchFs, maxEvents: 3 });
});

Deno.test("close() wakes every waiting poll at once, and later polls do not wait", async () => {
  const dir = await Deno.realPath(await Deno.makeTempDir());
  const hub = new WatchHub();
  try {
    const { cursor } = await hub.wait(dir, true, null, wait);
    const long = { timeoutMs: 60_000, pollMs: 50 };
    const pending = hub.wait(dir, true, cursor, long);
    hub.close();
    assert.equal(hub.closed, true);
    assert.equal((await pending).rescan, true);
    assert.equal((await hub.wait(dir, true, cursor, long)).rescan, true);
  } finally {
    hub.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a root on a network file system is stat-polled: inotify there misses other machines' writes", async () => {
  const silent = fakeWatcher();
  await withHub(async (hub, dir) => {
    await Deno.writeTextFile(join(dir, "run.log"), "1");
    const { cursor } = await hub.wait(dir, true, null, wait);
    await new Promise((r) => setTimeout(r, 120)); // the first snapshot
    await Deno.writeTextFile(join(dir, "run.log"), "2", { append: true });
    let r = await hub.wait(dir, true, cursor, wait);
    while (!r.changed.includes("run.log")) {
      r = await hub.wait(dir, true, r.cursor, wait);
    }
    assert.equal(r.rescan, false);
  }, { watchFs: silent.watchFs, fsTypeOf: () => "nfs4" });
});

Deno.test("fsTypeFromMountinfo() picks the longest mount point holding the path", () => {
  const mountinfo = [
    "22 27 0:21 / / rw,relatime - ext4 /dev/vda rw",
    "30 22 0:40 / /data rw,relatime shared:5 - nfs4 srv:/export rw,vers=4.2",
    "31 30 0:41 / /data/local rw - xfs /dev/vdb rw",
    "32 22 0:42 / /mnt/with\\040space rw - cifs //s/x rw",
    "garbage line",
  ].join("\n");
  const cases: Array<[string, string]> = [
    ["/home/u/x", "ext4"],
    ["/data", "nfs4"],
    ["/data/runs/run42", "nfs4"],
    ["/data/local/x", "xfs"],
    ["/data/localx", "nfs4"],
    ["/mnt/with space/f", "cifs"],
  ];
  for (const [path, type] of cases) {
    assert.equal(fsTypeFromMountinfo(path, mountinfo), type, path);
  }
  assert.equal(fsTypeFromMountinfo("/x", "no mounts here"), undefined);
});
