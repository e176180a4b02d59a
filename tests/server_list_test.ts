/** Tests of lib/server/endpoints/list.ts and directory_reads.ts: /v1/list through the handler, resumed, raced and queued. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { DirectoryReads } from "../lib/server/directory_reads.ts";
import type { ListEntry, StatEntry } from "../lib/shared/wire.ts";
import {
  expectError,
  NON_ASCII,
  SECRET,
  withFixture,
} from "./_server_fixture.ts";

Deno.test("GET /v1/list streams well-formed NDJSON without refused entries", async () => {
  await withFixture(async (f) => {
    const res = await f.call(`/v1/list?path=${f.q("")}`);
    assert.equal(res.status, 200);
    assert.equal(
      res.headers.get("content-type"),
      "application/x-ndjson; charset=utf-8",
    );
    const text = await res.text();
    assert.ok(text.endsWith("\n"));
    const entries = text.trimEnd().split("\n").map((line) =>
      JSON.parse(line) as ListEntry
    );
    const paths = entries.map((e) => e.path);
    assert.deepEqual(
      [...paths].sort(),
      [
        "big.bin",
        "empty.bin",
        "emptydir",
        "hello.txt",
        "link_in_dir",
        "link_in_dir/deep",
        "link_in_dir/deep/leaf.txt",
        NON_ASCII,
        "nested",
        "nested/deep",
        "nested/deep/leaf.txt",
        "with space.txt",
      ].sort(),
    );
    for (const e of entries) {
      assert.ok(e.type === "file" || e.type === "dir");
      assert.ok(!e.path.startsWith("/") && e.path !== "");
      assert.match(e.etag, /^"[0-9a-f-]+"$/);
      const slash = e.path.lastIndexOf("/");
      if (slash > 0) {
        const parent = paths.indexOf(e.path.slice(0, slash));
        assert.ok(
          parent >= 0 && parent < paths.indexOf(e.path),
          `${e.path} after its directory`,
        );
      }
    }
    const byPath = new Map(entries.map((e) => [e.path, e]));
    assert.equal(byPath.get("empty.bin")!.size, 0);
    assert.equal(byPath.get("big.bin")!.size, f.big.length);
    assert.equal(byPath.get("emptydir")!.type, "dir");
    assert.equal(byPath.get("link_in_dir")!.type, "dir");
    assert.ok(!text.includes(SECRET));

    const stat = await (await f.call(`/v1/stat?path=${f.q("hello.txt")}`))
      .json() as StatEntry;
    assert.equal(byPath.get("hello.txt")!.etag, stat.etag);

    const empty = await f.call(`/v1/list?path=${f.q("emptydir")}`);
    assert.equal(await empty.text(), "");
    await expectError(
      await f.call(`/v1/list?path=${f.q("hello.txt")}`),
      400,
      "not_a_directory",
    );
    await expectError(
      await f.call(`/v1/list?path=${f.q(".ssh")}`),
      403,
      "forbidden_dir",
    );
  });
});

Deno.test("GET /v1/list walks a wide tree in batches", async () => {
  await withFixture(async (f) => {
    const wide = join(f.root, "wide");
    await Deno.mkdir(wide);
    for (let i = 0; i < 300; i++) {
      if (i % 50 === 0) await Deno.mkdir(join(wide, `d${i}`));
      await Deno.writeTextFile(
        join(wide, i % 50 === 0 ? `d${i}/f` : `f${i}`),
        "x",
      );
    }
    const res = await f.call(`/v1/list?path=${f.q("wide")}`);
    const reader = res.body!.getReader();
    let chunks = 0;
    let text = "";
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks++;
      text += new TextDecoder().decode(value);
    }
    assert.ok(chunks > 1, "streamed in several chunks");
    assert.equal(text.trimEnd().split("\n").length, 300 + 6);
  });
});

Deno.test("GET /v1/list?after= resumes a cut listing exactly after the last entry received", async () => {
  await withFixture(async (f) => {
    // Deep and wide: several batches in one directory, subdirectories at
    // several depths, a symlinked directory and refused entries on the way.
    const t = join(f.root, "tree");
    await Deno.mkdir(join(t, "b/c/d"), { recursive: true });
    await Deno.mkdir(join(t, "a"));
    await Deno.mkdir(join(t, "e"));
    for (let i = 0; i < 600; i++) {
      await Deno.writeTextFile(join(t, "a", `f${i}`), "x");
    }
    for (const p of ["b/1", "b/c/2", "b/c/d/3", "e/4", "z", "m"]) {
      await Deno.writeTextFile(join(t, p), "y");
    }
    await Deno.writeTextFile(join(t, "b/id_rsa"), SECRET);
    await Deno.symlink(join(t, "b/c"), join(t, "l"));
    const listing = async (after?: string) => {
      const q = after === undefined
        ? ""
        : `&after=${encodeURIComponent(after)}`;
      const res = await f.call(`/v1/list?path=${f.q("tree")}${q}`);
      assert.equal(res.status, 200);
      const text = await res.text();
      return text === ""
        ? []
        : text.trimEnd().split("\n").map((line) =>
          (JSON.parse(line) as ListEntry).path
        );
    };
    const all = await listing();
    assert.equal(all.length, 600 + 6 + 6 + 3, all.join(" "));
    assert.ok(!all.includes("b/id_rsa"));
    // A directory's own entries come sorted, before any of its subdirectories.
    const top = all.filter((p) => !p.includes("/"));
    assert.deepEqual(top, ["a", "b", "e", "l", "m", "z"]);
    assert.deepEqual(all.slice(0, 6), top);
    // Every cut: the rest, exactly.
    for (
      let k = 0;
      k < all.length;
      k += k < 20 || k > all.length - 20 ? 1 : 37
    ) {
      assert.deepEqual(
        await listing(all[k]),
        all.slice(k + 1),
        `after ${all[k]}`,
      );
    }
    // The entry the listing was cut after has gone: the rest still follows it.
    await Deno.remove(join(t, "b/c/2"));
    assert.deepEqual(
      await listing("b/c/2"),
      all.slice(all.indexOf("b/c/2") + 1).filter((p) => p !== "l/2"),
    );
    // A way down that has gone: its later siblings still come.
    await Deno.remove(join(t, "b"), { recursive: true });
    assert.deepEqual(
      await listing("b/c/d/3"),
      all.slice(all.indexOf("b/c/d/3") + 1).filter((p) => !p.startsWith("l/")),
    );
    for (const bad of ["", "/abs", "a/../b", "a//b", "./a", "a/."]) {
      await expectError(
        await f.call(
          `/v1/list?path=${f.q("tree")}&after=${encodeURIComponent(bad)}`,
        ),
        400,
        "bad_request",
      );
    }
  });
});

Deno.test("GET /v1/list never lists a directory that was swapped for a symlink while the listing streamed", async () => {
  await withFixture(async (f) => {
    const outside = join(f.tmp, "outside");
    await Deno.mkdir(outside);
    await Deno.writeTextFile(join(outside, "outside-name.txt"), SECRET);
    const res = await f.call(`/v1/list?path=${f.q("")}`);
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    // The first chunk is the root's own entries; "nested" is still to be entered.
    let text = dec.decode((await reader.read()).value);
    assert.ok(text.includes('"path":"nested"'));
    assert.ok(!text.includes('"nested/deep"'));
    await Deno.rename(join(f.root, "nested"), join(f.tmp, "nested_old"));
    await Deno.symlink(outside, join(f.root, "nested"));
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      text += dec.decode(value);
    }
    assert.ok(!text.includes("outside-name.txt"), text);
    assert.ok(!text.includes(SECRET));
  });
});

Deno.test("listings beyond listJobs wait in line, and one past listQueue gets 503 busy", async () => {
  await withFixture(
    async (f) => {
      for (let i = 0; i < 600; i++) {
        await Deno.writeTextFile(join(f.root, `many-${i}.txt`), "x");
      }
      const first = await f.call(`/v1/list?path=${f.q("")}`);
      assert.equal(first.status, 200);
      const reader = first.body!.getReader();
      assert.ok(!(await reader.read()).done);
      // The first holds the only slot (its body is not finished): the second waits.
      let secondDone = false;
      const second = f.call(`/v1/list?path=${f.q("")}`).then((r) => {
        secondDone = true;
        return r;
      });
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(secondDone, false);
      await expectError(await f.call(`/v1/list?path=${f.q("")}`), 503, "busy");
      await reader.cancel();
      const res = await second;
      assert.equal(res.status, 200);
      const text = await res.text();
      assert.ok(text.includes('"path":"many-599.txt"'));
    },
    {},
    {
      limits: { listJobs: 1, listQueue: 1, peerListings: 1, peerListQueue: 1 },
    },
  );
});

Deno.test("readDirectory() reads a directory once for listings that share a cache, and again once it changes", async () => {
  await withFixture(async (f) => {
    const dir = join(f.root, "big");
    await Deno.mkdir(dir);
    for (let i = 0; i < 5000; i++) {
      Deno.writeFileSync(join(dir, `n-${i}`), new Uint8Array());
    }
    const { createPathGuard } = await import(
      "../lib/server/jail/path_guard.ts"
    );
    const guard = await createPathGuard({ onlyAllowedPath: [f.root] });
    const checked = await guard.check(dir);
    const cache = new DirectoryReads();
    const a = guard.readDirectory(checked, cache);
    const b = guard.readDirectory(checked, cache);
    assert.equal(a?.length, 5000);
    // The very same array: the second listing did not read the directory.
    assert.ok(a === b);
    // A new name changes the directory's times: it is read again.
    await new Promise((r) => setTimeout(r, 5));
    await Deno.writeTextFile(join(dir, "zz-new"), "");
    const c = guard.readDirectory(checked, cache);
    assert.ok(c !== a);
    assert.equal(c?.at(-1), "zz-new");
    // Without a cache every call reads.
    assert.ok(guard.readDirectory(checked) !== guard.readDirectory(checked));
  });
});

Deno.test("DirectoryReads runs reads one at a time and leaves the event loop free after a long one", async () => {
  const reads = new DirectoryReads();
  const busy = (ms: number) => {
    const end = performance.now() + ms;
    while (performance.now() < end) { /* a long synchronous read */ }
    return performance.now();
  };
  let timerRan = 0;
  const firstEnd = reads.run(() => busy(40));
  const secondStart = reads.run(() => performance.now());
  setTimeout(() => timerRan = performance.now(), 0);
  const [end1, start2] = await Promise.all([firstEnd, secondStart]);
  assert.ok(
    start2 - end1 >= 35,
    `the next read started ${start2 - end1} ms after`,
  );
  // Something else got the event loop in between.
  assert.ok(timerRan > end1 && timerRan < start2);
});
