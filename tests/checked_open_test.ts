/** Tests of lib/shared/checked_open.ts (and chmod_opened.ts): a handle is used only once it is proven to be the entry at its name. */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  checkName,
  createChecked,
  fileIdOf,
  openChecked,
} from "../lib/shared/checked_open.ts";
import { chmodOpened, readyToChmod } from "../lib/shared/chmod_opened.ts";
import { LocalPathError } from "../lib/shared/errors.ts";
import { jsonOfChild } from "./_programs.ts";

/** A temporary directory with `victim.txt` ("untouched") in it, removed by `await using`. */
async function withVictim() {
  const root = await Deno.makeTempDir();
  const victim = join(root, "victim.txt");
  await Deno.writeTextFile(victim, "untouched");
  await Deno.chmod(victim, 0o600);
  return {
    root,
    victim,
    [Symbol.asyncDispose]: () => Deno.remove(root, { recursive: true }),
  };
}

function refusedWith(why: RegExp) {
  return (error: unknown) =>
    error instanceof LocalPathError && why.test(error.message);
}

Deno.test("openChecked() never opens a symlink, a FIFO or a directory in place of a file", async () => {
  await using d = await withVictim();
  const name = join(d.root, "x.hsync-part");
  await Deno.symlink(d.victim, name);
  assert.throws(
    () => openChecked(name, { write: true }),
    refusedWith(/: it is a symbolic link$/),
  );
  await Deno.remove(name);
  await new Deno.Command("mkfifo", { args: [name] }).output();
  assert.throws(
    () => openChecked(name, { write: true }),
    refusedWith(/: it exists and is not a regular file$/),
  );
  assert.throws(
    () => openChecked(d.root, { write: true }),
    refusedWith(/: it exists and is not a regular file$/),
  );
  assert.equal(await Deno.readTextFile(d.victim), "untouched");
});

Deno.test("openChecked() refuses a regular file that is not the inode expected, and never truncates", async () => {
  await using d = await withVictim();
  const name = join(d.root, "part");
  await Deno.writeTextFile(name, "mine");
  const mine = fileIdOf(await Deno.lstat(name));
  using file = openChecked(name, { write: true, expected: mine });
  assert.equal((await file.stat()).size, 4);
  await Deno.remove(name);
  await Deno.writeTextFile(name, "theirs");
  assert.throws(
    () => openChecked(name, { write: true, expected: mine }),
    refusedWith(/: it was replaced while hsync used it$/),
  );
  assert.throws(() => checkName(name, mine), refusedWith(/replaced/));
  assert.equal(await Deno.readTextFile(name), "theirs");
});

Deno.test("createChecked() refuses any entry at the name, a dangling link included", async () => {
  await using d = await withVictim();
  const name = join(d.root, "new");
  await Deno.symlink(join(d.root, "nowhere"), name);
  assert.throws(() => createChecked(name), Deno.errors.AlreadyExists);
  assert.ok(!(await Deno.stat(join(d.root, "nowhere")).catch(() => false)));
  await Deno.remove(name);
  using file = createChecked(name);
  assert.ok((await file.stat()).isFile);
});

Deno.test("chmodOpened() changes the mode of the opened inode only, never of a link swapped in at its name", async () => {
  await using d = await withVictim();
  const name = join(d.root, "f.hsync-part");
  using file = createChecked(name);
  await readyToChmod();
  chmodOpened(file, name, 0o640);
  assert.equal((await Deno.lstat(name)).mode! & 0o7777, 0o640);
  await Deno.remove(name);
  await Deno.symlink(d.victim, name);
  assert.throws(
    () => chmodOpened(file, name, 0o666),
    refusedWith(/replaced/),
  );
  assert.equal((await Deno.stat(d.victim)).mode! & 0o7777, 0o600);
  assert.throws(() => checkName(name, fileIdOf(file.statSync())), /symbolic/);
});

Deno.test("chmodOpened() needs nothing loaded for the mode a file has already; another mode before readyToChmod() is refused as the caller's mistake, the file untouched", async () => {
  // In a process of its own: this one's tests may have loaded it already.
  const script = `
    import { createChecked } from "${
    new URL("../lib/shared/checked_open.ts", import.meta.url).href
  }";
    import { chmodOpened, chmodReady } from "${
    new URL("../lib/shared/chmod_opened.ts", import.meta.url).href
  }";
    const name = Deno.args[0];
    using file = createChecked(name);
    const own = file.statSync().mode! & 0o7777;
    chmodOpened(file, name, own);
    let refused = "";
    try {
      chmodOpened(file, name, own ^ 0o070);
    } catch (error) {
      refused = String(error);
    }
    console.log(JSON.stringify({ ready: chmodReady(), refused, mode: (Deno.lstatSync(name).mode! & 0o7777) === own }));
  `;
  await using d = await withVictim();
  const file = join(d.root, "child.ts");
  await Deno.writeTextFile(file, script);
  const got = await jsonOfChild(file, [join(d.root, "f")]) as {
    ready: boolean;
    refused: string;
    mode: boolean;
  };
  assert.equal(got.ready, false);
  assert.match(got.refused, /before readyToChmod/);
  assert.equal(got.mode, true);
});
