/** Generates the sample tree used by `deno task demo` and the end-to-end tests: the shapes that break copiers. */
import { dirname, join } from "node:path";

/** What {@linkcode makeSampleTree} wrote. */
export interface SampleTree {
  files: number;
  dirs: number;
  bytes: number;
}

/** Options of {@linkcode makeSampleTree}. */
export interface SampleOptions {
  /** Size of the one big file (split into parallel ranges), in bytes. */
  bigFileBytes?: number;
  /** How many small files, spread over 10 directories. */
  smallFiles?: number;
}

/** Writes deterministic pseudo-random bytes (fast xorshift; the content only has to differ per file). */
export async function writeRandomFile(
  path: string,
  size: number,
  seed: number,
): Promise<void> {
  using file = await Deno.open(path, {
    write: true,
    create: true,
    truncate: true,
  });
  const block = new Uint8Array(Math.min(size, 1 << 20));
  const words = new Uint32Array(block.buffer, 0, block.length >>> 2);
  let x = (seed * 2654435761) >>> 0 || 1;
  let left = size;
  while (left > 0) {
    for (let i = 0; i < words.length; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      words[i] = x >>> 0;
    }
    for (let i = words.length * 4; i < block.length; i++) block[i] = x & 0xff;
    const n = Math.min(left, block.length);
    let off = 0;
    while (off < n) off += await file.write(block.subarray(off, n));
    left -= n;
  }
}

/** Builds a tree with nested and empty directories, empty files, spaces and non-ASCII names, small files and one big file. */
export async function makeSampleTree(
  root: string,
  options: SampleOptions = {},
): Promise<SampleTree> {
  const big = options.bigFileBytes ?? 64 * 1024 * 1024;
  const small = options.smallFiles ?? 300;
  const tree: SampleTree = { files: 0, dirs: 0, bytes: 0 };
  const mkdir = async (p: string) => {
    await Deno.mkdir(join(root, p), { recursive: true });
    tree.dirs++;
  };
  const file = async (p: string, size: number) => {
    await Deno.mkdir(dirname(join(root, p)), { recursive: true });
    await writeRandomFile(join(root, p), size, tree.files + 7);
    tree.files++;
    tree.bytes += size;
  };
  await Deno.mkdir(root, { recursive: true });
  await mkdir("empty dir");
  await mkdir("deep/a/b/c/d");
  await mkdir("données/été");
  await file("deep/a/b/c/d/leaf.txt", 1234);
  await file("données/été/résumé 2026.csv", 40_000);
  await file("name with spaces.log", 5000);
  await file("empty-file", 0);
  await file("big/run-0001.bin", big);
  for (let i = 0; i < small; i++) {
    const dir = `small/d${String(i % 10).padStart(2, "0")}`;
    if (i < 10) await mkdir(dir);
    await file(
      `${dir}/f${String(i).padStart(5, "0")}.dat`,
      1 + (i * 997) % 16384,
    );
  }
  return tree;
}
