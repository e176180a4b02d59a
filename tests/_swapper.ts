/** Test fixture: a process that swaps two directory entries in a tight loop, as an attacker racing the jail would. */

/** Exchanges two names atomically (renameat2 RENAME_EXCHANGE) until killed or `seconds` pass. */
const SWAP_C = `
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif
int main(int argc, char **argv) {
  if (argc < 4 || argc % 2 != 0) return 2;
  double seconds = atof(argv[1]);
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  long n = 0;
  for (;;) {
    for (int i = 2; i + 1 < argc; i += 2) {
      if (syscall(SYS_renameat2, AT_FDCWD, argv[i], AT_FDCWD, argv[i + 1], RENAME_EXCHANGE) != 0) {
        perror("renameat2");
        return 1;
      }
    }
    if ((++n & 255) == 0) {
      clock_gettime(CLOCK_MONOTONIC, &t);
      if ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 > seconds) break;
    }
  }
  /* An even number of exchanges leaves every pair as it was. */
  if (n & 1) {
    for (int i = 2; i + 1 < argc; i += 2) {
      syscall(SYS_renameat2, AT_FDCWD, argv[i], AT_FDCWD, argv[i + 1], RENAME_EXCHANGE);
    }
  }
  printf("%ld\\n", n);
  return 0;
}
`;

/**
 * The same race without a C compiler: three renames per swap (so for a
 * moment one name is missing), from a Deno subprocess; slower, still a race.
 */
const SWAP_TS = `
const [seconds, ...pairs] = Deno.args;
const end = Date.now() + Number(seconds) * 1000;
let n = 0;
while (Date.now() < end) {
  for (let i = 0; i + 1 < pairs.length; i += 2) {
    const tmp = pairs[i] + ".swap";
    Deno.renameSync(pairs[i], tmp);
    Deno.renameSync(pairs[i + 1], pairs[i]);
    Deno.renameSync(tmp, pairs[i + 1]);
  }
  n++;
}
if (n % 2 === 1) {
  for (let i = 0; i + 1 < pairs.length; i += 2) {
    const tmp = pairs[i] + ".swap";
    Deno.renameSync(pairs[i], tmp);
    Deno.renameSync(pairs[i + 1], pairs[i]);
    Deno.renameSync(tmp, pairs[i + 1]);
  }
}
console.log(n);
`;

/** A running swapper. */
export interface Swapper {
  /** How the swaps are made: `renameat2` (atomic exchange) or `rename` (three renames). */
  kind: "renameat2" | "rename";
  /** Waits for the end of the swapping; resolves with the number of rounds. */
  done: Promise<number>;
}

/**
 * Starts swapping each pair of paths (`[a, b, c, d]` swaps a with b and c
 * with d) for `seconds`, in `workDir` (where the C helper is built when a
 * compiler is found). Every pair is as it was when `done` resolves.
 */
export async function startSwapper(
  workDir: string,
  pairs: string[],
  seconds: number,
): Promise<Swapper> {
  const binary = await buildSwapper(workDir);
  const command = binary !== undefined
    ? new Deno.Command(binary, {
      args: [String(seconds), ...pairs],
      stdout: "piped",
      stderr: "piped",
    })
    : new Deno.Command(Deno.execPath(), {
      args: ["eval", "-q", SWAP_TS, String(seconds), ...pairs],
      stdout: "piped",
      stderr: "piped",
    });
  const child = command.spawn();
  const done = child.output().then((out) => {
    if (!out.success) {
      throw new Error(
        `The swapper failed: ${new TextDecoder().decode(out.stderr)}`,
      );
    }
    return Number(new TextDecoder().decode(out.stdout).trim());
  });
  return { kind: binary !== undefined ? "renameat2" : "rename", done };
}

/** Compiles the C swapper with cc or gcc; undefined (and a printed reason) when neither works. */
async function buildSwapper(workDir: string): Promise<string | undefined> {
  const source = `${workDir}/swap.c`;
  const binary = `${workDir}/swap`;
  await Deno.writeTextFile(source, SWAP_C);
  for (const cc of ["cc", "gcc"]) {
    try {
      const out = await new Deno.Command(cc, {
        args: ["-O2", "-o", binary, source],
        stdout: "null",
        stderr: "piped",
      }).output();
      if (out.success) return binary;
    } catch {
      // no such compiler: try the next
    }
  }
  // deno-lint-ignore no-console
  console.log(
    "jail race: no C compiler (cc, gcc) found; swapping with three renames from Deno instead of renameat2",
  );
  return undefined;
}
