/**
 * V8 flags of each program, baked into its binary (scripts/compile.ts) and
 * used by `deno task`, the detached daemon, the tests, the demo and the
 * benchmarks alike. A 2 MiB young generation keeps resident memory lower at
 * no measured cost in speed: hsync 79 vs 95 MB on 10,000 files of 4 KiB;
 * hsyncd 300 vs 379 MiB serving 64 clients at once.
 *
 * hsyncd also runs in V8's memory saver mode: serving 64 clients at once it
 * peaked at 163, 164 and 174 MiB against 198, 200 and 192 without. Over 16
 * interleaved pulls of 10,000 files of 4 KiB its CPU was 1.03 s against
 * 0.97 s on average (medians 1.01 and 1.04 s), the wall time the same; on
 * 1 GiB and on 100 files of 10 MiB no difference showed. (`--optimize-for-size`
 * saved as much memory but cost 20-40% of CPU on the small files.)
 */
export const RUNTIME_FLAGS: Readonly<
  Record<"hsyncd" | "hsync", readonly string[]>
> = {
  hsyncd: ["--v8-flags=--max-semi-space-size=2,--memory-saver-mode"],
  hsync: ["--v8-flags=--max-semi-space-size=2"],
};
