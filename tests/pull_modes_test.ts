/**
 * A pull loads what setting a mode takes (node's fs: 16-28 ms of its one
 * thread) only once a file or directory is to get another mode than the one
 * it is made with, or with -P; every mode still arrives.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { localUmask } from "../lib/client/placement.ts";
import { jsonOfChild, tempDir } from "./_programs.ts";
import { realServer } from "./_real_server.ts";

const umask = localUmask();
/** What a new file (directory) is made with here. */
const FILE = 0o666 & ~umask;
const DIR = 0o777 & ~umask;

/** Small files (bundled) and a big one (ranges), modes as they are made, in two directories. */
async function madeTree(root: string): Promise<void> {
  for (const d of ["a", "a/b"]) {
    await Deno.mkdir(join(root, d), { recursive: true });
    await Deno.chmod(join(root, d), DIR);
  }
  for (let i = 0; i < 12; i++) {
    const path = join(root, i % 2 ? "a" : "a/b", `f${i}.txt`);
    await Deno.writeTextFile(path, `file ${i}\n`);
    await Deno.chmod(path, FILE);
  }
  const big = join(root, "a", "big.bin");
  await Deno.writeFile(big, new Uint8Array(3 * 1024 * 1024).fill(7));
  await Deno.chmod(big, FILE);
  await Deno.chmod(root, DIR);
}

async function pullInChild(
  baseUrl: string,
  remote: string,
  local: string,
  preserve = false,
): Promise<{ files: number; failures: unknown[]; modesLoaded: boolean }> {
  return await jsonOfChild(
    new URL("./_pull_child.ts", import.meta.url).pathname,
    [baseUrl, remote, local, ...(preserve ? ["preserve"] : [])],
  ) as { files: number; failures: unknown[]; modesLoaded: boolean };
}

async function modeOf(path: string): Promise<number> {
  return (await Deno.lstat(path)).mode! & 0o7777;
}

Deno.test("a pull whose files and directories all get the mode they are made with never loads node's fs; a file to get another mode loads it, and gets that mode", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await madeTree(data);
  await using server = await realServer(data);

  const plain = await pullInChild(server.baseUrl, data, join(dir.path, "o1"));
  assert.deepEqual(plain.failures, []);
  assert.equal(plain.files, 13);
  assert.equal(plain.modesLoaded, false);
  assert.equal(await modeOf(join(dir.path, "o1/a/f1.txt")), FILE);
  assert.equal(await modeOf(join(dir.path, "o1/a/big.bin")), FILE);
  // Times to the millisecond through Deno's handles too.
  for (const rel of ["a/f1.txt", "a/b/f0.txt", "a/big.bin"]) {
    assert.equal(
      (await Deno.lstat(join(dir.path, "o1", rel))).mtime?.getTime(),
      (await Deno.lstat(join(data, rel))).mtime?.getTime(),
      rel,
    );
  }

  // One small file and the big one with modes of their own.
  await Deno.chmod(join(data, "a/b/f0.txt"), 0o751);
  await Deno.chmod(join(data, "a/big.bin"), 0o640);
  const moded = await pullInChild(server.baseUrl, data, join(dir.path, "o2"));
  assert.deepEqual(moded.failures, []);
  assert.equal(moded.files, 13);
  assert.equal(moded.modesLoaded, true);
  assert.equal(await modeOf(join(dir.path, "o2/a/b/f0.txt")), 0o751 & ~umask);
  assert.equal(await modeOf(join(dir.path, "o2/a/big.bin")), 0o640 & ~umask);
  assert.equal(await modeOf(join(dir.path, "o2/a/f1.txt")), FILE);
});

Deno.test("a directory to get another mode loads it before the directories get their modes; -P loads it at once", async () => {
  await using dir = await tempDir();
  const data = join(dir.path, "data");
  await madeTree(data);
  await Deno.chmod(join(data, "a/b"), 0o700);
  await using server = await realServer(data);
  const moded = await pullInChild(server.baseUrl, data, join(dir.path, "o1"));
  assert.deepEqual(moded.failures, []);
  assert.equal(moded.modesLoaded, true);
  assert.equal(await modeOf(join(dir.path, "o1/a/b")), 0o700);

  await Deno.chmod(join(data, "a/b"), DIR);
  const kept = await pullInChild(
    server.baseUrl,
    data,
    join(dir.path, "o2"),
    true,
  );
  assert.deepEqual(kept.failures, []);
  assert.equal(kept.files, 13);
  assert.equal(kept.modesLoaded, true);
  assert.equal(await modeOf(join(dir.path, "o2/a/f1.txt")), FILE);
});

Deno.test("neither hsync's start nor its pull engine imports node's fs (only a dynamic import, when a mode is to be set)", async () => {
  for (const root of ["../main_client.ts", "../lib/client/pull.ts"]) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", new URL(root, import.meta.url).pathname],
      stdout: "piped",
    }).output();
    assert.ok(out.success);
    const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
      roots: string[];
      modules: Array<{
        specifier: string;
        dependencies?: Array<
          {
            specifier: string;
            isDynamic?: boolean;
            code?: { specifier: string };
          }
        >;
      }>;
    };
    const modules = new Map(info.modules.map((m) => [m.specifier, m]));
    const importers: string[] = [];
    const seen = new Set<string>();
    const walk = (specifier: string) => {
      if (seen.has(specifier)) return;
      seen.add(specifier);
      for (const dep of modules.get(specifier)?.dependencies ?? []) {
        if (dep.isDynamic) continue;
        const to = dep.code?.specifier ?? dep.specifier;
        if (to === "node:fs") importers.push(specifier);
        else if (to.startsWith("file:")) walk(to);
      }
    };
    walk(info.roots[0]);
    assert.ok(seen.size > 10, `${root}: ${seen.size} modules`);
    assert.deepEqual(importers, [], `${root} imports node:fs`);
  }
});
