/** Tests of lib/server/endpoints/list.ts and directory_reads.ts: /v1/list through the handler, resumed, raced and queued. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { DirectoryReads } from "../lib/server/directory_reads.ts";
import { Breather } from "../lib/shared/breather.ts";
import {
  isOmission,
  type ListEntry,
  type ListLine,
  type StatEntry,
} from "../lib/shared/wire.ts";
import {
  expectError,
  type Fixture,
  NON_ASCII,
  SECRET,
  withFixture,
} from "./_server_fixture.ts";
import { statEntry as statEntryOf } from "../lib/server/endpoints/_checked.ts";

Deno.test("GET /v1/list streams well-formed NDJSON, each refused entry in its place as an omission", async () => {
  await withFixture(async (f) => {
    const res = await f.call(`/v1/list?path=${f.q("")}`);
    assert.equal(res.status, 200);
    assert.equal(
      res.headers.get("content-type"),
      "application/x-ndjson; charset=utf-8",
    );
    const text = await res.text();
    assert.ok(text.endsWith("\n"));
    const lines = text.trimEnd().split("\n").map((line) =>
      JSON.parse(line) as ListLine
    );
    const entries = lines.filter((l) => !isOmission(l)) as ListEntry[];
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
    // The root's own lines, entries and omissions, in name order: the
    // refused ones (.ssh, id_rsa, server-private.bin, state-dir) unnamed.
    const top = lines.filter((l) =>
      l.path === undefined || !l.path.includes("/")
    );
    assert.deepEqual(
      top.map((l) => isOmission(l) ? `${l.omitted} ${l.path ?? ""}` : l.path),
      [
        "withheld ",
        "big.bin",
        "empty.bin",
        "emptydir",
        "special fifo",
        "hello.txt",
        "withheld ",
        "link_in_dir",
        "link link_out",
        "link loop",
        NON_ASCII,
        "nested",
        "withheld ",
        "withheld ",
        "with space.txt",
      ],
    );
    const byOmitted = new Map(
      lines.filter(isOmission).map((l) => [l.path ?? "", l]),
    );
    assert.deepEqual(byOmitted.get("fifo"), {
      omitted: "special",
      path: "fifo",
      message: "Not a regular file: FIFO",
    });
    assert.deepEqual(byOmitted.get("link_out"), {
      omitted: "link",
      path: "link_out",
      message:
        "Symbolic link leads outside the served paths, to a refused entry or nowhere",
    });
    assert.deepEqual(byOmitted.get("loop"), {
      omitted: "link",
      path: "loop",
      message: "Symbolic link loops back to a directory above it",
    });
    assert.deepEqual(byOmitted.get(""), {
      omitted: "withheld",
      message: "Withheld by the server's rules",
    });
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
    // Neither a refused name nor where a link leads.
    for (
      const hidden of ["id_rsa", ".ssh", "state-dir", "server-private", f.tmp]
    ) {
      assert.ok(!text.includes(hidden), hidden);
    }

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
    /** The lines of a listing of the tree, as text (a withheld line has no path). */
    const listing = async (after?: string) => {
      const q = after === undefined
        ? ""
        : `&after=${encodeURIComponent(after)}`;
      const res = await f.call(`/v1/list?path=${f.q("tree")}${q}`);
      assert.equal(res.status, 200);
      const text = await res.text();
      return text === "" ? [] : text.trimEnd().split("\n");
    };
    const pathOf = (line: string) =>
      (JSON.parse(line) as ListLine).path ?? "(withheld)";
    const lines = await listing();
    const all = lines.map(pathOf);
    assert.equal(all.length, 600 + 6 + 6 + 3 + 1, all.join(" "));
    assert.ok(!all.includes("b/id_rsa"));
    assert.deepEqual(all.slice(all.indexOf("b/1"), all.indexOf("b/1") + 3), [
      "b/1",
      "b/c",
      "(withheld)",
    ]);
    // A directory's own entries come sorted, before any of its subdirectories.
    const top = all.filter((p) => !p.includes("/") && p !== "(withheld)");
    assert.deepEqual(top, ["a", "b", "e", "l", "m", "z"]);
    assert.deepEqual(all.slice(0, 6), top);
    // Every cut after a line with a path: the rest, exactly, omissions too
    // (a withheld line comes again only when nothing named came after it).
    for (
      let k = 0;
      k < all.length;
      k += k < 20 || k > all.length - 20 ? 1 : 37
    ) {
      if (all[k] === "(withheld)") continue;
      assert.deepEqual(
        await listing(all[k]),
        lines.slice(k + 1),
        `after ${all[k]}`,
      );
    }
    const paths = async (after: string) => (await listing(after)).map(pathOf);
    // The entry the listing was cut after has gone: the rest still follows it.
    await Deno.remove(join(t, "b/c/2"));
    assert.deepEqual(
      await paths("b/c/2"),
      all.slice(all.indexOf("b/c/2") + 1).filter((p) => p !== "l/2"),
    );
    // A way down that has gone: its later siblings still come.
    await Deno.remove(join(t, "b"), { recursive: true });
    assert.deepEqual(
      await paths("b/c/d/3"),
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
    // Not listed as empty in silence: the directory is said to be unread
    // (the listing may have entered it between the rename and the symlink).
    const unread = text.trimEnd().split("\n").map((l) => JSON.parse(l))
      .filter((l: ListLine) => isOmission(l) && l.path === "nested");
    assert.equal(unread.length, 1, text);
    assert.ok(
      [
        "Directory changed while being read: it was not listed",
        "Directory vanished before it was read",
      ].includes(unread[0].message),
      text,
    );
    assert.equal(unread[0].omitted, "unreadable");
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

/** A tree holding one of every kind of entry a listing must name or withhold, under `root/odd`. */
async function oddTree(f: Fixture): Promise<{ socket: Deno.Listener }> {
  const odd = join(f.root, "odd");
  await Deno.mkdir(join(odd, "sub"), { recursive: true });
  await Deno.writeTextFile(join(odd, "hello"), "hello");
  await Deno.writeTextFile(join(odd, "sub/in-sub"), "x");
  await Deno.writeTextFile(join(odd, "id_rsa"), SECRET);
  const mkfifo = await new Deno.Command("mkfifo", {
    args: [join(odd, "pipe")],
  }).output();
  assert.ok(mkfifo.success);
  const socket = Deno.listen({ transport: "unix", path: join(odd, "sock") });
  await Deno.symlink("never-made.txt", join(odd, "dangling"));
  await Deno.symlink(join(f.tmp, "secret.txt"), join(odd, "out"));
  await Deno.symlink(".", join(odd, "self"));
  await Deno.symlink("hello", join(odd, "to_file"));
  await Deno.symlink("sub", join(odd, "to_dir"));
  // Inside, but to a refused file; and a refused name leading to an allowed one.
  await Deno.symlink("id_rsa", join(odd, "to_secret"));
  await Deno.symlink("hello", join(odd, "id_rsa_link"));
  // Leads to an allowed file, but its text names a refused directory.
  await Deno.symlink(".ssh/../hello", join(odd, "via_refused"));
  // Absolute, inside: the directories above the served one are on its way.
  await Deno.symlink(join(odd, "hello"), join(odd, "abs_in"));
  await Deno.writeTextFile(join(odd, "hard_a"), "twice");
  await Deno.link(join(odd, "hard_a"), join(odd, "hard_b"));
  // A name whose bytes are not UTF-8 ("caf\xe9.txt"), made by the shell.
  const bad = await new Deno.Command("sh", {
    args: ["-c", `cd "$1" && printf x > "$(printf 'caf\\351.txt')"`, "sh", odd],
  }).output();
  assert.ok(bad.success, new TextDecoder().decode(bad.stderr));
  const sparse = await Deno.open(join(odd, "sparse.bin"), {
    write: true,
    create: true,
  });
  await sparse.truncate(8 * 1024 * 1024);
  await sparse.seek(4 * 1024 * 1024, Deno.SeekMode.Start);
  await sparse.write(new TextEncoder().encode("abc"));
  sparse.close();
  return { socket };
}

/** The lines of `GET /v1/list` of `rel` with `query`. */
async function listLines(
  f: Fixture,
  rel: string,
  query = "",
): Promise<{ text: string; lines: ListLine[] }> {
  const res = await f.call(`/v1/list?path=${f.q(rel)}${query}`);
  const text = await res.text();
  assert.equal(res.status, 200, text);
  return {
    text,
    lines: text === ""
      ? []
      : text.trimEnd().split("\n").map((l) => JSON.parse(l) as ListLine),
  };
}

/** One line in short: `path type` for an entry, `omitted path` for an omission. */
function short(line: ListLine): string {
  return isOmission(line)
    ? `${line.omitted} ${line.path ?? "-"}`
    : `${line.path} ${line.type}`;
}

const LINK_MESSAGE =
  "Symbolic link leads outside the served paths, to a refused entry or nowhere";

Deno.test("GET /v1/list names FIFOs, sockets, bad links, loops and names it cannot open, and withholds refused entries unnamed", async () => {
  await withFixture(async (f) => {
    const { socket } = await oddTree(f);
    try {
      const { text, lines } = await listLines(f, "odd");
      assert.deepEqual(lines.map(short), [
        "abs_in file",
        "name caf\uFFFD.txt",
        "link dangling",
        "hard_a file",
        "hard_b file",
        "hello file",
        "withheld -",
        "withheld -",
        "link out",
        "special pipe",
        "link self",
        "special sock",
        "sparse.bin file",
        "sub dir",
        "to_dir dir",
        "to_file file",
        "link to_secret",
        "link via_refused",
        "sub/in-sub file",
        "to_dir/in-sub file",
      ]);
      const omitted = new Map(
        lines.filter(isOmission).map((l) => [l.path, l.message]),
      );
      assert.equal(omitted.get("pipe"), "Not a regular file: FIFO");
      assert.equal(omitted.get("sock"), "Not a regular file: socket");
      for (const link of ["dangling", "out", "to_secret", "via_refused"]) {
        assert.equal(omitted.get(link), LINK_MESSAGE, link);
      }
      assert.equal(
        omitted.get("self"),
        "Symbolic link loops back to a directory above it",
      );
      assert.equal(
        omitted.get("caf\uFFFD.txt"),
        "Name is not valid UTF-8: the server cannot open it",
      );
      // Followed links are listed as what they lead to.
      const byPath = new Map(
        lines.filter((l) => !isOmission(l)).map((
          l,
        ) => [l.path, l as ListEntry]),
      );
      assert.equal(byPath.get("to_file")!.etag, byPath.get("hello")!.etag);
      // Where links lead, and refused names, are never told.
      for (
        const hidden of [SECRET, "id_rsa", "never-made", ".ssh", "secret.txt"]
      ) {
        assert.ok(!text.includes(hidden), hidden);
      }
    } finally {
      socket.close();
    }
  });
});

Deno.test("GET /v1/list?links=1 lists a link that stays inside as a link with its text, never walked into, and names the others", async () => {
  await withFixture(async (f) => {
    const { socket } = await oddTree(f);
    try {
      const { text, lines } = await listLines(f, "odd", "&links=1");
      assert.deepEqual(lines.map(short), [
        "abs_in symlink",
        "name caf\uFFFD.txt",
        "link dangling",
        "hard_a file",
        "hard_b file",
        "hello file",
        "withheld -",
        "withheld -",
        "link out",
        "special pipe",
        "self symlink",
        "special sock",
        "sparse.bin file",
        "sub dir",
        "to_dir symlink",
        "to_file symlink",
        "link to_secret",
        "link via_refused",
        "sub/in-sub file",
      ]);
      const byPath = new Map(
        lines.filter((l) => !isOmission(l)).map((
          l,
        ) => [l.path, l as ListEntry]),
      );
      const link = Deno.lstatSync(join(f.root, "odd/to_file"));
      assert.deepEqual(byPath.get("to_file"), {
        path: "to_file",
        ...statEntryOf(link, "symlink"),
        target: "hello",
      });
      assert.equal(byPath.get("to_dir")!.target, "sub");
      assert.equal(byPath.get("self")!.target, ".");
      assert.equal(byPath.get("abs_in")!.target, join(f.root, "odd/hello"));
      assert.equal(byPath.get("to_file")!.size, "hello".length);
      for (
        const hidden of [SECRET, "id_rsa", "never-made", ".ssh", "secret.txt"]
      ) {
        assert.ok(!text.includes(hidden), hidden);
      }
    } finally {
      socket.close();
    }
  });
});

Deno.test("GET /v1/list tags hard-linked files with hardlinks=1 only, and marks sparse files always", async () => {
  await withFixture(async (f) => {
    const { socket } = await oddTree(f);
    try {
      const entries = async (query: string) =>
        new Map(
          (await listLines(f, "odd", query)).lines
            .filter((l) => !isOmission(l))
            .map((l) => [l.path, l as ListEntry]),
        );
      const tagged = await entries("&hardlinks=1");
      const a = Deno.statSync(join(f.root, "odd/hard_a"));
      assert.equal(tagged.get("hard_a")!.inode, `${a.dev}:${a.ino}`);
      assert.equal(tagged.get("hard_b")!.inode, tagged.get("hard_a")!.inode);
      for (const single of ["hello", "sparse.bin", "to_file", "sub"]) {
        assert.equal(tagged.get(single)!.inode, undefined, single);
      }
      const plain = await entries("");
      for (const e of plain.values()) assert.equal(e.inode, undefined, e.path);
      for (const listing of [tagged, plain]) {
        assert.equal(listing.get("sparse.bin")!.sparse, true);
        assert.equal(listing.get("sparse.bin")!.size, 8 * 1024 * 1024);
        for (const full of ["hello", "hard_a", "sub", "to_file"]) {
          assert.equal(listing.get(full)!.sparse, undefined, full);
        }
      }
      // An empty file has no blocks and no holes either.
      assert.equal((await entries("")).get("sub/in-sub")!.sparse, undefined);
    } finally {
      socket.close();
    }
  });
});

Deno.test("GET /v1/list keeps an unreadable directory's line and says it was not read, before anything inside it", async () => {
  if (Deno.uid() === 0) {
    // deno-lint-ignore no-console
    console.log(
      "skipped: running as root, which reads a directory of mode 000 anyway (the swap test covers the unreadable line)",
    );
    return;
  }
  await withFixture(async (f) => {
    const dir = join(f.root, "locked");
    await Deno.mkdir(join(dir, "inner"), { recursive: true });
    await Deno.writeTextFile(join(dir, "inner/x"), "x");
    await Deno.writeTextFile(join(f.root, "nested/zz"), "z");
    await Deno.chmod(dir, 0o000);
    try {
      const { lines } = await listLines(f, "");
      const shorts = lines.map(short);
      const line = shorts.indexOf("locked dir");
      const omission = shorts.indexOf("unreadable locked");
      assert.ok(line >= 0 && omission > line, shorts.join(" | "));
      // Entered in order: after the directories before it, before those after it.
      assert.ok(shorts.indexOf("link_in_dir/deep dir") < omission);
      assert.ok(shorts.indexOf("nested/zz file") > omission);
      assert.ok(!shorts.some((s) => s.includes("inner")));
      assert.deepEqual(lines[omission], {
        omitted: "unreadable",
        path: "locked",
        message: "Directory cannot be read: permission denied",
      });
      // The listed directory itself: ".".
      await Deno.chmod(dir, 0o300);
      assert.deepEqual((await listLines(f, "locked")).lines, [{
        omitted: "unreadable",
        path: ".",
        message: "Directory cannot be read: permission denied",
      }]);
    } finally {
      await Deno.chmod(dir, 0o700);
    }
  });
});

Deno.test("GET /v1/list?ifdir=1 answers 204 and nothing more for a file, 404 for a missing path, and lists a directory as without it", async () => {
  await withFixture(async (f) => {
    const file = await f.call(`/v1/list?path=${f.q("hello.txt")}&ifdir=1`);
    assert.equal(file.status, 204);
    assert.equal(await file.text(), "");
    // Without it, a file is still refused as not a directory.
    const plain = await f.call(`/v1/list?path=${f.q("hello.txt")}`);
    assert.equal(plain.status, 400);
    assert.equal((await plain.json()).error, "not_a_directory");
    const missing = await f.call(`/v1/list?path=${f.q("nope")}&ifdir=1`);
    assert.equal(missing.status, 404);
    await missing.body?.cancel();
    const dir = await f.call(`/v1/list?path=${f.q("nested")}&ifdir=1`);
    assert.equal(dir.status, 200);
    assert.equal(
      await dir.text(),
      await (await f.call(`/v1/list?path=${f.q("nested")}`)).text(),
    );
  });
});

Deno.test("GET /v1/list turns the event loop after its first two batches when more follows (the runtime writes them out then), never for a listing of one batch", async () => {
  const proto = Breather.prototype;
  const turn = proto.turn;
  let turns = 0;
  proto.turn = function (this: Breather) {
    turns++;
    return turn.call(this);
  };
  try {
    await withFixture(async (f) => {
      const tree = join(f.root, "tree");
      for (let d = 0; d < 3; d++) {
        await Deno.mkdir(join(tree, `d${d}`), { recursive: true });
        for (let i = 0; i < 10; i++) {
          await Deno.writeTextFile(join(tree, `d${d}`, `f${i}`), "x");
        }
      }
      const text = await (await f.call(`/v1/list?path=${f.q("tree")}`)).text();
      assert.equal(text.trimEnd().split("\n").length, 3 + 30);
      // The top directories, then d0's files: each written out at once.
      assert.equal(turns, 2);
      turns = 0;
      const one = await (await f.call(`/v1/list?path=${f.q("tree/d1")}`))
        .text();
      assert.equal(one.trimEnd().split("\n").length, 10);
      assert.equal(turns, 0);
    });
  } finally {
    proto.turn = turn;
  }
});
