/** Tests of lib/server/jail/path_guard.ts: one step per attack on the path jail, plus a property over random paths. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { closeSync, constants as fsConstants, openSync } from "node:fs";
import fc from "fast-check";
import picomatch from "picomatch";
import defaults from "../hsync.ini" with { type: "text" };
import { loadConfig, serverSettings } from "../lib/shared/config.ts";
import { ConfigError, HttpError } from "../lib/shared/errors.ts";
import { loadGlobs } from "../lib/shared/glob.ts";
import {
  anyGlob,
  type CheckedPath,
  createPathGuard,
  newSmallReadCache,
  type PathGuard,
} from "../lib/server/jail/path_guard.ts";

const SECRET = "TOP-SECRET-BYTES";

interface Fixture {
  tmp: string;
  data: string;
  secret: string;
  hsyncDir: string;
  keyFile: string;
  guard: PathGuard;
}

async function makeFixture(): Promise<Fixture> {
  const tmp = await Deno.realPath(
    await Deno.makeTempDir({ prefix: "hsync_guard_" }),
  );
  const data = join(tmp, "data");
  const secret = join(tmp, "secret");
  const hsyncDir = join(data, "hsync-state");
  const keyFile = join(data, "tls-private.bin");
  for (
    const dir of [
      data,
      secret,
      join(data, "sub"),
      join(data, "blocked"),
      join(data, ".ssh"),
      hsyncDir,
      join(tmp, "data2"),
      join(data, "sw"),
    ]
  ) {
    await Deno.mkdir(dir, { recursive: true });
  }
  const write = (path: string, text: string) => Deno.writeTextFile(path, text);
  await write(join(data, "hello.txt"), "hello");
  await write(join(data, "sub", "inner.txt"), "inner");
  await write(join(data, "id_rsa"), SECRET);
  await write(join(data, "blocked", "file.txt"), SECRET);
  await write(join(data, ".ssh", "config"), SECRET);
  await write(join(hsyncDir, "state"), SECRET);
  await write(keyFile, SECRET);
  await write(join(secret, "secret.txt"), SECRET);
  await write(join(tmp, "data2", "file.txt"), SECRET);
  await write(join(data, "sw", "f.txt"), "swap");
  await Deno.symlink(join(secret, "secret.txt"), join(data, "link_out_file"));
  await Deno.symlink(secret, join(data, "link_out_dir"));
  await Deno.symlink(join(data, "hello.txt"), join(data, "link_in"));
  await Deno.symlink("loop_b", join(data, "loop_a"));
  await Deno.symlink("loop_a", join(data, "loop_b"));
  await Deno.symlink(join(data, "hello.txt"), join(data, "id_rsa.pub"));
  await Deno.symlink(join(data, "id_rsa"), join(data, "innocent"));
  await Deno.symlink(join(tmp, "data2"), join(data, "link_data2"));
  await mkfifo(join(data, "fifo"));

  const config = await loadConfig({
    defaults,
    hsyncDir,
    readTextFile: () => Promise.reject(new Deno.errors.NotFound("none")),
  });
  const settings = serverSettings(config, {
    Only_allowed_path: data,
    Forbidden_dir: `${config.values.hsyncd.Forbidden_dir.raw}, ${
      join(data, "blocked")
    }`,
  });
  const guard = await createPathGuard({
    onlyAllowedPath: settings.onlyAllowedPath,
    forbiddenDir: settings.forbiddenDir,
    forbiddenFile: settings.forbiddenFile,
    alwaysDenied: [hsyncDir, keyFile],
  });
  return { tmp, data, secret, hsyncDir, keyFile, guard };
}

async function mkfifo(path: string): Promise<void> {
  const out = await new Deno.Command("mkfifo", { args: [path] }).output();
  assert.equal(out.code, 0, "mkfifo failed");
}

async function refusal(guard: PathGuard, path: string): Promise<HttpError> {
  try {
    const checked = await guard.check(path);
    assert.fail(
      `expected a refusal of ${JSON.stringify(path)}, got ${checked.realPath}`,
    );
  } catch (error) {
    if (!(error instanceof HttpError)) throw error;
    return error;
  }
}

function within(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir + "/");
}

Deno.test("path guard refuses every known attack with the exact status and code", async (t) => {
  const f = await makeFixture();
  const d = (rel: string) => `${f.data}/${rel}`;
  try {
    const attacks: Array<[string, string, number, string]> = [
      ["empty path", "", 400, "bad_path"],
      ["relative path", "data/hello.txt", 400, "bad_path"],
      ["NUL byte truncation", d("hello.txt\0.jpg"), 400, "bad_path"],
      ["very long path", d("a/".repeat(2100) + "x"), 400, "bad_path"],
      ["very long file name", d("n".repeat(300)), 400, "bad_path"],
      [
        "dot-dot traversal out of the root",
        d("../secret/secret.txt"),
        403,
        "outside_allowed",
      ],
      [
        "dot-dot traversal to /etc/shadow",
        d("../../../../../etc/shadow"),
        403,
        "forbidden_dir",
      ],
      [
        "encoded traversal is a literal name",
        d("%2e%2e/secret/secret.txt"),
        404,
        "not_found",
      ],
      [
        "double-encoded traversal is a literal name",
        d("%252e%252e%252fsecret"),
        404,
        "not_found",
      ],
      [
        "encoded slash is a literal name",
        d("..%2fsecret%2fsecret.txt"),
        404,
        "not_found",
      ],
      [
        "symlink to a file outside the root",
        d("link_out_file"),
        403,
        "refused",
      ],
      [
        "symlink to a directory outside the root",
        d("link_out_dir"),
        403,
        "refused",
      ],
      [
        "file through a symlinked directory outside",
        d("link_out_dir/secret.txt"),
        403,
        "refused",
      ],
      [
        "existence probe through a symlink outside",
        d("link_out_dir/no-such-file"),
        403,
        "refused",
      ],
      ["symlink loop", d("loop_a"), 404, "not_found"],
      [
        "allowed-path prefix confusion (/x/data vs /x/data2)",
        join(f.tmp, "data2", "file.txt"),
        403,
        "outside_allowed",
      ],
      [
        "allowed-path prefix confusion through a symlink",
        d("link_data2/file.txt"),
        403,
        "refused",
      ],
      ["forbidden file name glob", d("id_rsa"), 403, "forbidden_file"],
      [
        "forbidden file name that does not exist",
        d("id_ed25519"),
        403,
        "forbidden_file",
      ],
      ["symlink named like a key", d("id_rsa.pub"), 403, "forbidden_file"],
      ["innocent symlink to a key", d("innocent"), 403, "refused"],
      ["absolute Forbidden_dir", d("blocked/file.txt"), 403, "forbidden_dir"],
      ["absolute Forbidden_dir itself", d("blocked"), 403, "forbidden_dir"],
      ["bare-name Forbidden_dir .ssh", d(".ssh/config"), 403, "forbidden_dir"],
      [
        "bare-name Forbidden_dir probe",
        d(".ssh/no-such-file"),
        403,
        "forbidden_dir",
      ],
      ["FIFO", d("fifo"), 403, "not_regular"],
      ["HSYNC_DIR", f.hsyncDir, 403, "forbidden"],
      ["a file in HSYNC_DIR", join(f.hsyncDir, "state"), 403, "forbidden"],
      ["the server's key file", f.keyFile, 403, "forbidden"],
      ["/proc/self/status", "/proc/self/status", 403, "not_regular"],
      ["outside the root entirely", "/usr/bin/env", 403, "outside_allowed"],
      ["missing file inside the root", d("missing.txt"), 404, "not_found"],
      ["path through a regular file", d("hello.txt/x"), 404, "not_found"],
    ];
    for (const [name, path, status, code] of attacks) {
      await t.step(name, async () => {
        const error = await refusal(f.guard, path);
        assert.equal(error.status, status, error.message);
        assert.equal(error.code, code, error.message);
        assert.ok(!error.message.includes(SECRET));
        if (!path.includes("secret")) {
          assert.ok(
            !error.message.includes(f.secret),
            `real path leaked: ${error.message}`,
          );
        }
        assert.ok(/^[A-Z]/.test(error.message) && !error.message.endsWith("."));
      });
    }

    const allowed: Array<[string, string, string, "file" | "dir"]> = [
      ["a plain file", d("hello.txt"), d("hello.txt"), "file"],
      ["the root itself", f.data, f.data, "dir"],
      ["the root with a trailing slash", f.data + "/", f.data, "dir"],
      ["a nested file", d("sub/inner.txt"), d("sub/inner.txt"), "file"],
      ["a symlink that stays inside", d("link_in"), d("hello.txt"), "file"],
      [
        "dot segments that stay inside",
        d("./sub/../hello.txt"),
        d("hello.txt"),
        "file",
      ],
      [
        "dot-dot above / is clamped",
        `/../../..${f.data}/hello.txt`,
        d("hello.txt"),
        "file",
      ],
      [
        "doubled slashes",
        `/${f.data}//sub///inner.txt`,
        d("sub/inner.txt"),
        "file",
      ],
    ];
    for (const [name, path, real, type] of allowed) {
      await t.step(`serves ${name}`, async () => {
        const checked = await f.guard.check(path);
        assert.equal(checked.realPath, real);
        assert.equal(checked.type, type);
      });
    }
  } finally {
    await Deno.remove(f.tmp, { recursive: true });
  }
});

Deno.test("path guard refuses devices and pseudo-files even when the deny list allows them", async () => {
  const guard = await createPathGuard({
    onlyAllowedPath: [],
    forbiddenDir: [],
    forbiddenFile: [],
  });
  for (
    const [path, code] of [
      ["/dev/null", "not_regular"],
      ["/proc/self/status", "not_regular"],
      ["/sys/kernel/mm", "not_regular"],
      ["/proc/self/root/etc/hostname", "not_regular"],
    ]
  ) {
    const error = await refusal(guard, path);
    assert.equal(error.status, 403, path);
    assert.equal(error.code, code, path);
  }
});

Deno.test("allowsEntry() applies the rules to a directory entry by name", async () => {
  const f = await makeFixture();
  try {
    assert.equal(f.guard.allowsEntry(f.data, "hello.txt"), true);
    assert.equal(f.guard.allowsEntry(f.data, "sub"), true);
    assert.equal(f.guard.allowsEntry(f.data, "id_rsa"), false);
    assert.equal(f.guard.allowsEntry(f.data, "server.pem"), false);
    assert.equal(f.guard.allowsEntry(f.data, ".ssh"), false);
    assert.equal(f.guard.allowsEntry(f.data, "blocked"), false);
    assert.equal(f.guard.allowsEntry(f.data, "hsync-state"), false);
    assert.equal(f.guard.allowsEntry(f.data, "tls-private.bin"), false);
    assert.equal(f.guard.allowsEntry(f.data, ".."), false);
    assert.equal(f.guard.allowsEntry(f.data, "a/b"), false);
  } finally {
    await Deno.remove(f.tmp, { recursive: true });
  }
});

Deno.test("anyGlob() refuses exactly the names one of its globs refuses", async () => {
  await loadGlobs();
  const config = await loadConfig({
    defaults,
    hsyncDir: "/nonexistent-hsync-dir",
    readTextFile: () => Promise.reject(new Deno.errors.NotFound("none")),
  });
  const defaultGlobs = serverSettings(config).forbiddenFile;
  assert.ok(defaultGlobs.length > 10, "the shipped Forbidden_file list");
  const oneByOne = (globs: readonly string[], name: string) =>
    globs.some((glob) => picomatch(glob, { dot: true })(name));
  const piece = fc.constantFrom(
    "id_rsa",
    "key",
    ".pem",
    ".",
    "*",
    "?",
    "[ab]",
    "{x,y}",
    "a",
    "-",
    "+",
    "(",
    ")",
    "|",
    "^",
    "$",
    "\\",
    "!",
    "@",
    ".hsync-part",
    " ",
    "é",
  );
  const text = fc.array(piece, { maxLength: 5 }).map((parts) => parts.join(""));
  const glob = text.filter((g) => g !== "");
  const name = text.filter((n) => n !== "" && n !== "." && n !== "..");
  for (
    const n of ["id_rsa", "id_rsa.pub", "x.pem", ".netrc", "a.key", "b.txt"]
  ) {
    assert.equal(anyGlob(defaultGlobs)(n), oneByOne(defaultGlobs, n), n);
  }
  fc.assert(
    fc.property(fc.array(glob, { maxLength: 6 }), name, (globs, n) => {
      let expected: boolean;
      try {
        expected = oneByOne(globs, n);
      } catch {
        return; // a glob picomatch cannot compile is refused at start-up
      }
      assert.equal(anyGlob(globs)(n), expected);
    }),
    { numRuns: 2000 },
  );
  fc.assert(
    fc.property(name, (n) => {
      assert.equal(anyGlob(defaultGlobs)(n), oneByOne(defaultGlobs, n));
    }),
  );
});

Deno.test("openFile() opens what was checked and refuses what was swapped in since", async (t) => {
  const f = await makeFixture();
  const d = (rel: string) => `${f.data}/${rel}`;
  const expectChanged = async (checked: CheckedPath) => {
    await assert.rejects(
      f.guard.openFile(checked),
      (e: unknown) =>
        e instanceof HttpError && e.status === 409 && e.code === "changed",
    );
  };
  try {
    await t.step("reads the checked file at any position", async () => {
      const opened = await f.guard.openFile(
        await f.guard.check(d("hello.txt")),
      );
      try {
        const buf = new Uint8Array(16);
        const n = await opened.read(buf, 1);
        assert.equal(new TextDecoder().decode(buf.subarray(0, n)), "ello");
        assert.equal(await opened.read(buf, 5), 0);
        assert.equal(opened.info.size, 5);
        assert.equal(opened.info.ino, (await Deno.lstat(d("hello.txt"))).ino);
      } finally {
        await opened.close();
        await opened.close();
      }
    });
    await t.step("refuses to open a directory", async () => {
      await assert.rejects(
        f.guard.openFile(await f.guard.check(f.data)),
        HttpError,
      );
    });
    await t.step(
      "a FIFO swapped in after the check is never opened (no hang)",
      async () => {
        const path = d("swap_fifo");
        await Deno.writeTextFile(path, "x");
        const checked = await f.guard.check(path);
        await Deno.remove(path);
        await mkfifo(path);
        await expectChanged(checked);
      },
    );
    await t.step("a file replaced after the check is refused", async () => {
      const path = d("replaced.txt");
      await Deno.writeTextFile(path, "old");
      const checked = await f.guard.check(path);
      await Deno.writeTextFile(path + ".new", SECRET);
      await Deno.rename(path + ".new", path);
      await expectChanged(checked);
    });
    await t.step(
      "a symlink swapped in after the check is refused",
      async () => {
        const path = d("becomes_link.txt");
        await Deno.writeTextFile(path, "x");
        const checked = await f.guard.check(path);
        await Deno.remove(path);
        await Deno.symlink(join(f.secret, "secret.txt"), path);
        await expectChanged(checked);
      },
    );
    await t.step(
      "a directory swapped for a symlink after the check cannot redirect the open",
      async () => {
        await Deno.writeTextFile(join(f.secret, "f.txt"), SECRET);
        const checked = await f.guard.check(d("sw/f.txt"));
        await Deno.rename(d("sw"), d("sw_old"));
        await Deno.symlink(f.secret, d("sw"));
        await expectChanged(checked);
      },
    );
    await t.step(
      "a check that lost a race (a directory on the way was a symlink while it ran) cannot open the file from outside",
      async () => {
        // What check() returns when d("race") is swapped for a link to the
        // secret directory between its realpath and its lstat: the checked
        // path inside, the identity of the file outside.
        await Deno.mkdir(d("race"));
        await Deno.writeTextFile(d("race/f.txt"), "inside");
        const inside = await f.guard.check(d("race/f.txt"));
        await Deno.writeTextFile(join(f.secret, "f.txt"), SECRET);
        await Deno.rename(d("race"), d("race_old"));
        await Deno.symlink(f.secret, d("race"));
        const raced: CheckedPath = {
          ...inside,
          info: await Deno.lstat(join(f.secret, "f.txt")),
        };
        await expectChanged(raced);
        // And swapped back before the open: the opened file is not the checked one.
        await Deno.remove(d("race"));
        await Deno.rename(d("race_old"), d("race"));
        await expectChanged(raced);
      },
    );
  } finally {
    await Deno.remove(f.tmp, { recursive: true });
  }
});

Deno.test("native() hands over the very file the handle proved, or nothing", async (t) => {
  const f = await makeFixture();
  const d = (rel: string) => `${f.data}/${rel}`;
  const text = async (file: Deno.FsFile) =>
    new TextDecoder().decode(await new Response(file.readable).arrayBuffer());
  try {
    await t.step("the same file, read from its start", async () => {
      const opened = await f.guard.openFile(
        await f.guard.check(d("hello.txt")),
      );
      try {
        const file = await opened.native();
        assert.ok(file !== undefined);
        assert.equal((await file.stat()).ino, opened.info.ino);
        assert.equal(await text(file), "hello");
      } finally {
        await opened.close();
      }
      assert.equal(await opened.native(), undefined, "not once closed");
    });
    await t.step("the file for each of 64 handles asking at once", async () => {
      const checked = await f.guard.check(d("hello.txt"));
      const handles = await Promise.all(
        Array.from({ length: 64 }, () => f.guard.openFile(checked)),
      );
      try {
        const files = await Promise.all(handles.map((h) => h.native()));
        assert.equal(files.filter((x) => x !== undefined).length, 64);
        for (const file of files) file?.close();
      } finally {
        await Promise.all(handles.map((h) => h.close()));
      }
    });
    for (
      const [name, swap] of [
        ["a file renamed over it", async (path: string) => {
          await Deno.writeTextFile(`${path}.new`, "other");
          await Deno.rename(`${path}.new`, path);
        }],
        ["a symlink to another file", async (path: string) => {
          await Deno.remove(path);
          await Deno.symlink(d("hello.txt"), path);
        }],
      ] as const
    ) {
      await t.step(`nothing for ${name} since the proof`, async () => {
        const path = d("swap_native");
        await Deno.writeTextFile(path, "proved");
        const opened = await f.guard.openFile(await f.guard.check(path));
        try {
          await swap(path);
          assert.equal(await opened.native(), undefined);
          // The proven handle still reads the proven bytes.
          const buf = new Uint8Array(16);
          const n = await opened.read(buf, 0);
          assert.equal(new TextDecoder().decode(buf.subarray(0, n)), "proved");
        } finally {
          await opened.close();
          await Deno.remove(path);
        }
      });
    }
    await t.step(
      "nothing, after a second and without hanging, for a FIFO swapped in",
      async () => {
        const path = d("swap_native_fifo");
        await Deno.writeTextFile(path, "proved");
        const opened = await f.guard.openFile(await f.guard.check(path));
        try {
          await Deno.remove(path);
          await mkfifo(path);
          const t0 = performance.now();
          assert.equal(await opened.native(), undefined);
          assert.ok(performance.now() - t0 >= 900, "gave up after its wait");
          // Let the open that is still waiting for a writer finish (it closes itself).
          const writer = openSync(
            path,
            fsConstants.O_WRONLY | fsConstants.O_NONBLOCK,
          );
          closeSync(writer);
          await new Promise((r) => setTimeout(r, 200));
        } finally {
          await opened.close();
          await Deno.remove(path);
        }
      },
    );
    await t.step(
      "nothing at once while 16 opens hang on FIFOs; the file again once they are let go",
      async () => {
        const paths = Array.from({ length: 16 }, (_, i) => d(`fifo_${i}`));
        const handles = [];
        for (const path of paths) {
          await Deno.writeTextFile(path, "proved");
          handles.push(await f.guard.openFile(await f.guard.check(path)));
        }
        const plain = await f.guard.openFile(
          await f.guard.check(d("hello.txt")),
        );
        try {
          for (const path of paths) {
            await Deno.remove(path);
            await mkfifo(path);
          }
          const given = await Promise.all(handles.map((h) => h.native()));
          assert.deepEqual(given, paths.map(() => undefined));
          // All 16 still hang: no new open starts, and nothing waits.
          const t0 = performance.now();
          assert.equal(await plain.native(), undefined);
          assert.ok(performance.now() - t0 < 500, "answered at once");
          for (const path of paths) {
            closeSync(
              openSync(path, fsConstants.O_WRONLY | fsConstants.O_NONBLOCK),
            );
          }
          await new Promise((r) => setTimeout(r, 200));
          const file = await plain.native();
          assert.ok(file !== undefined, "opens again once they settled");
          file.close();
        } finally {
          await Promise.all([...handles, plain].map((h) => h.close()));
          for (const path of paths) await Deno.remove(path);
        }
      },
    );
  } finally {
    await Deno.remove(f.tmp, { recursive: true });
  }
});

Deno.test("createPathGuard() refuses a configuration it cannot enforce", async () => {
  await assert.rejects(
    createPathGuard({ onlyAllowedPath: ["/no/such/hsync/dir"] }),
    (e: unknown) =>
      e instanceof ConfigError &&
      e.message ===
        'Cannot use Only_allowed_path "/no/such/hsync/dir": no such directory',
  );
  await assert.rejects(
    createPathGuard({ onlyAllowedPath: ["relative/dir"] }),
    ConfigError,
  );
  await assert.rejects(
    createPathGuard({ forbiddenDir: ["a//b"] }),
    ConfigError,
  );
  await assert.rejects(
    createPathGuard({ forbiddenDir: ["a/../b"] }),
    ConfigError,
  );
  await assert.rejects(createPathGuard({ forbiddenDir: [".."] }), ConfigError);
});

Deno.test("path guard either refuses a random path or returns a real path inside the allowed root", async () => {
  const f = await makeFixture();
  try {
    const segment = fc.constantFrom(
      "..",
      ".",
      "",
      "%2e",
      "%2e%2e",
      "%2f",
      "\0",
      "data",
      "data2",
      "sub",
      "hello.txt",
      "inner.txt",
      "link_out_dir",
      "link_out_file",
      "link_in",
      "link_data2",
      "secret",
      "secret.txt",
      "loop_a",
      "id_rsa",
      "innocent",
      ".ssh",
      "blocked",
      "hsync-state",
      "fifo",
      "etc",
      "proc",
    );
    const prefix = fc.constantFrom(f.data, f.tmp, "/", "", f.secret);
    await fc.assert(
      fc.asyncProperty(
        prefix,
        fc.array(fc.oneof(segment, fc.string({ maxLength: 4 })), {
          maxLength: 8,
        }),
        async (p, segments) => {
          const path = [p, ...segments].join("/");
          try {
            const checked = await f.guard.check(path);
            assert.ok(
              within(checked.realPath, f.data),
              `${JSON.stringify(path)} -> ${checked.realPath}`,
            );
            assert.ok(!within(checked.realPath, f.hsyncDir));
            assert.ok(
              !checked.realPath.includes("/.ssh") &&
                !checked.realPath.includes("/blocked"),
            );
            assert.ok(checked.type === "file" || checked.type === "dir");
          } catch (error) {
            if (!(error instanceof HttpError)) throw error;
            assert.ok(
              [400, 403, 404].includes(error.status),
              `${error.status} ${error.message}`,
            );
          }
        },
      ),
      { numRuns: 400 },
    );
  } finally {
    await Deno.remove(f.tmp, { recursive: true });
  }
});

Deno.test("readSmallSync() reads only what check() + openFile() would serve, and declines the rest", async () => {
  const f = await makeFixture();
  try {
    const dirs = newSmallReadCache();
    const got = f.guard.readSmallSync(join(f.data, "hello.txt"), 1024, dirs);
    assert.equal(new TextDecoder().decode(got?.data), "hello");
    assert.equal(got?.info.size, 5);
    // Declined (the caller takes the long way, which answers precisely):
    for (
      const [why, path, max] of [
        ["a symlink, even to an allowed file", join(f.data, "link_in"), 1024],
        ["a symlink out", join(f.data, "link_out_file"), 1024],
        ["a forbidden name", join(f.data, "id_rsa"), 1024],
        ["a forbidden directory", join(f.data, "blocked", "file.txt"), 1024],
        ["HSYNC_DIR", join(f.hsyncDir, "state"), 1024],
        ["the key file", f.keyFile, 1024],
        ["outside the root", join(f.secret, "secret.txt"), 1024],
        [
          "through a linked directory",
          join(f.data, "link_out_dir", "secret.txt"),
          1024,
        ],
        ["a FIFO (must not block)", join(f.data, "fifo"), 1024],
        ["a directory", join(f.data, "sub"), 1024],
        ["missing", join(f.data, "nope.txt"), 1024],
        ["larger than the limit", join(f.data, "hello.txt"), 4],
        ["traversal", `${f.data}/../secret/secret.txt`, 1024],
      ] as const
    ) {
      assert.equal(f.guard.readSmallSync(path, max, dirs), undefined, why);
    }
    // A directory swapped for a symlink after its real path was cached is caught.
    const cache = newSmallReadCache();
    assert.ok(f.guard.readSmallSync(join(f.data, "sw", "f.txt"), 64, cache));
    await Deno.rename(join(f.data, "sw"), join(f.tmp, "sw-away"));
    await Deno.mkdir(join(f.secret, "sw"));
    await Deno.writeTextFile(join(f.secret, "sw", "f.txt"), SECRET);
    await Deno.symlink(join(f.secret, "sw"), join(f.data, "sw"));
    assert.equal(
      f.guard.readSmallSync(join(f.data, "sw", "f.txt"), 64, cache),
      undefined,
    );
  } finally {
    await Deno.remove(f.tmp, { recursive: true });
  }
});

Deno.test("readSmallSync() agrees with check() + openFile() on random paths", async () => {
  const f = await makeFixture();
  try {
    const names = fc.constantFrom(
      "..",
      ".",
      "",
      "sub",
      "hello.txt",
      "inner.txt",
      "link_in",
      "link_out_dir",
      "link_out_file",
      "secret.txt",
      "id_rsa",
      "innocent",
      "blocked",
      "file.txt",
      "fifo",
      ".ssh",
      "config",
      "hsync-state",
      "state",
      "loop_a",
    );
    const dirs = newSmallReadCache();
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(f.data, f.tmp, f.secret),
        fc.array(names, { maxLength: 4 }),
        async (p, segments) => {
          const path = [p, ...segments].join("/");
          const quick = f.guard.readSmallSync(path, 1 << 20, dirs);
          if (quick === undefined) return;
          const checked = await f.guard.check(path); // must not throw
          const opened = await f.guard.openFile(checked);
          try {
            const data = new Uint8Array(opened.info.size);
            await opened.read(data, 0);
            assert.deepEqual(quick.data, data, path);
            assert.equal(quick.info.ino, opened.info.ino);
          } finally {
            await opened.close();
          }
        },
      ),
      { numRuns: 300 },
    );
  } finally {
    await Deno.remove(f.tmp, { recursive: true });
  }
});

Deno.test("readSmallBatchSync() reads consecutive files up to the first declined one or the byte budget", async () => {
  const f = await makeFixture();
  try {
    const dir = join(f.data, "batch");
    await Deno.mkdir(join(dir, "inner"), { recursive: true });
    for (const name of ["a", "b", "c", "d"]) {
      await Deno.writeTextFile(join(dir, name), name.repeat(10));
    }
    await Deno.writeTextFile(join(dir, "inner", "e"), "e".repeat(10));
    await Deno.writeTextFile(join(dir, "id_rsa"), "key");
    const paths = (names: string[]) => names.map((n) => join(dir, n));
    const read = (names: string[], max = 1024, total = Infinity) =>
      f.guard.readSmallBatchSync(paths(names), max, total, newSmallReadCache())
        .map((got) => new TextDecoder().decode(got.data));

    // Across directories, in order.
    assert.deepEqual(read(["a", "inner/e", "b"]), [
      "a".repeat(10),
      "e".repeat(10),
      "b".repeat(10),
    ]);
    // Stops at the first refused, missing, oversized or linked path: the rest go the long way.
    assert.deepEqual(read(["a", "id_rsa", "b"]), ["a".repeat(10)]);
    assert.deepEqual(read(["a", "missing", "b"]), ["a".repeat(10)]);
    assert.deepEqual(read(["a", "b"], 9), []);
    assert.deepEqual(read(["a", "../link_in", "b"]), ["a".repeat(10)]);
    // Stops once the byte budget is reached (the file that reaches it is included).
    assert.deepEqual(read(["a", "b", "c", "d"], 1024, 15), [
      "a".repeat(10),
      "b".repeat(10),
    ]);
  } finally {
    await Deno.remove(f.tmp, { recursive: true });
  }
});

Deno.test("the built-in deny lists ignore letter case and cover what a home directory leaks", async () => {
  const tmp = await Deno.realPath(
    await Deno.makeTempDir({ prefix: "hsync_guard_case_" }),
  );
  try {
    const config = await loadConfig({
      defaults,
      hsyncDir: join(tmp, "state"),
      readTextFile: () => Promise.reject(new Deno.errors.NotFound("none")),
    });
    const settings = serverSettings(config, { Only_allowed_path: tmp });
    const guard = await createPathGuard({
      onlyAllowedPath: settings.onlyAllowedPath,
      forbiddenDir: settings.forbiddenDir,
      forbiddenFile: settings.forbiddenFile,
      alwaysDenied: [join(tmp, "state"), join(tmp, "tls", "server.key")],
    });
    const refused = [
      "server.PEM",
      "ID_RSA",
      "Id_Ed25519.pub",
      ".SSH/k",
      ".NETRC",
      ".npmrc",
      ".pypirc",
      ".netrc",
      ".git-credentials",
      ".docker/config.json",
      ".config/gh/hosts.yml",
      ".CONFIG/GH/hosts.yml",
      ".config/rclone/rclone.conf",
      ".aws/credentials",
      ".vault-token",
      ".env",
      ".env.production",
      ".zsh_history",
      ".python_history",
      ".psql_history",
      "deep/inside/.config/gh/x",
      "STATE/x",
      "tls/SERVER.KEY",
    ];
    const served = [
      "data.csv",
      "config/gh.txt",
      ".config/other/x",
      "gh/x",
      "environment.txt",
      "history.txt",
    ];
    for (const rel of [...refused, ...served]) {
      const path = join(tmp, rel);
      await Deno.mkdir(join(path, ".."), { recursive: true });
      await Deno.writeTextFile(path, "x");
    }
    for (const rel of refused) {
      const error = await refusal(guard, join(tmp, rel));
      assert.equal(error.status, 403, `${rel}: ${error.message}`);
    }
    for (const rel of served) {
      const checked = await guard.check(join(tmp, rel));
      assert.equal(checked.type, "file", rel);
    }
    // A listing leaves out the same names.
    assert.equal(guard.allowsEntry(tmp, ".NPMRC"), false);
    assert.equal(guard.allowsEntry(join(tmp, ".config"), "GH"), false);
    assert.equal(guard.allowsEntry(join(tmp, ".config"), "other"), true);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
