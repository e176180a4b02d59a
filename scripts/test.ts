// deno-lint-ignore-file no-console
/**
 * `deno task test`: runs every test file in a process of its own, a few at a
 * time, and ends with Deno's own summary line for the whole run.
 *
 * Why not `deno test --parallel`: that runs test files as threads of one
 * process, and hsyncd's jail changes the process's working directory inside
 * its synchronous sections (lib/server/jail/cwd_anchor.ts). In hsyncd there is one
 * JavaScript thread, so nothing else can see it; in-process servers of two
 * test files running as two threads would see each other's.
 *
 * Usage: deno task test [FILE...] [-- DENO_TEST_ARGS...]
 */
import { availableParallelism } from "node:os";

const separator = Deno.args.indexOf("--");
const files = (separator < 0 ? Deno.args : Deno.args.slice(0, separator))
  .filter((a) => a !== "");
const extra = separator < 0 ? [] : Deno.args.slice(separator + 1);
const root = new URL("..", import.meta.url).pathname;

const targets = files.length > 0 ? files : await allTestFiles(`${root}tests`);
const jobs = Math.max(2, Math.min(availableParallelism(), 4));
const started = performance.now();
const totals = { passed: 0, failed: 0, ignored: 0, steps: 0 };
const broken: string[] = [];
let next = 0;

async function worker(): Promise<void> {
  while (next < targets.length) {
    const file = targets[next++];
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["test", "-P=test", ...extra, file],
      cwd: root,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) +
      new TextDecoder().decode(out.stderr);
    // One file's output at a time, whole, so files never interleave.
    await Deno.stdout.write(new TextEncoder().encode(text));
    const summary = text.split("\n").map(plainText).reverse().find((line) =>
      /^(ok|FAILED) \| \d+ passed/.test(line)
    );
    if (summary === undefined) {
      broken.push(file);
      totals.failed++;
      continue;
    }
    const plain = summary;
    const count = (what: string) =>
      Number(new RegExp(`(\\d+) ${what}`).exec(plain)?.[1] ?? 0);
    totals.passed += count("passed");
    totals.failed += count("failed");
    totals.ignored += count("ignored");
    totals.steps += Number(/\((\d+) steps\)/.exec(plain)?.[1] ?? 0);
    if (!out.success && count("failed") === 0) {
      broken.push(file);
      totals.failed++;
    }
  }
}

await Promise.all(Array.from({ length: jobs }, () => worker()));
const seconds = Math.round((performance.now() - started) / 1000);
for (const file of broken) {
  console.log(`${file}: did not finish with a test summary`);
}
const ok = totals.failed === 0 && totals.passed > 0;
console.log(
  `${
    ok ? "ok" : "FAILED"
  } | ${totals.passed} passed (${totals.steps} steps) | ${totals.failed} failed${
    totals.ignored > 0 ? ` | ${totals.ignored} ignored` : ""
  } (${seconds}s)`,
);
Deno.exit(ok ? 0 : 1);

/** A line without terminal colour codes. */
function plainText(line: string): string {
  // deno-lint-ignore no-control-regex
  return line.replace(/\x1b\[[0-9;]*m/g, "");
}

async function allTestFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isFile && entry.name.endsWith("_test.ts")) {
      out.push(`tests/${entry.name}`);
    }
  }
  return out.sort();
}
