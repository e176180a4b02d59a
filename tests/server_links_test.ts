/** Tests of the pushed links of hsyncd (lib/server/endpoints/symlink.ts, link.ts, lib/server/jail/write_links.ts), in process. */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { StatEntry } from "../lib/shared/wire.ts";
import { linkFailure } from "../lib/server/jail/write_links.ts";
import { HttpError } from "../lib/shared/errors.ts";
import {
  createVerifier,
  generateKeys,
  parseAuthorizedKeys,
} from "../lib/shared/auth.ts";
import {
  expectError,
  type Fixture,
  SECRET,
  withFixture,
} from "./_server_fixture.ts";

const WRITABLE = { Host_ip: "127.0.0.1", Writable_path: "@root" };

/** `POST /v1/symlink?path=P` of a link at `at` (absolute) with `target`. */
function symlink(
  f: Fixture,
  at: string,
  target: unknown,
  call = f.call,
): Promise<Response> {
  return call(`/v1/symlink?path=${encodeURIComponent(at)}`, {
    method: "POST",
    headers: { "x-hsync-upload-session": "session-a" },
    body: JSON.stringify({ target }),
  });
}

/** `POST /v1/link?path=P` giving `existing` the name `at` (both absolute). */
function link(f: Fixture, at: string, existing: unknown): Promise<Response> {
  return f.call(`/v1/link?path=${encodeURIComponent(at)}`, {
    method: "POST",
    headers: { "x-hsync-upload-session": "session-a" },
    body: JSON.stringify({ existing }),
  });
}

/** The names of a directory, sorted. */
function names(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
}

Deno.test("a pushed symlink is created with its text as given, replaces a file or a link without following it, and answers its StatEntry", async () => {
  await withFixture(async (f) => {
    const r = (rel: string) => join(f.root, rel);
    await Deno.mkdir(r("in"));
    await Deno.writeTextFile(r("in/data.txt"), "data");
    const res = await symlink(f, r("in/l"), "data.txt");
    assert.equal(res.status, 200, await res.clone().text());
    const entry = await res.json() as StatEntry;
    const info = Deno.lstatSync(r("in/l"));
    assert.equal(info.isSymlink, true);
    assert.equal(Deno.readLinkSync(r("in/l")), "data.txt");
    assert.equal(entry.type, "symlink");
    assert.equal(entry.size, "data.txt".length);
    assert.equal(entry.mtime, info.mtime?.getTime());
    // Into a subdirectory, and up again: inside the root all the way.
    assert.equal(
      (await symlink(f, r("in/up"), "../nested/./deep/../deep/leaf.txt"))
        .status,
      200,
    );
    assert.equal(await Deno.readTextFile(r("in/up")), "leaf");
    // Over a file: the file is replaced.
    await Deno.writeTextFile(r("in/was-file"), "old");
    assert.equal((await symlink(f, r("in/was-file"), "data.txt")).status, 200);
    assert.equal(Deno.readLinkSync(r("in/was-file")), "data.txt");
    // Over a link leading outside: the link is replaced, never followed.
    await Deno.symlink(join(f.tmp, "secret.txt"), r("in/was-link"));
    assert.equal((await symlink(f, r("in/was-link"), "data.txt")).status, 200);
    assert.equal(Deno.readLinkSync(r("in/was-link")), "data.txt");
    assert.equal(await Deno.readTextFile(join(f.tmp, "secret.txt")), SECRET);
    // A dangling text that stays inside is kept as given.
    assert.equal((await symlink(f, r("in/later"), "not-yet/x")).status, 200);
    assert.equal(Deno.readLinkSync(r("in/later")), "not-yet/x");
    assert.deepEqual(names(r("in")), [
      "data.txt",
      "l",
      "later",
      "up",
      "was-file",
      "was-link",
    ]);
  }, WRITABLE);
});

Deno.test("a pushed symlink gets its own mtime when the request gives one (what it leads to keeps its own); a time that is not whole milliseconds since 1970 is a 400 and nothing is created", async () => {
  await withFixture(async (f) => {
    const r = (rel: string) => join(f.root, rel);
    await Deno.mkdir(r("in"));
    await Deno.writeTextFile(r("in/data.txt"), "data");
    const dataTime = Deno.statSync(r("in/data.txt")).mtime?.getTime();
    const post = (at: string, body: unknown) =>
      f.call(`/v1/symlink?path=${encodeURIComponent(r(at))}`, {
        method: "POST",
        headers: { "x-hsync-upload-session": "session-a" },
        body: JSON.stringify(body),
      });
    const mtime = Date.UTC(2019, 4, 5, 6, 7, 8, 123);
    const res = await post("in/l", { target: "data.txt", mtime });
    assert.equal(res.status, 200, await res.clone().text());
    assert.equal((await res.json() as StatEntry).mtime, mtime);
    assert.equal(Deno.lstatSync(r("in/l")).mtime?.getTime(), mtime);
    assert.equal(Deno.statSync(r("in/data.txt")).mtime?.getTime(), dataTime);
    for (const bad of [-1, 1.5, "2019", null]) {
      const refused = await post("in/bad", { target: "data.txt", mtime: bad });
      const body = await expectError(refused, 400, "bad_request");
      assert.match(body.message, /^Invalid symlink request: /);
    }
    assert.deepEqual(names(r("in")), ["data.txt", "l"]);
  }, WRITABLE);
});

Deno.test("a symlink whose text is empty, absolute, holds NUL or climbs out of its Writable_path is refused (403 unsafe_link) and nothing is created", async () => {
  await withFixture(async (f) => {
    const r = (rel: string) => join(f.root, rel);
    await Deno.mkdir(r("in"));
    const unsafe: Array<[string, string]> = [
      ["in/empty", ""],
      ["in/absolute", "/etc/passwd"],
      ["in/absolute-inside", join(f.root, "hello.txt")],
      ["in/nul", "a\0b"],
      ["in/climb", "../../secret.txt"],
      ["top", "../secret.txt"],
      ["in/detour", "x/../../../secret.txt"],
    ];
    for (const [at, target] of unsafe) {
      const body = await expectError(
        await symlink(f, r(at), target),
        403,
        "unsafe_link",
      );
      assert.match(body.message, /^Cannot create the link /);
    }
    await expectError(await symlink(f, r("in/n"), 7), 400, "bad_request");
    await expectError(
      await symlink(f, r("in/long"), "a/".repeat(2100)),
      400,
      "bad_request",
    );
    assert.deepEqual(names(r("in")), []);
    assert.throws(() => Deno.lstatSync(r("top")));
  }, WRITABLE);
});

Deno.test("a symlink or a hard link over a directory is refused (409 is_a_directory) and leaves nothing behind", async () => {
  await withFixture(async (f) => {
    const r = (rel: string) => join(f.root, rel);
    await Deno.mkdir(r("in/dir"), { recursive: true });
    await Deno.writeTextFile(r("in/dir/kept.txt"), "kept");
    await Deno.writeTextFile(r("in/file.txt"), "file");
    await expectError(
      await symlink(f, r("in/dir"), "file.txt"),
      409,
      "is_a_directory",
    );
    await expectError(
      await link(f, r("in/dir"), r("in/file.txt")),
      409,
      "is_a_directory",
    );
    assert.deepEqual(names(r("in")), ["dir", "file.txt"]);
    assert.deepEqual(names(r("in/dir")), ["kept.txt"]);
  }, WRITABLE);
});

Deno.test("links are admitted as every write: outside Writable_path, a refused name, a read-only server, an unsigned request with keys", async () => {
  await withFixture(async (f) => {
    await expectError(
      await symlink(f, join(f.tmp, "out-link"), "x"),
      403,
      "not_writable",
    );
    await expectError(
      await link(f, join(f.tmp, "out-hard"), join(f.root, "hello.txt")),
      403,
      "not_writable",
    );
    await expectError(
      await symlink(f, join(f.root, "id_rsa_link"), "hello.txt"),
      403,
      "forbidden_file",
    );
    await expectError(
      await symlink(f, join(f.root, ".ssh/l"), "../hello.txt"),
      403,
      "forbidden_dir",
    );
    await expectError(
      await symlink(f, join(f.root, "x.hsync-part"), "hello.txt"),
      403,
      "forbidden_file",
    );
    assert.throws(() => Deno.lstatSync(join(f.tmp, "out-link")));
    assert.throws(() => Deno.lstatSync(join(f.tmp, "out-hard")));
    assert.throws(() => Deno.lstatSync(join(f.root, "id_rsa_link")));
  }, WRITABLE);
  await withFixture(async (f) => {
    await expectError(
      await symlink(f, join(f.root, "ro"), "hello.txt"),
      403,
      "read_only",
    );
    await expectError(
      await link(f, join(f.root, "ro"), join(f.root, "hello.txt")),
      403,
      "read_only",
    );
  });
  const keys = await generateKeys("test");
  const verifier = await createVerifier(
    parseAuthorizedKeys(keys.publicLine, "ak"),
  );
  await withFixture(
    async (f) => {
      await expectError(
        await symlink(f, join(f.root, "anon"), "hello.txt"),
        401,
        "unauthorized",
      );
      await expectError(
        await link(f, join(f.root, "anon"), join(f.root, "hello.txt")),
        401,
        "unauthorized",
      );
      assert.throws(() => Deno.lstatSync(join(f.root, "anon")));
    },
    { ...WRITABLE, Authorized_keys: "", Anonymous_read: "yes" },
    { verifier },
  );
});

Deno.test("a pushed link cannot widen what is served: one leading through a link out of the served paths, or to a name the rules refuse, is refused by GET /v1/file", async () => {
  await withFixture(async (f) => {
    const r = (rel: string) => join(f.root, rel);
    // Each text stays inside Writable_path, so each is accepted.
    const texts: Array<[string, string]> = [
      ["via-out", "link_out"],
      ["via-out-dir", "nested/../link_out"],
      ["key", "id_rsa"],
      ["hosts", ".ssh/known_hosts"],
      ["pid", "state-dir/hsyncd.pid"],
      ["fifo-link", "fifo"],
    ];
    for (const [name, text] of texts) {
      const res = await symlink(f, r(name), text);
      assert.equal(res.status, 200, await res.clone().text());
      const through = await f.call(`/v1/file?path=${f.q(name)}`);
      const body = await through.text();
      assert.ok(through.status >= 400, `${name}: ${through.status} ${body}`);
      assert.ok(!body.includes(SECRET), name);
    }
    // A link inside what is served is served, as any.
    assert.equal((await symlink(f, r("hi"), "hello.txt")).status, 200);
    assert.equal(
      await (await f.call(`/v1/file?path=${f.q("hi")}`)).text(),
      "hello world",
    );
  }, WRITABLE);
});

Deno.test("a hard link gives a file pushed before one more name (replacing a file there), once or twice over", async () => {
  await withFixture(async (f) => {
    const r = (rel: string) => join(f.root, rel);
    await Deno.mkdir(r("in/sub"), { recursive: true });
    await Deno.writeTextFile(r("in/a.txt"), "shared");
    await Deno.writeTextFile(r("in/sub/b.txt"), "old");
    const res = await link(f, r("in/sub/b.txt"), r("in/a.txt"));
    assert.equal(res.status, 200, await res.clone().text());
    const entry = await res.json() as StatEntry;
    const a = Deno.lstatSync(r("in/a.txt"));
    const b = Deno.lstatSync(r("in/sub/b.txt"));
    assert.equal(b.ino, a.ino);
    assert.equal(b.nlink, 2);
    assert.equal(entry.type, "file");
    assert.equal(entry.size, "shared".length);
    // Again: the name already is that file; nothing else appears.
    assert.equal(
      (await link(f, r("in/sub/b.txt"), r("in/a.txt"))).status,
      200,
    );
    // A new name beside it, by a path that is not normalised.
    assert.equal(
      (await link(f, r("in/c.txt"), r("in/sub/../a.txt"))).status,
      200,
    );
    assert.equal(Deno.lstatSync(r("in/c.txt")).nlink, 3);
    assert.deepEqual(names(r("in")), ["a.txt", "c.txt", "sub"]);
    assert.deepEqual(names(r("in/sub")), ["b.txt"]);
  }, WRITABLE);
});

Deno.test("a hard link to a symlink, a directory, a missing file, a file outside Writable_path or a refused name is refused, and nothing is created", async () => {
  await withFixture(async (f) => {
    const r = (rel: string) => join(f.root, rel);
    await Deno.mkdir(r("in"));
    await Deno.symlink("../hello.txt", r("in/sym"));
    const cases: Array<[string, unknown, number, string]> = [
      ["a symlink", r("in/sym"), 400, "not_a_file"],
      ["a symlink leading out", r("link_out"), 400, "not_a_file"],
      ["a directory", r("nested"), 400, "not_a_file"],
      ["a FIFO", r("fifo"), 400, "not_a_file"],
      ["missing", r("in/none"), 404, "not_found"],
      ["outside", join(f.tmp, "secret.txt"), 403, "not_writable"],
      ["a refused name", r("id_rsa"), 403, "forbidden_file"],
      ["relative", "hello.txt", 400, "bad_path"],
      ["not a string", 3, 400, "bad_request"],
    ];
    for (const [why, existing, status, code] of cases) {
      const res = await link(f, r("in/new"), existing);
      const body = await expectError(res, status, code);
      assert.match(
        body.message,
        /^(Cannot (link|write)|Invalid link request)/,
        why,
      );
    }
    assert.deepEqual(names(r("in")), ["sym"]);
  }, WRITABLE);
});

Deno.test("a hard link across file systems is one line, 400 cross_device", () => {
  const error = linkFailure(
    "/w/b",
    "/w/a",
    Object.assign(new Error("x"), {
      code: "EXDEV",
    }),
  );
  assert.ok(error instanceof HttpError);
  assert.equal(error.status, 400);
  assert.equal(error.code, "cross_device");
  assert.equal(
    error.message,
    'Cannot link "/w/b" to "/w/a": they are on different file systems',
  );
  const other = new Error("other");
  assert.equal(linkFailure("/w/b", "/w/a", other), other);
});
