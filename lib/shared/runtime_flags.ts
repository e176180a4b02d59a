/**
 * V8 flags of each program, baked into its binary (scripts/compile.ts) and
 * used by `deno task`, the detached daemon, the tests, the demo and the
 * benchmarks alike. A 2 MiB young generation keeps resident memory lower at
 * no measured cost in speed: hsync 79 vs 95 MB on 10,000 files of 4 KiB;
 * hsyncd 300 vs 379 MiB serving 64 clients at once.
 *
 * hsyncd no longer runs in V8's memory saver mode: serving 64 clients at
 * once it peaked at 163-174 MiB against 192-200 without, but it doubled
 * hsyncd's CPU on a push (1 GiB on loopback: 3.5-4.1 s against 1.7-2.6 s,
 * the push 3.1 s against 2.3 s).
 */
export const RUNTIME_FLAGS: Readonly<
  Record<"hsyncd" | "hsync", readonly string[]>
> = {
  hsyncd: ["--v8-flags=--max-semi-space-size=2"],
  hsync: ["--v8-flags=--max-semi-space-size=2"],
};
