/** PathFilter's --exclude checked against rsync's, where rsync is installed: the same tree, the same patterns, exactly the same entries left out. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { PathFilter } from "../lib/client/filters.ts";
import { loadGlobs } from "../lib/shared/glob.ts";

// PathFilter compiles globs synchronously: what a run awaits first (readyFilter).
await loadGlobs();

/** rsync's version line, or why the comparison cannot run here. */
async function rsyncVersion(): Promise<{ version?: string; why?: string }> {
  try {
    const out = await new Deno.Command("rsync", {
      args: ["--version"],
      stdout: "piped",
      stderr: "null",
    }).output();
    if (!out.success) return { why: "rsync --version failed" };
    return { version: new TextDecoder().decode(out.stdout).split("\n")[0] };
  } catch (error) {
    return { why: `rsync cannot be run: ${String(error)}` };
  }
}

const rsync = await rsyncVersion();
if (rsync.why !== undefined) {
  // deno-lint-ignore no-console -- the reason a comparison did not run is worth a line
  console.log(`filters_rsync_test skipped: ${rsync.why}`);
}

/** Directories (ending in `/`) and files of the tree both tools look at. */
const TREE = [
  "a/",
  "a/b/",
  "a/b/f",
  "a/b.log",
  "a/x/",
  "a/x/y/",
  "a/x/y/b/",
  "a/x/y/b/f",
  "b",
  "build/",
  "build/o/",
  "build/o/f",
  "buildx",
  "d/",
  "d/tmp/",
  "d/tmp/g",
  "d/tmpfile",
  "e",
  ".git/",
  ".git/config",
  ".hidden.log",
  "logs/",
  "logs/z.log",
  "logs/old/",
  "logs/old/z.log",
  "q.log",
  "s/",
  "s/build/",
  "s/build/f",
  "s/buildy",
  "s/tmp",
  "tmp/",
  "tmp/in/",
  "tmp/in/f",
  "tmpx",
  "x/",
  "x/a/",
  "x/a/b/",
  "x/a/b/f",
];

/** Exclude lists where rsync is the reference: each kind of spelling alone, then a few together. */
const CASES: string[][] = [
  ["tmp/"],
  ["/build"],
  ["/build/"],
  ["build"],
  ["b"],
  ["a/b"],
  ["a/b/"],
  ["/a/b"],
  ["*/b"],
  ["a/*"],
  ["*.log"],
  ["**.log"],
  ["**/b"],
  ["x/**/f"],
  ["a/**/b"],
  ["a/**"],
  ["/a/**"],
  ["a/***"],
  ["build*"],
  ["build**"],
  ["x**f"],
  ["?"],
  ["[ab]"],
  ["/[a-c]/*"],
  [".*"],
  ["logs/old/"],
  ["tmp/", "/build", "*.log", "a/b"],
  ["**/old/", ".git/", "/s/*"],
];

Deno.test({
  name: "--exclude leaves out exactly what rsync's --exclude leaves out",
  ignore: rsync.why !== undefined,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "hsync-filters-rsync-" });
    try {
      const src = join(root, "src");
      await Deno.mkdir(src);
      for (const entry of TREE) {
        const path = join(src, entry);
        if (entry.endsWith("/")) await Deno.mkdir(path);
        else await Deno.writeTextFile(path, "x");
      }
      for (const patterns of CASES) {
        const kept = await rsyncKeeps(src, join(root, "dst"), patterns);
        const rsyncDrops = TREE.filter((e) => !kept.has(e));
        const filter = new PathFilter({ exclude: patterns });
        const oursDrop = TREE.filter((e) =>
          filter.excludes(e.replace(/\/$/, "").split("/"), e.endsWith("/"))
        );
        assert.deepEqual(
          oursDrop,
          rsyncDrops,
          `--exclude ${JSON.stringify(patterns)} (${rsync.version})`,
        );
      }
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test({
  name: "the rsync comparison itself sees what rsync leaves out",
  ignore: rsync.why !== undefined,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "hsync-filters-rsync-" });
    try {
      const src = join(root, "src");
      await Deno.mkdir(join(src, "tmp"), { recursive: true });
      await Deno.writeTextFile(join(src, "tmp", "f"), "x");
      await Deno.writeTextFile(join(src, "g"), "x");
      const dst = join(root, "dst");
      assert.deepEqual([...await rsyncKeeps(src, dst, [])].sort(), [
        "g",
        "tmp/",
        "tmp/f",
      ]);
      assert.deepEqual([...await rsyncKeeps(src, dst, ["tmp/"])], ["g"]);
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});

/** What `rsync -r --dry-run` would copy with these excludes: directories end in `/`, the root left out. */
async function rsyncKeeps(
  src: string,
  dst: string,
  excludes: string[],
): Promise<Set<string>> {
  const out = await new Deno.Command("rsync", {
    args: [
      "-r",
      "--dry-run",
      "--out-format=%n",
      ...excludes.flatMap((p) => ["--exclude", p]),
      `${src}/`,
      `${dst}/`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  assert.ok(out.success, text.decode(out.stderr));
  return new Set(
    text.decode(out.stdout).split("\n").filter((l) => l !== "" && l !== "./"),
  );
}
