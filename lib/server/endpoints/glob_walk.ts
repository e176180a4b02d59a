/**
 * The walk behind `/v1/glob`: the components of a pattern matched one
 * directory level at a time, every directory read and every entry looked at
 * through the jail's proof, as a listing does (list_lines.ts decides what an
 * entry is, so a glob never matches what a listing would not list).
 */
import { HttpError } from "../../shared/errors.ts";
import { globTest, loadGlobs } from "../../shared/glob.ts";
import { hasGlob } from "../../shared/wire.ts";
import {
  MAX_NAME_BYTES,
  MAX_PATH_BYTES,
  utf8Longer,
} from "../../shared/name_bytes.ts";
import {
  type GlobMatch,
  isOmission,
  type StatEntry,
} from "../../shared/wire.ts";
import { clientGone } from "../admission.ts";
import type { DirectoryReads } from "../directory_reads.ts";
import type { CheckedPath, PathGuard } from "../jail/path_guard.ts";
import { quote } from "../jail/rules.ts";
import { statEntry } from "./_checked.ts";
import {
  describeEntry,
  identity,
  type ListOptions,
  type WalkedDir,
} from "./list_lines.ts";

/** A pattern split at its first glob component. */
export interface GlobPattern {
  /** The pattern as asked (what messages show). */
  pattern: string;
  /** The leading components without `*?[`, as an absolute path: the directory the walk starts in. */
  base: string;
  /** The components from the first glob on; empty when the pattern has no glob. */
  rest: string[];
}

/** What a walk needs besides the pattern: the jail, the directory reads, the bound and the request's end. */
export interface GlobWalk {
  guard: PathGuard;
  reads: DirectoryReads;
  /** Most matches answered: one more is 413 `too_many_matches`. */
  max: number;
  signal: AbortSignal;
}

/** Entries looked at per synchronous section (as a listing's batch). */
const BATCH = 256;
/** Links followed as a listing without `links=1` follows them; no inode tags. */
const FOLLOW: ListOptions = { links: false, hardLinks: false };

/**
 * Splits an absolute `/`-separated pattern into the directory it starts in
 * and the components matched below it; 400 `bad_path` for a relative one,
 * NUL, `..`, or one too long. Empty and `.` components are dropped (as a
 * path's are).
 */
export function parseGlob(pattern: string): GlobPattern {
  const bad = (why: string) =>
    new HttpError(400, "bad_path", `Cannot expand ${quote(pattern)}: ${why}`);
  if (!pattern.startsWith("/")) throw bad("the pattern must be absolute");
  if (pattern.includes("\0")) throw bad("a pattern cannot contain NUL");
  if (utf8Longer(pattern, MAX_PATH_BYTES)) {
    throw bad(`a pattern is at most ${MAX_PATH_BYTES} bytes`);
  }
  const parts = pattern.split("/").filter((p) => p !== "" && p !== ".");
  for (const part of parts) {
    // After a glob, `..` would climb out of whatever matched: never followed.
    if (part === "..") throw bad('a pattern cannot hold a ".." component');
    if (utf8Longer(part, MAX_NAME_BYTES)) {
      throw bad(`a component is at most ${MAX_NAME_BYTES} bytes`);
    }
  }
  const first = parts.findIndex(hasGlob);
  const fixed = first < 0 ? parts : parts.slice(0, first);
  return {
    pattern,
    base: `/${fixed.join("/")}`,
    rest: first < 0 ? [] : parts.slice(first),
  };
}

/** How one component matches a name: `**` (any levels), a glob, or a name. */
type Step =
  | { kind: "globstar" }
  | { kind: "glob"; test: (name: string) => boolean }
  | { kind: "name"; name: string };

function stepOf(component: string): Step {
  if (component === "**") return { kind: "globstar" };
  if (!hasGlob(component)) return { kind: "name", name: component };
  // A leading `.` only by a component that starts with one, as a shell does.
  return {
    kind: "glob",
    test: globTest(component, { dot: component.startsWith(".") }),
  };
}

/**
 * Every entry below `base` (a checked path) whose path matches the
 * pattern's `rest`, sorted by path. The walk keeps, for each directory it
 * enters, the components still to match there (a `**` stays while it goes
 * down, and may also match nothing); each directory is read once, and only
 * the names that match something are looked at. What the jail refuses is
 * never matched and never named; a directory that cannot be read matches
 * nothing (as in a shell); one that changed while it was read fails the
 * whole answer (409 `changed`): a glob never answers from where a swapped
 * link led.
 */
export async function expandGlob(
  walk: GlobWalk,
  glob: GlobPattern,
  base: CheckedPath,
): Promise<GlobMatch[]> {
  await loadGlobs();
  const steps = glob.rest.map(stepOf);
  const done = steps.length;
  const matches: GlobMatch[] = [];
  const onStack = new Set<string>();
  const above = (info: Deno.FileInfo) => onStack.has(identity(info));

  /** The states with every `**` also matching no level. */
  const closure = (states: Set<number>): Set<number> => {
    for (let i = 0; i < done; i++) {
      if (states.has(i) && steps[i].kind === "globstar") states.add(i + 1);
    }
    return states;
  };

  /** The states a name of a directory in `states` leads to (closed). */
  const advance = (states: Set<number>, name: string): Set<number> => {
    const next = new Set<number>();
    for (const i of states) {
      if (i === done) continue;
      const step = steps[i];
      if (step.kind === "globstar") {
        if (!name.startsWith(".")) next.add(i);
      } else if (
        step.kind === "glob" ? step.test(name) : step.name === name
      ) next.add(i + 1);
    }
    return closure(next);
  };

  const add = (path: string, entry: StatEntry) => {
    if (matches.length >= walk.max) {
      throw new HttpError(
        413,
        "too_many_matches",
        `Cannot expand ${
          quote(glob.pattern)
        }: it matches more than ${walk.max} entries`,
      );
    }
    const { type, size, mtime, mode, etag } = entry;
    matches.push({ path, type, size, mtime, mode, etag });
  };

  const changed = () =>
    new HttpError(
      409,
      "changed",
      `Cannot expand ${
        quote(glob.pattern)
      }: a directory changed while it was read, retry`,
    );

  async function visit(
    dir: WalkedDir,
    path: string,
    states: Set<number>,
  ): Promise<void> {
    if (walk.signal.aborted) throw clientGone();
    const proof = { realPath: dir.real, info: dir.info };
    let names: string[];
    if ([...states].every((i) => i === done || steps[i].kind === "name")) {
      // Only names asked for: looked up one by one, the directory not read.
      names = [...new Set(fixedNames(steps, states))].sort();
    } else {
      const read = await walk.reads.run(() =>
        walk.guard.readDirectory(proof, walk.reads)
      );
      if (read === "changed") throw changed();
      if (!Array.isArray(read)) return;
      names = read;
    }
    const wanted = names
      .map((name) => ({ name, next: advance(states, name) }))
      .filter((w) => w.next.size > 0);
    const below: Array<{ dir: WalkedDir; path: string; states: Set<number> }> =
      [];
    onStack.add(identity(dir.info));
    for (let at = 0; at < wanted.length; at += BATCH) {
      const batch = wanted.slice(at, at + BATCH);
      const infos = walk.guard.describeEntries(
        proof,
        batch.map((w) => w.name),
      );
      if (infos === undefined) throw changed();
      for (let i = 0; i < batch.length; i++) {
        const { name, next } = batch[i];
        const d = describeEntry(walk.guard, dir, name, infos[i], FOLLOW, above);
        if (d === "changed") throw changed();
        if (d.line === undefined || isOmission(d.line)) continue;
        const childPath = path === "/" ? `/${name}` : `${path}/${name}`;
        if (next.has(done)) add(childPath, d.line);
        if (
          d.descend !== undefined && !d.descend.loop &&
          [...next].some((s) => s < done)
        ) below.push({ dir: d.descend, path: childPath, states: next });
      }
    }
    for (const sub of below) await visit(sub.dir, sub.path, sub.states);
    onStack.delete(identity(dir.info));
  }

  const start = closure(new Set([0]));
  if (start.has(done)) add(base.path, statEntry(base.info, base.type));
  if (base.type === "dir") {
    await visit(
      { real: base.realPath, rel: "", info: base.info },
      base.path,
      start,
    );
  }
  return matches.sort((
    a,
    b,
  ) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** The names the `name` steps among `states` ask for. */
function fixedNames(steps: Step[], states: Set<number>): string[] {
  const names: string[] = [];
  for (const i of states) {
    const step = steps[i];
    if (step?.kind === "name") names.push(step.name);
  }
  return names;
}
