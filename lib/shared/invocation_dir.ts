/**
 * Where relative paths of a run from source start: `deno task` runs in the
 * repository's folder and tells the folder the user stood in as `INIT_CWD`;
 * each program enters it first, so `deno task pull HOST:/x rel.txt` writes
 * `rel.txt` where the user ran it. A compiled binary runs where it is
 * started and never reads `INIT_CWD`.
 */
import { ConfigError } from "./errors.ts";

/**
 * Enters `INIT_CWD` when this program runs from source and it is set;
 * throws `ConfigError` (one line) when it cannot be entered, rather than
 * writing into the repository.
 */
export function enterInvocationDir(): void {
  if (Deno.build.standalone) return;
  const dir = Deno.env.get("INIT_CWD");
  if (dir === undefined || dir === "") return;
  try {
    Deno.chdir(dir);
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    throw new ConfigError(
      `Cannot enter INIT_CWD "${dir}" (where deno task was run): ${why}`,
    );
  }
}
