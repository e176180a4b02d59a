/**
 * The pidfile of hsyncd and the process it names: written and read without
 * following a planted symlink, trusted only when provably this user's
 * hsyncd. The pidfile holds the bare process id (`kill -HUP $(cat
 * hsyncd.pid)`); the other facts (address, start time, the arguments it was
 * started with) are in the facts file beside it (lib/server/pid_facts.ts).
 */
import process from "node:process";
import { basename, dirname, join } from "node:path";
import { factsPath, mergeFacts, parseFacts } from "./pid_facts.ts";

/** The port hsyncd listens on when none is configured (its pidfile is plain `hsyncd.pid`). */
export const DEFAULT_PORT = 10808;

/** What the pidfile records about a running hsyncd. */
export interface PidInfo {
  pid: number;
  /** Address the server listens on, as configured (0.0.0.0, ::, one IP). */
  host: string;
  port: number;
  scheme: "http" | "https";
  /** When the server started listening (ISO 8601). */
  started: string;
  /** Start time of the process in clock ticks since boot (`/proc/PID/stat` field 22), so a recycled pid is recognised. */
  procStart?: number;
  version: string;
  /** The command-line arguments the server was started with, for `restart`. */
  args?: string[];
  /** The directory it was started in (its relative paths are from there). */
  cwd?: string;
}

/**
 * What the pidfile says about the server. `untrusted`: the pidfile or the
 * process it names cannot be proven to be this user's hsyncd, so nothing may
 * signal it or replace it; `reason` completes `pidfile "PATH" ...`.
 */
export type PidfileState =
  | { state: "absent" }
  | { state: "running"; info: PidInfo }
  | { state: "stale"; info?: PidInfo; reason: string }
  | { state: "untrusted"; info?: PidInfo; reason: string };

/** What `/proc` tells about one process. */
export interface ProcessFacts {
  /** Single-letter state; `Z` is a zombie (exited, not yet reaped). */
  state: string;
  /** Clock ticks since boot when the process started. */
  start: number;
  /** Arguments, NUL-separated in /proc, here as an array. */
  cmdline: string[];
  /** Real, effective, saved and file-system uid (`/proc/PID/status`), when readable. */
  uids?: number[];
  /** Target of `/proc/PID/exe` (readable only for one's own processes). */
  exe?: string;
}

/** Who this process is, to compare a pidfile and its process with. */
export interface SelfFacts {
  /** Real uid; undefined when it cannot be read. */
  uid: number | undefined;
  /** This program's executable (`Deno.execPath()`). */
  exe: string;
}

/** How liveness is probed; a seam for tests. */
export interface ProcessProbe {
  /** True when a process with this pid exists (whoever owns it). */
  exists(pid: number): boolean;
  /** Facts from /proc, or undefined when they cannot be read. */
  facts(pid: number): Promise<ProcessFacts | undefined>;
  /** This process's uid and executable. */
  self(): Promise<SelfFacts>;
}

/** Where the pidfile of the server on `port` lives: `hsyncd.pid` for the default port, `hsyncd-PORT.pid` for another. */
export function pidfilePath(hsyncDir: string, port = DEFAULT_PORT): string {
  return join(
    hsyncDir,
    port === DEFAULT_PORT ? "hsyncd.pid" : `hsyncd-${port}.pid`,
  );
}

/** Longest pidfile read; anything longer is not one. */
const PIDFILE_MAX_BYTES = 4096;

/**
 * Writes the pidfile atomically, creating its directory: a temporary file of
 * a random name is created exclusively (a name planted as a symlink fails
 * instead of being followed), then renamed over the pidfile (a rename
 * replaces a symlink, never its target). The file is `0644`.
 */
export async function writePidfile(path: string, info: PidInfo): Promise<void> {
  await Deno.mkdir(dirname(path), { recursive: true, mode: 0o755 });
  // The facts first: whoever sees the pid finds them.
  await writeAtomic(factsPath(path), JSON.stringify(info, null, 2) + "\n");
  await writeAtomic(path, `${info.pid}\n`);
}

/** Replaces `path` by a file holding `text`, never writing through a symlink. */
async function writeAtomic(path: string, text: string): Promise<void> {
  const bytes = new TextEncoder().encode(text);
  const { file, path: temp } = await createExclusive(path);
  try {
    try {
      for (let done = 0; done < bytes.length;) {
        done += await file.write(bytes.subarray(done));
      }
    } finally {
      file.close();
    }
    await Deno.rename(temp, path);
  } catch (error) {
    await Deno.remove(temp).catch(() => {});
    throw error;
  }
}

/** Creates `PATH.RANDOM.tmp` with `createNew`, and proves the handle is the file at that name. */
async function createExclusive(
  path: string,
): Promise<{ file: Deno.FsFile; path: string }> {
  for (let attempt = 1;; attempt++) {
    const temp = `${path}.${randomHex()}.tmp`;
    let file: Deno.FsFile;
    try {
      file = await Deno.open(temp, {
        write: true,
        createNew: true,
        mode: 0o644,
      });
    } catch (error) {
      if (error instanceof Deno.errors.AlreadyExists && attempt < 8) continue;
      throw error;
    }
    const opened = await file.stat();
    const named = await Deno.lstat(temp).catch(() => undefined);
    if (named === undefined || !sameFile(opened, named)) {
      file.close();
      throw new Error(`"${temp}" was replaced while it was created`);
    }
    return { file, path: temp };
  }
}

function randomHex(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** True when two stats describe the same regular file (device and inode). */
function sameFile(a: Deno.FileInfo, b: Deno.FileInfo): boolean {
  return a.isFile && b.isFile && a.dev === b.dev && a.ino !== null &&
    a.ino === b.ino;
}

/** The pidfile's bytes, read through a handle proven to be the regular file at its name. */
type PidfileText =
  | { kind: "absent" }
  | { kind: "refused"; reason: string }
  | { kind: "text"; text: string; stat: Deno.FileInfo };

async function readPidfileText(path: string): Promise<PidfileText> {
  let named: Deno.FileInfo;
  try {
    named = await Deno.lstat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return { kind: "absent" };
    throw error;
  }
  // Checked before opening: Deno's open follows a symlink (even with
  // O_NOFOLLOW), and opening a FIFO would hang.
  if (named.isSymlink) return { kind: "refused", reason: "is a symbolic link" };
  if (!named.isFile) {
    return { kind: "refused", reason: "is not a regular file" };
  }
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return { kind: "absent" };
    throw error;
  }
  try {
    const stat = await file.stat();
    const again = await Deno.lstat(path).catch(() => undefined);
    if (again === undefined || !sameFile(stat, again)) {
      return { kind: "refused", reason: "was replaced while it was read" };
    }
    const buffer = new Uint8Array(PIDFILE_MAX_BYTES + 1);
    let length = 0;
    while (length < buffer.length) {
      const n = await file.read(buffer.subarray(length));
      if (n === null) break;
      length += n;
    }
    const text = length > PIDFILE_MAX_BYTES
      ? ""
      : new TextDecoder().decode(buffer.subarray(0, length));
    return { kind: "text", text, stat };
  } finally {
    file.close();
  }
}

/** Reads the pidfile: undefined when absent, `"invalid"` when it is not one (or not a regular file). */
export async function readPidfile(
  path: string,
): Promise<PidInfo | "invalid" | undefined> {
  const read = await readPidfileText(path);
  if (read.kind === "absent") return undefined;
  if (read.kind === "refused") return "invalid";
  const facts = await readPidfileText(factsPath(path));
  return parsePidfile(
    read.text,
    facts.kind === "text" ? facts.text : undefined,
  ) ?? "invalid";
}

/**
 * The pidfile's record, or undefined when the text is not one: a bare pid
 * completed by the facts file's text when that names the same pid (without
 * it, only the pid is known), or the JSON pidfile of an older hsyncd.
 */
export function parsePidfile(
  text: string,
  factsText?: string,
): PidInfo | undefined {
  const bare = /^\s*(\d{1,10})\s*$/.exec(text);
  if (bare !== null) {
    const pid = Number(bare[1]);
    if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
    return mergeFacts(pid, factsText);
  }
  return parseFacts(text);
}

/** Removes the pidfile; with `pid`, only when the file still names that process. */
export async function removePidfile(path: string, pid?: number): Promise<void> {
  if (pid !== undefined) {
    const info = await readPidfile(path).catch(() => undefined);
    if (typeof info !== "object" || info.pid !== pid) return;
  }
  for (const name of [path, factsPath(path)]) {
    await Deno.remove(name).catch((error) => {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    });
  }
}

/**
 * Why a pidfile in `dir` cannot be trusted, or undefined: the directory must
 * belong to this user (or root) and not be writable by others, or anyone
 * could plant a pidfile there. The reason completes `pidfile "PATH" ...`.
 */
export async function pidfileDirProblem(
  dir: string,
  uid: number,
): Promise<string | undefined> {
  let stat: Deno.FileInfo;
  try {
    stat = await Deno.stat(dir);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    return `is in "${dir}", which cannot be checked: ${
      error instanceof Error ? error.message : String(error)
    }`;
  }
  if (stat.uid !== uid && stat.uid !== 0) {
    return `is in "${dir}", owned by uid ${stat.uid}, not by this user (uid ${uid}) or root`;
  }
  if (((stat.mode ?? 0) & 0o002) !== 0) {
    return `is in "${dir}", which others can write (mode ${octal(stat.mode)})`;
  }
  return undefined;
}

/** Why the pidfile itself cannot be trusted, or undefined. */
function pidfileProblem(stat: Deno.FileInfo, uid: number): string | undefined {
  if (stat.uid !== uid) {
    return `is owned by uid ${stat.uid}, not by this user (uid ${uid})`;
  }
  if (((stat.mode ?? 0) & 0o022) !== 0) {
    return `is writable by group or others (mode ${octal(stat.mode)})`;
  }
  if ((stat.nlink ?? 1) > 1) return `has ${stat.nlink} hard links`;
  return undefined;
}

function octal(mode: number | null): string {
  return ((mode ?? 0) & 0o7777).toString(8).padStart(4, "0");
}

/**
 * The real probe. Deno grants `/proc` only with --allow-all, so its files are
 * read by `cat` and `readlink` (the `run` permission); `process.kill(pid, 0)`
 * checks existence.
 */
export const systemProbe: ProcessProbe = {
  exists(pid) {
    try {
      process.kill(pid, 0);
      return true;
    } catch (error) {
      return (error as { code?: string }).code === "EPERM";
    }
  },
  async facts(pid) {
    const [main, status, exe] = await Promise.all([
      output("cat", [`/proc/${pid}/stat`, `/proc/${pid}/cmdline`]),
      output("cat", [`/proc/${pid}/status`]),
      output("readlink", [`/proc/${pid}/exe`]),
    ]);
    const facts = main === undefined ? undefined : parseProcFacts(main);
    if (facts === undefined) return undefined;
    const uids = status === undefined ? undefined : parseUids(status);
    if (uids !== undefined) facts.uids = uids;
    if (exe !== undefined && exe !== "") facts.exe = exe.replace(/\n$/, "");
    return facts;
  },
  async self() {
    // `cat` is this process's child: /proc/self is cat, whose uid is ours.
    // (Deno.uid() needs a sys permission hsyncd does not have.)
    ownUid ??= output("cat", ["/proc/self/status"]).then((text) =>
      text === undefined ? undefined : parseUids(text)?.[0]
    );
    return { uid: await ownUid, exe: Deno.execPath() };
  },
};

let ownUid: Promise<number | undefined> | undefined;

/** Standard output of a successful command, or undefined. */
async function output(
  command: string,
  args: string[],
): Promise<string | undefined> {
  try {
    const out = await new Deno.Command(command, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).output();
    return out.success ? new TextDecoder().decode(out.stdout) : undefined;
  } catch {
    return undefined;
  }
}

/** Parses `/proc/PID/stat` followed by `/proc/PID/cmdline`. */
export function parseProcFacts(text: string): ProcessFacts | undefined {
  const newline = text.indexOf("\n");
  const stat = newline < 0 ? text : text.slice(0, newline);
  // The command name is in parentheses and may hold spaces: count after the last ")".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const start = Number(fields[19]);
  if (fields.length < 20 || !Number.isSafeInteger(start)) return undefined;
  const cmdline = newline < 0
    ? []
    : text.slice(newline + 1).split("\0").filter((a) => a !== "");
  return { state: fields[0], start, cmdline };
}

/** The `Uid:` line of `/proc/PID/status` (real, effective, saved, file-system). */
export function parseUids(status: string): number[] | undefined {
  const line = /^Uid:\s+(.*)$/m.exec(status);
  if (line === null) return undefined;
  const uids = line[1].trim().split(/\s+/).map(Number);
  return uids.length > 0 && uids.every((u) => Number.isSafeInteger(u))
    ? uids
    : undefined;
}

/** Start time of this process, recorded in the pidfile; undefined without /proc. */
export async function ownProcessStart(
  probe: ProcessProbe = systemProbe,
): Promise<number | undefined> {
  return (await probe.facts(Deno.pid))?.start;
}

/** True when a command line names hsyncd (the binary, or main_server.ts run by deno). */
function namesHsyncd(cmdline: string[]): boolean {
  return cmdline.some((a) => /hsyncd|main_server\.ts/.test(a));
}

/**
 * True when `exe` (a `/proc/PID/exe` target) can be hsyncd: this very
 * program, a binary named hsyncd..., or deno running it from source. A
 * pidfile forger can copy a start time but not another process's executable.
 */
export function isHsyncdExecutable(exe: string, ownExe: string): boolean {
  const path = exe.replace(/ \(deleted\)$/, "");
  if (path === ownExe.replace(/ \(deleted\)$/, "")) return true;
  const name = basename(path);
  return name.startsWith("hsyncd") || name === "deno";
}

/**
 * True when the pidfile's process is alive and is that same hsyncd: the start
 * time matches (or, with none recorded, the command line names hsyncd), so a
 * recycled pid is never taken for the server. Liveness only: whether the
 * process may be signalled is {@linkcode identifyProcess}'s to say.
 */
export async function isAlive(
  info: Pick<PidInfo, "pid" | "procStart">,
  probe: ProcessProbe = systemProbe,
): Promise<boolean> {
  if (!probe.exists(info.pid)) return false;
  const facts = await probe.facts(info.pid);
  if (facts === undefined) return probe.exists(info.pid);
  if (facts.state === "Z") return false;
  if (info.procStart !== undefined) return facts.start === info.procStart;
  return namesHsyncd(facts.cmdline);
}

/** What the process a pidfile names turned out to be. */
export type ProcessVerdict =
  /** This user's hsyncd, which may be signalled. */
  | { verdict: "hsyncd" }
  /** Not running: gone, a zombie, or its pid now belongs to a later process. */
  | { verdict: "gone"; reason: string }
  /** Running, but not provably this user's hsyncd; `reason` completes `pidfile "PATH" ...`. */
  | { verdict: "foreign"; reason: string };

/**
 * Decides whether the process a pidfile names may be signalled. A pidfile
 * can copy a pid and a start time; it cannot make another process run as
 * this user, from hsyncd's executable, with hsyncd on its command line.
 * Issue 21 turns the pidfile into a bare pid: this needs nothing else.
 */
export async function identifyProcess(
  info: Pick<PidInfo, "pid" | "procStart">,
  self: SelfFacts,
  probe: ProcessProbe = systemProbe,
): Promise<ProcessVerdict> {
  const { pid } = info;
  const gone = {
    verdict: "gone",
    reason: `pid ${pid} is not running`,
  } as const;
  if (!probe.exists(pid)) return gone;
  const facts = await probe.facts(pid);
  if (facts === undefined) {
    if (!probe.exists(pid)) return gone;
    return {
      verdict: "foreign",
      reason:
        `names pid ${pid}, which cannot be checked: /proc/${pid} cannot be read`,
    };
  }
  if (facts.state === "Z") return gone;
  if (info.procStart !== undefined && facts.start !== info.procStart) {
    return gone;
  }
  const named = namesHsyncd(facts.cmdline);
  // An old pidfile without a start time: a live pid running something else was recycled.
  if (info.procStart === undefined && !named) return gone;
  const not = `names pid ${pid}, which is not this user's hsyncd`;
  const uids = facts.uids;
  if (
    self.uid === undefined || uids === undefined || uids.length < 2 ||
    uids.some((u) => u !== self.uid)
  ) {
    const who = uids === undefined ? "an unknown uid" : `uid ${uids[0]}`;
    return { verdict: "foreign", reason: `${not}: it runs as ${who}` };
  }
  if (facts.exe === undefined) {
    return {
      verdict: "foreign",
      reason: `${not}: its executable cannot be read`,
    };
  }
  if (!isHsyncdExecutable(facts.exe, self.exe)) {
    return {
      verdict: "foreign",
      reason: `${not}: its executable "${facts.exe}" is not hsyncd`,
    };
  }
  if (!named) {
    return {
      verdict: "foreign",
      reason: `${not}: its command line does not name hsyncd`,
    };
  }
  return { verdict: "hsyncd" };
}

/**
 * Reads the pidfile and tells whether it names a running hsyncd of this
 * user. Trusted only when HSYNC_DIR belongs to this user (or root) and others
 * cannot write it, and the pidfile is a regular file (not a symlink) of this
 * user that group and others cannot write; then the process must pass
 * {@linkcode identifyProcess}.
 */
export async function checkPidfile(
  path: string,
  probe: ProcessProbe = systemProbe,
): Promise<PidfileState> {
  try {
    await Deno.lstat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return { state: "absent" };
    throw error;
  }
  const self = await probe.self();
  if (self.uid === undefined) {
    return {
      state: "untrusted",
      reason: "cannot be checked: this user's uid cannot be read",
    };
  }
  const dirProblem = await pidfileDirProblem(dirname(path), self.uid);
  if (dirProblem !== undefined) {
    return { state: "untrusted", reason: dirProblem };
  }
  const read = await readPidfileText(path);
  if (read.kind === "absent") return { state: "absent" };
  if (read.kind === "refused") {
    return { state: "untrusted", reason: read.reason };
  }
  const fileProblem = pidfileProblem(read.stat, self.uid);
  if (fileProblem !== undefined) {
    return { state: "untrusted", reason: fileProblem };
  }
  // Facts another user could have written (restart runs their arguments) are not read.
  const facts = await readPidfileText(factsPath(path));
  const factsText = facts.kind === "text" &&
      pidfileProblem(facts.stat, self.uid) === undefined
    ? facts.text
    : undefined;
  const info = parsePidfile(read.text, factsText);
  if (info === undefined) {
    return { state: "stale", reason: "it is not an hsyncd pidfile" };
  }
  const verdict = await identifyProcess(info, self, probe);
  if (verdict.verdict === "hsyncd") return { state: "running", info };
  if (verdict.verdict === "gone") {
    return { state: "stale", info, reason: verdict.reason };
  }
  return { state: "untrusted", info, reason: verdict.reason };
}
