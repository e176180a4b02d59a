/** Test fixture: runs the real hsyncd and hsync from source under their deno.json permission sets. */
import { join } from "node:path";
import { fileURLToPath as fromFileUrl } from "node:url";
import { RUNTIME_FLAGS } from "../scripts/compile.ts";

/** Repository root (where deno.json is). */
export const ROOT = fromFileUrl(new URL("..", import.meta.url));
const SERVER = fromFileUrl(new URL("../main_server.ts", import.meta.url));
const CLIENT = fromFileUrl(new URL("../main_client.ts", import.meta.url));

/** The argv prefix that runs hsyncd exactly as `deno task serve` does. */
export function serverArgv(): string[] {
  return ["run", "-q", "-P=hsyncd", ...RUNTIME_FLAGS.hsyncd, SERVER];
}

/** The argv prefix that runs hsync exactly as `deno task pull` does. */
export function clientArgv(): string[] {
  return ["run", "-q", "-P=hsync", ...RUNTIME_FLAGS.hsync, CLIENT];
}

/**
 * Runs the module `file` with `args` in a process of its own under hsync's
 * permission set (for what that process loads) and returns what it printed,
 * parsed as JSON; throws when it fails.
 */
export async function jsonOfChild(
  file: string,
  args: string[],
): Promise<unknown> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-q",
      "-P=hsync",
      "--config",
      join(ROOT, "deno.json"),
      file,
      ...args,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error(`${file} failed (exit ${out.code})`);
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

/** A free TCP port on 127.0.0.1 (bound then released). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Output of one finished program run. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs hsync to completion with the given arguments and environment. */
export async function runClient(
  args: string[],
  env: Record<string, string> = {},
  wrap: string[] = [],
): Promise<RunResult> {
  const [program, ...before] = [...wrap, Deno.execPath()];
  const out = await new Deno.Command(program, {
    args: [...before, ...clientArgv(), ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
  };
}

/** A running hsyncd, stopped by `await using` or `stop()`. */
export interface RunningServer extends AsyncDisposable {
  port: number;
  url: string;
  hsyncDir: string;
  process: Deno.ChildProcess;
  /** SIGTERM, then wait for exit; returns the exit code. */
  stop(): Promise<number>;
  /** Everything hsyncd wrote to stderr so far (after stop: all of it). */
  stderr(): string;
}

/** Options of {@linkcode startServer}. */
export interface StartServerOptions {
  /** Text of the `-c` configuration file. */
  config: string;
  /** Directory for HSYNC_DIR, config file and logs (must exist). */
  dir: string;
  /** Extra command-line arguments. */
  args?: string[];
  port?: number;
  /** A command the server runs under, e.g. `setpriv ...` (its arguments before the program's). */
  wrap?: string[];
}

/** Starts hsyncd in the foreground on 127.0.0.1 and waits until `/v1/health` answers. */
export async function startServer(
  options: StartServerOptions,
): Promise<RunningServer> {
  const port = options.port ?? freePort();
  const hsyncDir = `${options.dir}/hsync-dir`;
  await Deno.mkdir(hsyncDir, { recursive: true });
  const configFile = `${options.dir}/server.ini`;
  await Deno.writeTextFile(configFile, options.config);
  const [program, ...before] = [...(options.wrap ?? []), Deno.execPath()];
  const process = new Deno.Command(program, {
    args: [
      ...before,
      ...serverArgv(),
      "-host",
      "127.0.0.1",
      "-p",
      String(port),
      "-c",
      configFile,
      ...(options.args ?? []),
    ],
    cwd: ROOT,
    env: { HSYNC_DIR: hsyncDir, NO_COLOR: "1" },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let errText = "";
  const dec = new TextDecoder();
  const drained = (async () => {
    for await (const chunk of process.stderr) errText += dec.decode(chunk);
  })();
  const url = `http://127.0.0.1:${port}`;
  let exited: number | undefined;
  process.status.then((s) => exited = s.code);
  const deadline = Date.now() + 20_000;
  while (true) {
    if (exited !== undefined) {
      await drained;
      throw new Error(`hsyncd exited with ${exited}: ${errText}`);
    }
    try {
      const r = await fetch(`${url}/v1/health`);
      await r.body?.cancel();
      // Any answer means it listens (401: it wants a signature).
      if (r.ok || r.status === 401) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      process.kill("SIGKILL");
      await process.status;
      throw new Error(`hsyncd did not answer within 20 s: ${errText}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  let stopped: Promise<number> | undefined;
  const stop = () => {
    stopped ??= (async () => {
      if (exited === undefined) {
        try {
          process.kill("SIGTERM");
        } catch {
          // already gone
        }
      }
      const timer = setTimeout(() => {
        try {
          process.kill("SIGKILL");
        } catch {
          // already gone
        }
      }, 10_000);
      const status = await process.status;
      clearTimeout(timer);
      await drained;
      return status.code;
    })();
    return stopped;
  };
  return {
    port,
    url,
    hsyncDir,
    process,
    stop,
    stderr: () => errText,
    [Symbol.asyncDispose]: async () => {
      await stop();
    },
  };
}

/** A temporary directory removed by `await using`. */
export async function tempDir(
  prefix = "hsync-test-",
): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix });
  return {
    path,
    [Symbol.asyncDispose]: async () => {
      await Deno.remove(path, { recursive: true }).catch(() => {});
    },
  };
}

/** Whether anything (a link included, never followed) is at `path`. */
export function existsSync(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** A tree for runs that must overlap: one file big enough to take a while (24 MiB), and 150 small ones in `sub/`. */
export async function busyTree(root: string): Promise<void> {
  await Deno.mkdir(join(root, "sub"), { recursive: true });
  const big = new Uint8Array(24 * 1024 * 1024);
  for (let i = 0; i < big.length; i += 4096) big[i] = (i / 4096) & 0xff;
  await Deno.writeFile(join(root, "big.bin"), big);
  for (let i = 0; i < 150; i++) {
    await Deno.writeTextFile(join(root, "sub", `f${i}.txt`), `file ${i}\n`);
  }
}

/** Names hsync and hsyncd keep for themselves (part files, journals, a pending rename, the lock) found in a snapshot: none may stay behind. */
export function hsyncLeftovers(tree: Map<string, unknown>): string[] {
  return [...tree.keys()].filter((p) =>
    /\.hsync-(part|journal|new-)|(^|\/)\.hsync-lock$/.test(p)
  );
}

/** Every file and directory below `root` with its type and bytes (files) for tree comparisons. */
export async function snapshotTree(
  root: string,
): Promise<Map<string, string | Uint8Array>> {
  const out = new Map<string, string | Uint8Array>();
  async function walk(dir: string, rel: string) {
    for await (const e of Deno.readDir(dir)) {
      const r = rel === "" ? e.name : `${rel}/${e.name}`;
      const full = `${dir}/${e.name}`;
      if (e.isDirectory) {
        out.set(r, "dir");
        await walk(full, r);
      } else if (e.isFile) {
        out.set(r, await Deno.readFile(full));
      } else {
        out.set(r, e.isSymlink ? "symlink" : "other");
      }
    }
  }
  await walk(root, "");
  return out;
}

/** A long-running hsync (for example `--sync`), stopped by `await using` or `stop()`. */
export interface RunningClient extends AsyncDisposable {
  process: Deno.ChildProcess;
  /** Everything hsync wrote to stderr so far. */
  stderr(): string;
  /** Resolves when the process ends by itself (or is stopped). */
  exited: Promise<RunResult>;
  /** Sends `signal` (default SIGTERM), waits for the exit (SIGKILL after 15 s) and returns the result. */
  stop(signal?: Deno.Signal): Promise<RunResult>;
}

/** Starts hsync with the given arguments and environment, without waiting for it to finish. */
export function spawnClient(
  args: string[],
  env: Record<string, string> = {},
): RunningClient {
  const process = new Deno.Command(Deno.execPath(), {
    args: [...clientArgv(), ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let out = "";
  let err = "";
  const dec = () => new TextDecoder();
  const drain = async (
    stream: ReadableStream<Uint8Array>,
    add: (s: string) => void,
  ) => {
    const d = dec();
    for await (const chunk of stream) add(d.decode(chunk, { stream: true }));
  };
  const exited = (async () => {
    const [status] = await Promise.all([
      process.status,
      drain(process.stdout, (s) => out += s),
      drain(process.stderr, (s) => err += s),
    ]);
    return { code: status.code, stdout: out, stderr: err };
  })();
  let done = false;
  exited.then(() => done = true);
  const stop = async (signal: Deno.Signal = "SIGTERM") => {
    if (!done) {
      try {
        process.kill(signal);
      } catch {
        // already gone
      }
    }
    const timer = setTimeout(() => {
      try {
        process.kill("SIGKILL");
      } catch {
        // already gone
      }
    }, 15_000);
    const result = await exited;
    clearTimeout(timer);
    return result;
  };
  return {
    process,
    stderr: () => err,
    exited,
    stop,
    [Symbol.asyncDispose]: async () => {
      await stop();
    },
  };
}

/** Polls `check` until it returns true; throws with `what` (and the last error) after `timeoutMs`. */
export async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (true) {
    try {
      if (await check()) return;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `Timed out after ${timeoutMs} ms waiting for ${what}${
          last === undefined ? "" : `: ${last}`
        }`,
      );
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Counts calls of `FsFile.statSync` while `run` runs (each costs Deno six readlinks of the file's path under a permission set). */
export async function handleStats(run: () => Promise<void>): Promise<number> {
  const proto = Deno.FsFile.prototype;
  const original = proto.statSync;
  let calls = 0;
  proto.statSync = function (this: Deno.FsFile) {
    calls++;
    return original.call(this);
  };
  try {
    await run();
  } finally {
    proto.statSync = original;
  }
  return calls;
}

/** Unix sockets process `pid` holds open: its descriptors' socket inodes found in /proc/net/unix. */
export async function unixSocketsOf(pid: number): Promise<number> {
  const out = await new Deno.Command("ls", {
    args: ["-l", `/proc/${pid}/fd`],
    stdout: "piped",
    stderr: "null",
  }).output();
  const held = new Set(
    [...new TextDecoder().decode(out.stdout).matchAll(/socket:\[(\d+)\]/g)]
      .map((m) => m[1]),
  );
  // Deno reads /proc/net only with every permission: cat reads it.
  const table = await new Deno.Command("cat", {
    args: ["/proc/net/unix"],
    stdout: "piped",
  }).output();
  const unix = new TextDecoder().decode(table.stdout).split("\n").slice(1)
    .map((line) => line.trim().split(/\s+/)[6]);
  return unix.filter((inode) => inode !== undefined && held.has(inode)).length;
}
