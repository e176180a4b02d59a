/** Tests of lib/server/jail/write_jail.ts: one step per attack on a push, and a swap race that writes nothing outside. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { HttpError } from "../lib/shared/errors.ts";
import {
  createWriteJail,
  type WriteJail,
} from "../lib/server/jail/write_jail.ts";
import { startSwapper } from "./_swapper.ts";

interface Fixture {
  tmp: string;
  root: string;
  outside: string;
  hsyncDir: string;
  jail: WriteJail;
}

async function withFixture(
  fn: (f: Fixture) => void | Promise<void>,
): Promise<void> {
  const tmp = await Deno.realPath(
    await Deno.makeTempDir({ prefix: "hsync_write_jail_" }),
  );
  const root = join(tmp, "incoming");
  const outside = join(tmp, "outside");
  const hsyncDir = join(root, "state");
  for (const dir of [root, outside, hsyncDir, join(root, "sub")]) {
    await Deno.mkdir(dir, { recursive: true });
  }
  await Deno.writeTextFile(join(outside, "victim.txt"), "VICTIM");
  const jail = await createWriteJail({
    writablePath: [root],
    forbiddenDir: [".ssh"],
    forbiddenFile: ["id_rsa*"],
    alwaysDenied: [hsyncDir],
  });
  try {
    await fn({ tmp, root, outside, hsyncDir, jail });
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

function refused(fn: () => unknown): HttpError {
  try {
    fn();
  } catch (error) {
    if (error instanceof HttpError) return error;
    throw error;
  }
  assert.fail("expected a refusal");
}

/** Writes `text` into `name` beside `path` the way a push does: part file, write, rename into place. */
async function push(
  jail: WriteJail,
  path: string,
  text: string,
): Promise<void> {
  const target = jail.target(path);
  const part = `${target.name}.hsync-part`;
  const { file, info } = await jail.open(target, part, true);
  try {
    await file.truncate(0);
    await file.write(new TextEncoder().encode(text));
  } finally {
    file.close();
  }
  jail.rename(target, part, target.name, info);
}

async function refusedAsync(fn: () => Promise<unknown>): Promise<HttpError> {
  try {
    await fn();
  } catch (error) {
    if (error instanceof HttpError) return error;
    throw error;
  }
  assert.fail("expected a refusal");
}

Deno.test("a push writes a file below Writable_path through a part file renamed into place", async () => {
  await withFixture(async (f) => {
    await push(f.jail, join(f.root, "sub", "a.txt"), "hello");
    assert.equal(
      await Deno.readTextFile(join(f.root, "sub", "a.txt")),
      "hello",
    );
    assert.deepEqual(
      [...Deno.readDirSync(join(f.root, "sub"))].map((e) => e.name),
      ["a.txt"],
    );
    // A second push replaces it (the part file is created anew).
    await push(f.jail, join(f.root, "sub", "a.txt"), "again");
    assert.equal(
      await Deno.readTextFile(join(f.root, "sub", "a.txt")),
      "again",
    );
  });
});

Deno.test("the write jail refuses every known attack with the exact status and code, and writes nothing", async (t) => {
  await withFixture(async (f) => {
    const r = (rel: string) => join(f.root, rel);
    await Deno.symlink(f.outside, r("link_out"));
    await Deno.symlink(join(f.outside, "victim.txt"), r("victim_link"));
    await Deno.symlink(join(f.outside, "victim.txt"), r("v.txt.hsync-part"));
    await Deno.mkdir(r("dir_here"));
    await Deno.mkdir(r(".ssh"));
    await Deno.writeTextFile(r("twice.txt"), "x");
    await Deno.link(r("twice.txt"), r("twice-link.txt"));
    await Deno.writeTextFile(r("h.txt.hsync-part"), "");
    await Deno.link(r("h.txt.hsync-part"), join(f.outside, "hard.hsync-part"));
    const fifo = await new Deno.Command("mkfifo", {
      args: [r("fifo.hsync-part")],
    })
      .output();
    assert.ok(fifo.success);

    const attacks: Array<[string, () => unknown, number, string]> = [
      [
        "dot-dot out of the root",
        () => f.jail.target(r("../outside/x")),
        403,
        "not_writable",
      ],
      [
        "an absolute path outside",
        () => f.jail.target("/tmp/x"),
        403,
        "not_writable",
      ],
      ["NUL", () => f.jail.target(r("a\0b")), 400, "bad_path"],
      ["a relative path", () => f.jail.target("incoming/x"), 400, "bad_path"],
      [
        "a directory symlink leading out",
        () => f.jail.target(r("link_out/x")),
        403,
        "refused",
      ],
      [
        "a missing directory",
        () => f.jail.target(r("nope/x")),
        404,
        "not_found",
      ],
      [
        "a name the deny list refuses",
        () => f.jail.target(r("id_rsa")),
        403,
        "forbidden_file",
      ],
      [
        "a Forbidden_dir",
        () => f.jail.target(r(".ssh/x")),
        403,
        "forbidden_dir",
      ],
      [
        "HSYNC_DIR",
        () => f.jail.target(join(f.hsyncDir, "x")),
        403,
        "forbidden",
      ],
      [
        "a partial-file name",
        () => f.jail.target(r("x.hsync-part")),
        400,
        "bad_path",
      ],
      [
        "a symlink planted at the part file",
        () => f.jail.open(f.jail.target(r("v.txt")), "v.txt.hsync-part", true),
        409,
        "not_regular",
      ],
      [
        "a directory where the file should go",
        () => f.jail.open(f.jail.target(r("dir_here")), "dir_here", false),
        409,
        "not_regular",
      ],
      [
        "a file with a second hard link",
        () => f.jail.open(f.jail.target(r("twice.txt")), "twice.txt", false),
        409,
        "changed",
      ],
      [
        "a part file hard-linked from outside",
        () => f.jail.open(f.jail.target(r("h.txt")), "h.txt.hsync-part", true),
        409,
        "changed",
      ],
      [
        "a FIFO at the part file",
        () => f.jail.open(f.jail.target(r("fifo")), "fifo.hsync-part", true),
        409,
        "not_regular",
      ],
    ];
    for (const [name, attempt, status, code] of attacks) {
      await t.step(name, async () => {
        const error = await refusedAsync(async () => await attempt());
        assert.equal(error.status, status, error.message);
        assert.equal(error.code, code, error.message);
        assert.ok(/^Cannot write /.test(error.message), error.message);
        // Messages show the path as asked (normalised), never where a link led.
        if (!name.startsWith("dot-dot")) {
          assert.ok(!error.message.includes(f.outside), error.message);
        }
      });
    }
    await t.step(
      "no server was ever configured to write: read only",
      async () => {
        const none = await createWriteJail({ writablePath: [] });
        const error = refused(() => none.target(r("x")));
        assert.equal(error.status, 403);
        assert.equal(error.code, "read_only");
      },
    );
    await t.step(
      "a rename over a symlink replaces the link, never its target",
      async () => {
        await push(f.jail, r("victim_link"), "mine");
        assert.equal(
          Deno.readTextFileSync(join(f.outside, "victim.txt")),
          "VICTIM",
        );
        assert.equal(Deno.lstatSync(r("victim_link")).isFile, true);
      },
    );
    assert.deepEqual(
      [...Deno.readDirSync(f.outside)].map((e) => e.name).sort(),
      ["hard.hsync-part", "victim.txt"],
    );
    assert.equal(
      await Deno.readTextFile(join(f.outside, "victim.txt")),
      "VICTIM",
    );
    assert.equal(
      await Deno.readTextFile(join(f.outside, "hard.hsync-part")),
      "",
    );
  });
});

Deno.test("makeDirs() creates each missing level inside the writable root, and refuses a way through a symlink or a file", async () => {
  await withFixture(async (f) => {
    const made = f.jail.makeDirs(join(f.root, "a", "b", "c"));
    assert.equal(made, join(f.root, "a", "b", "c"));
    assert.ok(Deno.statSync(made).isDirectory);
    // Again: nothing to do.
    assert.equal(f.jail.makeDirs(join(f.root, "a", "b", "c")), made);
    await Deno.symlink(f.outside, join(f.root, "out"));
    const through = refused(() => f.jail.makeDirs(join(f.root, "out", "x")));
    assert.equal(through.status, 403);
    await Deno.writeTextFile(join(f.root, "file"), "x");
    const onFile = refused(() => f.jail.makeDirs(join(f.root, "file", "x")));
    assert.equal(onFile.status, 409);
    const outsideRoot = refused(() =>
      f.jail.makeDirs(join(f.tmp, "elsewhere"))
    );
    assert.equal(outsideRoot.code, "not_writable");
    assert.deepEqual([...Deno.readDirSync(f.outside)].map((e) => e.name), [
      "victim.txt",
    ]);
    assert.throws(() => Deno.statSync(join(f.tmp, "elsewhere")));
  });
});

Deno.test("replace() and read() keep a small file beside a target atomically", async () => {
  await withFixture((f) => {
    const target = f.jail.target(join(f.root, "data.bin"));
    f.jail.replace(
      target,
      "data.bin.hsync-journal",
      new TextEncoder().encode("{}"),
    );
    assert.equal(
      new TextDecoder().decode(
        f.jail.read(target, "data.bin.hsync-journal", 1024),
      ),
      "{}",
    );
    assert.equal(f.jail.read(target, "data.bin.hsync-journal", 1), undefined);
    assert.equal(f.jail.read(target, "missing", 1024), undefined);
    f.jail.remove(target, "data.bin.hsync-journal");
    assert.equal(f.jail.lstat(target, "data.bin.hsync-journal"), undefined);
    // Nothing left behind but what was asked for.
    assert.deepEqual(
      [...Deno.readDirSync(f.root)].map((e) => e.name).sort(),
      ["state", "sub"],
    );
  });
});

/**
 * Writes `write` again and again into `d` while `d` and a symlink to the
 * outside swap places; nothing outside may change, and some writes must get
 * through.
 */
async function raceOutside(
  write: (jail: WriteJail, path: string, text: string) => Promise<void>,
): Promise<void> {
  await withFixture(async (f) => {
    const d = join(f.root, "d");
    const s = join(f.root, "s");
    await Deno.mkdir(d);
    await Deno.symlink(f.outside, s);
    // The outside holds the very names a push into d writes.
    await Deno.writeTextFile(join(f.outside, "f.txt"), "VICTIM");
    await Deno.writeTextFile(join(f.outside, "f.txt.hsync-part"), "VICTIM");
    const before = new Map(
      [...Deno.readDirSync(f.outside)].map((e) => [
        e.name,
        Deno.readTextFileSync(join(f.outside, e.name)),
      ]),
    );
    let ok = 0;
    let refusedCount = 0;
    // Rounds of 3 s of swapping, until writes got through the race (on a
    // loaded machine a round may pass without one).
    for (let round = 0; round < 4 && ok === 0; round++) {
      const swapper = await startSwapper(f.tmp, [d, s], 3);
      const end = Date.now() + 2700;
      while (Date.now() < end) {
        try {
          await write(f.jail, join(d, "f.txt"), "PUSHED");
          ok++;
        } catch (error) {
          if (!(error instanceof HttpError)) throw error;
          refusedCount++;
        }
        // Let the swapper run between sections.
        await new Promise((r) => setTimeout(r, 0));
      }
      await swapper.done;
    }
    const after = new Map(
      [...Deno.readDirSync(f.outside)].map((e) => [
        e.name,
        Deno.readTextFileSync(join(f.outside, e.name)),
      ]),
    );
    assert.deepEqual(after, before);
    assert.ok(ok > 0, `no push got through the race (${refusedCount} refused)`);
  });
}

Deno.test("pushes into a directory swapped with a symlink in a tight loop create, replace and truncate nothing outside", async () => {
  await raceOutside(push);
});

Deno.test("a batch of small files of one directory (an upload bundle's) written while it is swapped with a symlink changes nothing outside", async () => {
  await raceOutside((jail, path, text) => {
    const data = new TextEncoder().encode(text);
    const meta = { mode: 0o644, mtimeMs: 1_600_000_000_000, sync: false };
    const dir = path.slice(0, path.lastIndexOf("/"));
    const outcomes = jail.writeFiles([
      { path: `${dir}/other.txt`, data, meta },
      { path, data, meta },
    ]);
    const refused = outcomes.find((o) => o instanceof HttpError);
    return refused === undefined ? Promise.resolve() : Promise.reject(refused);
  });
});

Deno.test("small files written whole (the upload bundle's replace, mode and time through the descriptor) into a directory swapped with a symlink change nothing outside", async () => {
  await raceOutside((jail, path, text) => {
    jail.replace(
      jail.target(path),
      path.split("/").pop()!,
      new TextEncoder().encode(text),
      { mode: 0o644, mtimeMs: 1_600_000_000_000, sync: false },
    );
    return Promise.resolve();
  });
});

Deno.test("symlinks and hard links made while a directory is swapped with a symlink in a tight loop are made inside Writable_path only, and never link a file from outside", async () => {
  await withFixture(async (f) => {
    const d = join(f.root, "d");
    const s = join(f.root, "s");
    await Deno.mkdir(d);
    await Deno.symlink(f.outside, s);
    await Deno.writeTextFile(join(d, "f.txt"), "INSIDE");
    await Deno.writeTextFile(join(f.outside, "f.txt"), "VICTIM");
    await Deno.writeTextFile(join(f.root, "keep.txt"), "KEEP");
    const victim = Deno.lstatSync(join(f.outside, "f.txt"));
    const before = [...Deno.readDirSync(f.outside)].map((e) => e.name).sort();
    const swapper = await startSwapper(f.tmp, [d, s], 3);
    const end = Date.now() + 2700;
    const made = { symlink: 0, link: 0, linkFrom: 0 };
    let refusedCount = 0;
    const attempt = (kind: keyof typeof made, fn: () => unknown) => {
      try {
        fn();
        made[kind]++;
      } catch (error) {
        if (!(error instanceof HttpError)) throw error;
        refusedCount++;
      }
    };
    while (Date.now() < end) {
      // Made in the swapped directory: never in the outside one.
      attempt(
        "symlink",
        () => f.jail.symlink(f.jail.target(join(d, "l")), "f.txt"),
      );
      attempt("link", () =>
        f.jail.link(
          f.jail.target(join(d, "h")),
          f.jail.target(join(f.root, "keep.txt")),
        ));
      // Linked from the swapped directory: never the outside file.
      attempt("linkFrom", () =>
        f.jail.link(
          f.jail.target(join(f.root, "from")),
          f.jail.target(join(d, "f.txt")),
        ));
      const from = f.jail.lstat(f.jail.target(join(f.root, "x")), "from");
      assert.ok(from === undefined || from.ino !== victim.ino);
      await new Promise((r) => setTimeout(r, 0));
    }
    await swapper.done;
    assert.deepEqual(
      [...Deno.readDirSync(f.outside)].map((e) => e.name).sort(),
      before,
    );
    assert.equal(Deno.lstatSync(join(f.outside, "f.txt")).nlink, 1);
    assert.equal(Deno.readTextFileSync(join(f.outside, "f.txt")), "VICTIM");
    assert.equal(Deno.readLinkSync(join(d, "l")), "f.txt");
    assert.equal(Deno.readTextFileSync(join(f.root, "from")), "INSIDE");
    assert.deepEqual(
      [...Deno.readDirSync(d)].map((e) => e.name).sort(),
      ["f.txt", "h", "l"],
    );
    assert.deepEqual(
      [...Deno.readDirSync(f.root)].map((e) => e.name).sort(),
      ["d", "from", "keep.txt", "s", "state", "sub"],
    );
    for (const [kind, n] of Object.entries(made)) {
      assert.ok(
        n > 0,
        `no ${kind} got through the race (${refusedCount} refused)`,
      );
    }
  });
});

Deno.test("delete() removes one entry of the entered directory, never a writable root, even one nested in another", async () => {
  await withFixture(async (f) => {
    const nested = await createWriteJail({
      writablePath: [f.root, join(f.root, "sub")],
    });
    await Deno.symlink(f.outside, join(f.root, "out"));
    assert.equal(nested.delete(nested.target(join(f.root, "out"))), "symlink");
    assert.equal(
      Deno.readTextFileSync(join(f.outside, "victim.txt")),
      "VICTIM",
    );
    for (const jail of [f.jail, nested]) {
      const e = refused(() => jail.delete(jail.target(f.root)));
      assert.equal(`${e.status} ${e.code}`, "403 not_writable");
    }
    const e = refused(() => nested.delete(nested.target(join(f.root, "sub"))));
    assert.equal(`${e.status} ${e.code}`, "403 not_writable");
    assert.match(e.message, /it is a Writable_path directory/);
    assert.ok(Deno.statSync(join(f.root, "sub")).isDirectory);
    // Not a root of f.jail: an empty directory like any other.
    assert.equal(f.jail.delete(f.jail.target(join(f.root, "sub"))), "dir");
  });
});

Deno.test("deletes in a directory swapped with a symlink in a tight loop remove nothing outside", async () => {
  await withFixture(async (f) => {
    const d = join(f.root, "d");
    const s = join(f.root, "s");
    await Deno.mkdir(d);
    await Deno.symlink(f.outside, s);
    // The outside holds the very names deleted in d: a file and an empty directory.
    await Deno.writeTextFile(join(f.outside, "f.txt"), "VICTIM");
    await Deno.mkdir(join(f.outside, "e"));
    const snapshot = () =>
      [...Deno.readDirSync(f.outside)].map((e) =>
        `${e.name}:${
          e.isFile ? Deno.readTextFileSync(join(f.outside, e.name)) : "dir"
        }`
      ).sort();
    const before = snapshot();
    const removed = { file: 0, dir: 0 };
    let refusedCount = 0;
    const attempt = (fn: () => unknown) => {
      try {
        fn();
      } catch (error) {
        if (!(error instanceof HttpError)) throw error;
        refusedCount++;
      }
    };
    // Rounds of 3 s of swapping, until deletes got through the race (on a
    // loaded machine a round may pass without one).
    for (
      let round = 0;
      round < 4 && (removed.file === 0 || removed.dir === 0);
      round++
    ) {
      const swapper = await startSwapper(f.tmp, [d, s], 3);
      const end = Date.now() + 2700;
      while (Date.now() < end) {
        // Made through the jail (inside d only), then deleted through it.
        await push(f.jail, join(d, "f.txt"), "PUSHED").catch(() => {});
        attempt(() => f.jail.makeDirs(join(d, "e")));
        attempt(() => {
          if (f.jail.delete(f.jail.target(join(d, "f.txt"))) === "file") {
            removed.file++;
          }
        });
        attempt(() => {
          if (f.jail.delete(f.jail.target(join(d, "e"))) === "dir") {
            removed.dir++;
          }
        });
        await new Promise((r) => setTimeout(r, 0));
      }
      await swapper.done;
    }
    assert.deepEqual(snapshot(), before);
    for (const [kind, n] of Object.entries(removed)) {
      assert.ok(
        n > 0,
        `no ${kind} deleted during the race (${refusedCount} refused)`,
      );
    }
  });
});
