/** Tests of lib/server/jail/cwd_anchor.ts: lookups stay on the directory entered, whatever its name becomes. */
import assert from "node:assert/strict";
import { cwdAnchor } from "../lib/server/jail/cwd_anchor.ts";

async function withTree(
  fn: (root: string) => void | Promise<void>,
): Promise<void> {
  const root = await Deno.realPath(
    await Deno.makeTempDir({ prefix: "hsync_anchor_" }),
  );
  try {
    await fn(root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

Deno.test("run() reports the kernel's path of the directory entered, through a symlink", async () => {
  await withTree(async (root) => {
    await Deno.mkdir(`${root}/real`);
    await Deno.symlink(`${root}/real`, `${root}/link`);
    const real = cwdAnchor().run(`${root}/link`, (at) => at.real);
    assert.equal(real, `${root}/real`);
  });
});

Deno.test("lookups inside run() stay on the entered directory when its name is swapped for a symlink", async () => {
  await withTree(async (root) => {
    await Deno.mkdir(`${root}/d`);
    await Deno.mkdir(`${root}/outside`);
    await Deno.writeTextFile(`${root}/d/f`, "inside");
    await Deno.writeTextFile(`${root}/outside/f`, "outside");
    await Deno.writeTextFile(`${root}/outside/only-outside`, "x");
    const inside = await Deno.lstat(`${root}/d/f`);
    const seen = cwdAnchor().run(`${root}/d`, (at) => {
      // The attack, done at the worst moment: d now leads out.
      Deno.renameSync(`${root}/d`, `${root}/moved`);
      Deno.symlinkSync(`${root}/outside`, `${root}/d`);
      return {
        f: at.lstat("f"),
        names: at.entries().map((e) => e.name).sort(),
        self: at.stat(),
      };
    });
    assert.equal(seen.f.ino, inside.ino);
    assert.deepEqual(seen.names, ["f"]);
    assert.equal(seen.self.ino, (await Deno.stat(`${root}/moved`)).ino);
  });
});

Deno.test("run() goes back to where the process was, also when its callback throws", async () => {
  await withTree((root) => {
    const before = Deno.cwd();
    cwdAnchor().run(root, () => {});
    assert.equal(Deno.cwd(), before);
    assert.throws(() =>
      cwdAnchor().run(root, () => {
        throw new RangeError("boom");
      }), RangeError);
    assert.equal(Deno.cwd(), before);
    assert.throws(
      () => cwdAnchor().run(`${root}/missing`, () => {}),
      Deno.errors.NotFound,
    );
    assert.equal(Deno.cwd(), before);
  });
});

Deno.test("run() cannot be nested (the outer section would lose its directory)", async () => {
  await withTree((root) => {
    assert.throws(() =>
      cwdAnchor().run(root, () => cwdAnchor().run(root, () => 1))
    );
  });
});
