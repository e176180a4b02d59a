// deno-lint-ignore-file no-console
/** `deno task compile`: builds the standalone binaries dist/hsyncd and dist/hsync with their deno.json permission sets. */
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { join, relative, resolve } from "node:path";
import { RUNTIME_FLAGS } from "../lib/shared/runtime_flags.ts";

/** The programs this repository ships. */
export type Program = "hsyncd" | "hsync";

/** Every program, in build order. */
export const PROGRAMS: readonly Program[] = ["hsyncd", "hsync"];

/** The only target the binaries are built for. */
export const TARGET = "x86_64-unknown-linux-gnu";

export { RUNTIME_FLAGS };

/** Entry module of each program, relative to the repository root. */
export const ENTRIES: Readonly<Record<Program, string>> = {
  hsyncd: "main_server.ts",
  hsync: "main_client.ts",
};

/** Repository root (where deno.json is); `deno compile` runs there. */
export const ROOT = fileURLToPath(new URL("..", import.meta.url));

/**
 * The `deno compile` arguments of one program, run from the repository root.
 *
 * `-P=NAME` bakes the named permission set of deno.json into the binary (the
 * same set `deno task serve`/`pull` use), so source and binary cannot drift.
 * hsync.ini needs no `--include`: both entries import it as a text module, so
 * it is embedded as the built-in defaults. Type checking stays on.
 */
export function compileArgs(program: Program, outDir = "dist"): string[] {
  return [
    "compile",
    `-P=${program}`,
    ...RUNTIME_FLAGS[program],
    "--target",
    TARGET,
    "--output",
    join(outDir, program),
    ENTRIES[program],
  ];
}

/** Strips ANSI colour codes from tool output. */
function plain(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/\x1b\[[0-9;]*m/g, "");
}

/** Options of {@linkcode runtimeFailure}. */
export interface RuntimeFailureOptions {
  /** The binary being built, as shown to the user (`dist/hsyncd`). */
  output: string;
  /** The `DENORT_BIN` environment variable, when set. */
  denortBin?: string;
}

/**
 * One line explaining a failure to get the runtime `deno compile` embeds
 * (denort), or undefined when `stderr` shows some other failure.
 */
export function runtimeFailure(
  stderr: string,
  options: RuntimeFailureOptions,
): string | undefined {
  const { output, denortBin } = options;
  const text = plain(stderr);
  const missingLocal = /Could not find denort at/.test(text);
  if (
    !missingLocal && !/Setting up base binary|denort-[\w-]+\.zip/.test(text)
  ) {
    return undefined;
  }
  // The innermost cause of Deno's error chain ("    4: dns error: ...").
  const chain = text.split("Caused by:")[1]?.split("Stack backtrace:")[0] ?? "";
  const causes = [...chain.matchAll(/^\s*\d+: (.+)$/gm)].map((m) => m[1]);
  const cause = causes.at(-1)?.trim() ?? "unknown error";
  const what = `Cannot build ${output}`;
  if (denortBin !== undefined && denortBin !== "") {
    return `${what}: DENORT_BIN="${denortBin}" is not a usable denort runtime (${cause}); set DENORT_BIN to the denort ${Deno.version.deno} binary for ${TARGET}`;
  }
  return `${what}: deno compile could not download its runtime (denort ${Deno.version.deno} for ${TARGET}) from this machine (${cause}); point it at a local runtime: DENORT_BIN=/path/to/denort deno task compile`;
}

/** Builds one binary; returns an error line, or undefined on success. */
async function build(
  program: Program,
  outDir: string,
): Promise<string | undefined> {
  const output = shown(join(outDir, program));
  const out = await new Deno.Command(Deno.execPath(), {
    args: compileArgs(program, outDir),
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (out.success) return undefined;
  const stderr = new TextDecoder().decode(out.stderr);
  const line = runtimeFailure(stderr, {
    output,
    denortBin: Deno.env.get("DENORT_BIN"),
  });
  if (line !== undefined) return line;
  // Type errors and the like: Deno's own report says it best.
  console.error(plain(stderr).trimEnd());
  return `Cannot build ${output}: deno compile exited with code ${out.code}`;
}

/** A path as the user should see it: relative to the working directory when inside it. */
function shown(path: string): string {
  const rel = relative(Deno.cwd(), path);
  return rel === "" || rel.startsWith("..") ? path : rel;
}

/** Runs `BINARY --version`; returns an error line, or undefined when it prints `PROGRAM VERSION`. */
async function smokeTest(
  program: Program,
  binary: string,
): Promise<string | undefined> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(binary, {
      args: ["--version"],
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(20_000),
    }).output();
  } catch (error) {
    return `Cannot run "${binary} --version": ${(error as Error).message}`;
  }
  const text = new TextDecoder().decode(out.stdout).trim();
  if (out.success && new RegExp(`^${program} \\d+\\.\\d+\\.\\d+`).test(text)) {
    return undefined;
  }
  const said = plain(text + new TextDecoder().decode(out.stderr)).trim()
    .split("\n")[0];
  return `Built "${
    shown(binary)
  }" but "--version" printed "${said}" (exit code ${out.code}), not "${program} VERSION": is DENORT_BIN a denort runtime?`;
}

/** Builds every program into `outDir` (relative to the repository root); returns the exit code. */
async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: { "out-dir": { type: "string", default: "dist" } },
  });
  const outDir = resolve(ROOT, values["out-dir"]);
  await Deno.mkdir(outDir, { recursive: true });
  for (const program of PROGRAMS) {
    const failure = await build(program, outDir);
    if (failure !== undefined) {
      console.error(failure);
      return 1;
    }
    const binary = join(outDir, program);
    // Only a binary for this machine can be tried here.
    if (Deno.build.target === TARGET) {
      const broken = await smokeTest(program, binary);
      if (broken !== undefined) {
        // A binary that does not run must not be mistaken for a build.
        await Deno.remove(binary).catch(() => {});
        console.error(broken);
        return 1;
      }
    }
    const size = (await Deno.stat(binary)).size / 2 ** 20;
    console.log(
      `Built ${shown(binary)} (${TARGET}, -P=${program}, ${
        size.toFixed(1)
      } MiB)`,
    );
  }
  return 0;
}

if (import.meta.main) {
  Deno.exit(await main());
}
