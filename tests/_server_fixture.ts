/** The served tree and the in-process handler shared by the tests of lib/server/ endpoints (tests/server_*_test.ts). */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import defaults from "../hsync.ini" with { type: "text" };
import {
  loadConfig,
  type Overrides,
  serverSettings,
} from "../lib/shared/config.ts";
import {
  type AccessLogEntry,
  createHandler,
  type Handler,
  type HandlerOptions,
} from "../lib/server/handler.ts";
import type { ErrorBody } from "../lib/shared/wire.ts";

/** Bytes only refused files hold: no answer may ever contain them. */
export const SECRET = "TOP-SECRET-BYTES";
/** A file name that is not ASCII. */
export const NON_ASCII = "naïve 日本.txt";

/** A served tree with refused files, links out and in, a loop and a FIFO, behind a handler. */
export interface Fixture {
  tmp: string;
  root: string;
  hsyncDir: string;
  keyFile: string;
  big: Uint8Array;
  handler: Handler;
  logs: AccessLogEntry[];
  /** Calls the handler like Deno.serve would, from 127.0.0.1 unless told otherwise. */
  call(path: string, init?: RequestInit, remote?: string): Promise<Response>;
  /** Absolute path of a fixture entry, percent-encoded for a query. */
  q(rel: string): string;
  remove(): Promise<void>;
}

/** What Deno.serve hands a handler, for a peer at `hostname`; the request completes at once. */
export function fakeInfo(
  hostname: string,
): Deno.ServeHandlerInfo<Deno.NetAddr> {
  return {
    remoteAddr: { transport: "tcp", hostname, port: 1234 },
    completed: Promise.resolve(),
  };
}

/** The built-in settings with `overrides`, no configuration file read. */
export async function settingsFor(hsyncDir: string, overrides: Overrides) {
  const config = await loadConfig({
    defaults,
    hsyncDir,
    readTextFile: () => Promise.reject(new Deno.errors.NotFound("none")),
  });
  return serverSettings(config, overrides);
}

/**
 * hsyncd's handler in process for a push test, on loopback with no keys,
 * accepting pushes below `DIR/incoming` (made, with `DIR/hsync-dir`);
 * `limits` as in {@linkcode HandlerOptions}.
 */
export async function writableHandler(
  dir: string,
  limits?: HandlerOptions["limits"],
): Promise<{ handler: Handler; incoming: string }> {
  const incoming = join(dir, "incoming");
  const hsyncDir = join(dir, "hsync-dir");
  await Deno.mkdir(incoming);
  await Deno.mkdir(hsyncDir);
  const handler = await createHandler({
    settings: await settingsFor(hsyncDir, {
      Host_ip: "127.0.0.1",
      Writable_path: incoming,
    }),
    hsyncDir,
    hostname: "test-host",
    ...(limits === undefined ? {} : { limits }),
  });
  return { handler, incoming };
}

/** Builds a {@linkcode Fixture}; `overrides` are ini values, `extra` handler options. */
export async function makeFixture(
  overrides: Overrides = {},
  extra: Partial<HandlerOptions> = {},
): Promise<Fixture> {
  const tmp = await Deno.realPath(
    await Deno.makeTempDir({ prefix: "hsync_server_" }),
  );
  const root = join(tmp, "root");
  const hsyncDir = join(root, "state-dir");
  const keyFile = join(root, "server-private.bin");
  for (const dir of ["nested/deep", "emptydir", ".ssh", "state-dir"]) {
    await Deno.mkdir(join(root, dir), { recursive: true });
  }
  const big = new Uint8Array(300_000).map((_, i) => (i * 7 + (i >> 8)) & 255);
  await Deno.writeTextFile(join(root, "hello.txt"), "hello world");
  await Deno.writeFile(join(root, "empty.bin"), new Uint8Array(0));
  await Deno.writeFile(join(root, "big.bin"), big);
  await Deno.writeTextFile(join(root, "nested/deep/leaf.txt"), "leaf");
  await Deno.writeTextFile(join(root, "with space.txt"), "space");
  await Deno.writeTextFile(join(root, NON_ASCII), "unicode");
  await Deno.writeTextFile(join(root, "id_rsa"), SECRET);
  await Deno.writeTextFile(join(root, ".ssh/known_hosts"), SECRET);
  await Deno.writeTextFile(join(hsyncDir, "hsyncd.pid"), SECRET);
  await Deno.writeTextFile(keyFile, SECRET);
  await Deno.writeTextFile(join(tmp, "secret.txt"), SECRET);
  await Deno.symlink(join(tmp, "secret.txt"), join(root, "link_out"));
  await Deno.symlink(join(root, "nested"), join(root, "link_in_dir"));
  await Deno.symlink(".", join(root, "loop"));
  const fifo = await new Deno.Command("mkfifo", { args: [join(root, "fifo")] })
    .output();
  assert.equal(fifo.code, 0);

  // An override of "@root" stands for the served root (not known before).
  const resolved = Object.fromEntries(
    Object.entries(overrides).map(([k, v]) => [k, v === "@root" ? root : v]),
  );
  const settings = await settingsFor(hsyncDir, {
    Only_allowed_path: root,
    Key_file: keyFile,
    ...resolved,
  });
  const logs: AccessLogEntry[] = [];
  const handler = await createHandler({
    settings,
    hsyncDir,
    hostname: "test-host",
    log: (entry) => logs.push(entry),
    ...extra,
  });
  return {
    tmp,
    root,
    hsyncDir,
    keyFile,
    big,
    handler,
    logs,
    call: (path, init, remote = "127.0.0.1") =>
      handler(new Request(`http://localhost${path}`, init), fakeInfo(remote)),
    q: (rel) => encodeURIComponent(rel === "" ? root : join(root, rel)),
    remove: () => Deno.remove(tmp, { recursive: true }),
  };
}

/** Runs `fn` on a fresh fixture and removes it afterwards. */
export async function withFixture(
  fn: (f: Fixture) => Promise<void>,
  overrides?: Overrides,
  extra?: Partial<HandlerOptions>,
): Promise<void> {
  const f = await makeFixture(overrides, extra);
  try {
    await fn(f);
  } finally {
    await f.remove();
  }
}

/** Asserts a JSON error answer with `status` and `code`, without a secret or a stack trace; returns its body. */
export async function expectError(
  response: Response,
  status: number,
  code: string,
): Promise<ErrorBody> {
  const text = await response.text();
  assert.equal(response.status, status, text);
  assert.match(
    response.headers.get("content-type") ?? "",
    /^application\/json/,
  );
  const body = JSON.parse(text) as ErrorBody;
  assert.equal(body.error, code, text);
  assert.equal(typeof body.message, "string");
  assert.ok(!text.includes(SECRET));
  assert.ok(!text.includes("    at "), "no stack trace in a body");
  return body;
}

/** Hex SHA-256 of `bytes`. */
export function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}
