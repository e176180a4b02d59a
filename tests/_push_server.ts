/**
 * Test fixture: a loopback server that implements the push protocol
 * (the README's table of write endpoints) over a real directory, with the read
 * endpoints a push uses (stat, list, hash), counters of what arrived, and
 * hooks to make any request fail the way a real server or network would.
 */
import { createHash } from "node:crypto";
import { dirname, join, normalize } from "node:path";
import { setLinkMtimeMs } from "../lib/shared/fd_times.ts";
import { RangeSet } from "../lib/shared/range_set.ts";
import type {
  DirRequest,
  DirResult,
  ListEntry,
  StatEntry,
  UploadBundleResult,
} from "../lib/shared/wire.ts";

/** What the fake server holds of one upload in progress. */
export interface FakeUpload {
  size: number;
  source: string;
  held: RangeSet;
  session: string;
}

/** One PUT as it arrived. */
export interface PutRecord {
  path: string;
  start: number;
  end: number;
  restart: boolean;
  /** Bytes of its body that arrived. */
  received: number;
  /** Bytes of it written to the part file. */
  kept: number;
  /** The SHA-256 it declared (only a signed request does), checked against the whole body. */
  declared: string | null;
  status: number;
}

/** A hook's answer: a response to send instead, or undefined to go on normally. */
type Hook = (
  url: URL,
  request: Request,
) => Response | undefined | Promise<Response | undefined>;

/** Options of {@linkcode pushServer}. */
export interface PushServerOptions {
  /** Writes are accepted only below this directory (403 `not_writable` elsewhere). */
  writable: string;
  /** No writes at all (403 `read_only`). */
  readOnly?: boolean;
  /** Called first for every request; a response it returns is sent as is. */
  hook?: Hook;
  /** For a PUT: bytes of the body to keep before answering `cutStatus` (the rest is dropped, the prefix recorded). */
  cutPut?: (put: PutRecord, count: number) => number | undefined;
  /** Status answered after a cut PUT (default 500). */
  cutStatus?: number;
  /** For a commit: answer 422 `verify_failed` (and drop the part) when this returns true. */
  failVerify?: (path: string, count: number) => boolean;
  /** Bits a file's mode loses unless `preserve` is asked (as hsyncd's umask; default 0o022). */
  umask?: number;
}

/** A running fake server. */
export interface PushServer extends AsyncDisposable {
  baseUrl: string;
  port: number;
  uploads: Map<string, FakeUpload>;
  puts: PutRecord[];
  /** Every request as `METHOD /path?query`. */
  log: string[];
  /** The most PUTs being answered at one time. */
  mostPutsAtOnce(): number;
  /** The client's port of each request in `log` (one per connection). */
  ports: number[];
  /** Bytes of PUT bodies that arrived. */
  bytesPut(): number;
  /** Files that arrived through bundles. */
  bundled: string[];
  /** Files in each bundle request, in order of arrival. */
  bundleSizes: number[];
  /** Every commit request body, in order. */
  commits: Array<{ path: string; holes?: Array<[number, number]> }>;
  /** The requests that would change something (every method but GET and HEAD; a destination's lease changes no file), as in `log`. */
  writes(): string[];
  /** Paths `POST /v1/delete` removed, in order. */
  deleted: string[];
}

function error(status: number, code: string, message: string): Response {
  return Response.json({ error: code, message }, { status });
}

function statOf(info: Deno.FileInfo): StatEntry {
  return {
    type: info.isDirectory ? "dir" : info.isSymlink ? "symlink" : "file",
    size: info.isDirectory ? 0 : info.size,
    mtime: Math.floor(info.mtime?.getTime() ?? 0),
    mode: (info.mode ?? 0) & 0o7777,
    etag: `"${info.ino}-${info.size}-${info.mtime?.getTime()}"`,
  };
}

function inside(root: string, path: string): boolean {
  return path === root || path.startsWith(root + "/");
}

/** Starts the fake server on an ephemeral loopback port. */
export function pushServer(options: PushServerOptions): PushServer {
  const uploads = new Map<string, FakeUpload>();
  const puts: PutRecord[] = [];
  let putsNow = 0;
  let mostPuts = 0;
  const log: string[] = [];
  const ports: number[] = [];
  const bundled: string[] = [];
  const bundleSizes: number[] = [];
  const commitLog: PushServer["commits"] = [];
  const deleted: string[] = [];
  let commits = 0;
  const keep = (preserve: boolean | undefined) =>
    preserve ? 0o777 : 0o777 & ~(options.umask ?? 0o022);

  const writable = (path: string): Response | undefined => {
    if (options.readOnly) {
      return error(
        403,
        "read_only",
        `Cannot write "${path}": this server accepts no writes (no Writable_path)`,
      );
    }
    if (!inside(options.writable, path)) {
      return error(
        403,
        "not_writable",
        `Cannot write "${path}": it is not below a Writable_path`,
      );
    }
    return undefined;
  };

  async function list(root: string, links: boolean): Promise<string> {
    const lines: string[] = [];
    async function walk(dir: string, rel: string) {
      const names = [];
      for await (const e of Deno.readDir(dir)) names.push(e.name);
      names.sort();
      const subdirs: string[] = [];
      for (const name of names) {
        if (name.endsWith(".hsync-part")) continue;
        let info = await Deno.lstat(join(dir, name));
        const r = rel === "" ? name : `${rel}/${name}`;
        if (info.isSymlink && !links) {
          // As hsyncd: a link is listed as what it leads to (not descended here).
          try {
            info = await Deno.stat(join(dir, name));
          } catch {
            continue;
          }
          lines.push(JSON.stringify({ path: r, ...statOf(info) }));
          continue;
        }
        const entry: ListEntry = { path: r, ...statOf(info) };
        if (info.isSymlink) entry.target = await Deno.readLink(join(dir, name));
        lines.push(JSON.stringify(entry));
        if (info.isDirectory) subdirs.push(name);
      }
      for (const name of subdirs) {
        await walk(join(dir, name), rel === "" ? name : `${rel}/${name}`);
      }
    }
    await walk(root, "");
    return lines.map((l) => l + "\n").join("");
  }

  async function put(url: URL, request: Request): Promise<Response> {
    const path = url.searchParams.get("path") ?? "";
    const size = Number(url.searchParams.get("size"));
    const source = url.searchParams.get("source") ?? "";
    const restart = url.searchParams.get("restart") === "1";
    const session = request.headers.get("x-hsync-upload-session") ?? "";
    const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(
      request.headers.get("content-range") ?? "",
    );
    const body = new Uint8Array(await request.arrayBuffer());
    const record: PutRecord = {
      path,
      start: m ? Number(m[1]) : -1,
      end: m ? Number(m[2]) + 1 : -1,
      restart,
      received: body.length,
      kept: 0,
      declared: request.headers.get("x-hsync-content-sha256"),
      status: 200,
    };
    const index = puts.push(record);
    const answer = (r: Response) => {
      record.status = r.status;
      return r;
    };
    const refused = writable(path);
    if (refused) return answer(refused);
    if (m === null || Number(m[3]) !== size) {
      return answer(error(400, "bad_range", "Bad Content-Range"));
    }
    // With parents=1 a missing directory is made first, as hsyncd makes it.
    if (url.searchParams.get("parents") === "1") {
      await Deno.mkdir(dirname(path), { recursive: true }).catch(() => {});
    }
    try {
      if (!(await Deno.stat(dirname(path))).isDirectory) throw new Error();
    } catch {
      return answer(error(404, "not_found", `No directory for "${path}"`));
    }
    let upload = uploads.get(path);
    if (upload !== undefined && upload.session !== session) {
      // Sessions are told apart only through the hook in these tests.
      upload.session = session;
    }
    if (
      upload !== undefined &&
      (upload.size !== size || upload.source !== source)
    ) {
      if (!restart) {
        return answer(
          error(409, "source_changed", `"${path}" is held for another source`),
        );
      }
      upload = undefined;
      try {
        Deno.removeSync(path + ".hsync-part");
      } catch {
        // None yet.
      }
    }
    if (upload === undefined) {
      upload = { size, source, held: new RangeSet(), session };
      uploads.set(path, upload);
      // At once: a PUT arriving meanwhile finds the upload, so its part too.
      Deno.writeFileSync(path + ".hsync-part", new Uint8Array(0));
    }
    const start = record.start;
    const cut = options.cutPut?.(record, index);
    const keep = cut === undefined ? body.length : Math.min(cut, body.length);
    // Like hsyncd under Authorized_keys: a declared digest must be the body's.
    const declared = record.declared;
    if (
      cut === undefined && declared !== null &&
      createHash("sha256").update(body).digest("hex") !== declared
    ) {
      return answer(error(401, "unauthorized", "Authentication required"));
    }
    if (cut === undefined && body.length !== record.end - start) {
      return answer(error(400, "bad_range", "Short body"));
    }
    const file = await Deno.open(path + ".hsync-part", { write: true });
    try {
      await file.seek(start, Deno.SeekMode.Start);
      let at = 0;
      while (at < keep) at += await file.write(body.subarray(at, keep));
    } finally {
      file.close();
    }
    record.kept = keep;
    upload.held.add({ start, end: start + keep });
    if (cut !== undefined) {
      return answer(
        error(options.cutStatus ?? 500, "cut", "The body was cut short"),
      );
    }
    // With commit=1, the range that completes the upload commits it.
    if (
      url.searchParams.get("commit") === "1" && upload.held.isComplete(size)
    ) {
      const committed = await commitUpload(path, {
        size,
        source,
        mtime: Number(url.searchParams.get("mtime")),
        mode: Number(url.searchParams.get("mode")),
        preserve: url.searchParams.get("preserve") === "1",
      });
      if (!committed.ok) return answer(committed);
      return answer(
        Response.json({
          ...statusOf(upload),
          committed: await committed.json(),
        }),
      );
    }
    return answer(Response.json(statusOf(upload)));
  }

  function statusOf(upload: FakeUpload) {
    return {
      size: upload.size,
      source: upload.source,
      held: upload.held.toArray().map((r) => [r.start, r.end]),
    };
  }

  function commit(url: URL, request: Request): Promise<Response> {
    return request.json().then((req) =>
      commitUpload(url.searchParams.get("path") ?? "", req)
    );
  }

  /** A commit, asked by `POST /v1/upload/commit` or by the PUT that completed the upload. */
  async function commitUpload(
    path: string,
    // deno-lint-ignore no-explicit-any
    req: any,
  ): Promise<Response> {
    commitLog.push({ path, ...(req.holes ? { holes: req.holes } : {}) });
    const refused = writable(path);
    if (refused) return refused;
    const upload = uploads.get(path);
    // Holes count as held (never sent: they stay holes).
    const held = new RangeSet([
      ...(upload?.held.toArray() ?? []),
      ...(req.holes ?? []).map(([start, end]: [number, number]) => ({
        start,
        end,
      })),
    ]);
    if (req.size === 0) {
      await Deno.writeFile(path + ".hsync-part", new Uint8Array(0));
    } else if (
      upload === undefined || upload.source !== req.source ||
      upload.size !== req.size || !held.isComplete(req.size)
    ) {
      return error(409, "incomplete", `"${path}" is not complete`);
    }
    await Deno.truncate(path + ".hsync-part", req.size);
    commits++;
    // Read only to verify: a sparse test file is 1 GiB.
    let sha256: string | undefined;
    if (req.sha256 !== undefined) {
      const data = await Deno.readFile(path + ".hsync-part");
      sha256 = createHash("sha256").update(data).digest("hex");
    }
    if (
      options.failVerify?.(path, commits) ||
      (req.sha256 !== undefined && req.sha256 !== sha256)
    ) {
      uploads.delete(path);
      await Deno.remove(path + ".hsync-part");
      return error(422, "verify_failed", `SHA-256 of "${path}" differs`);
    }
    await Deno.chmod(path + ".hsync-part", req.mode & keep(req.preserve));
    await Deno.utime(path + ".hsync-part", new Date(), new Date(req.mtime));
    await Deno.rename(path + ".hsync-part", path);
    uploads.delete(path);
    const info = await Deno.lstat(path);
    return Response.json({
      ...statOf(info),
      ...(req.sha256 === undefined ? {} : { sha256 }),
    });
  }

  async function bundle(url: URL, request: Request): Promise<Response> {
    const root = url.searchParams.get("root") ?? "";
    const refused = writable(root);
    if (refused) return refused;
    const body = new Uint8Array(await request.arrayBuffer());
    if (body.length > 8 * 1024 * 1024) {
      return error(413, "too_large", "Body too large");
    }
    const view = new DataView(body.buffer);
    const results: UploadBundleResult[] = [];
    let at = 0;
    // Counted as the request's own: bundles are answered concurrently.
    const count = bundleSizes.push(0) - 1;
    while (true) {
      const n = view.getUint32(at);
      const header = JSON.parse(
        new TextDecoder().decode(body.subarray(at + 4, at + 4 + n)),
      );
      at += 4 + n;
      if (header.end) break;
      const data = body.subarray(at, at + header.size);
      at += header.size;
      const path = join(root, header.path);
      bundled.push(header.path);
      bundleSizes[count]++;
      if (header.path.includes("refuse-me")) {
        results.push({
          path: header.path,
          error: "refused",
          message: `Cannot write "${path}": the rules refuse it`,
        });
        continue;
      }
      if (url.searchParams.get("parents") === "1") {
        try {
          await Deno.mkdir(dirname(path), { recursive: true });
        } catch {
          results.push({
            path: header.path,
            error: "not_a_directory",
            message: `Cannot create directory "${dirname(path)}"`,
          });
          continue;
        }
      }
      await Deno.writeFile(path + ".hsync-part", data);
      await Deno.chmod(
        path + ".hsync-part",
        header.mode & keep(header.preserve),
      );
      await Deno.utime(
        path + ".hsync-part",
        new Date(),
        new Date(header.mtime),
      );
      await Deno.rename(path + ".hsync-part", path);
      results.push({ path: header.path, ...statOf(await Deno.lstat(path)) });
    }
    return Response.json(results);
  }

  /** The array form: every directory made, then each given its time and mode. */
  async function mkdirMany(request: Request): Promise<Response> {
    const dirs = await request.json() as DirRequest[];
    const made: Array<string | undefined> = [];
    for (const d of dirs) {
      const refused = writable(d.path);
      if (refused) {
        made.push(((await refused.json()) as { message: string }).message);
        continue;
      }
      try {
        await Deno.mkdir(d.path, { recursive: true });
        made.push(undefined);
      } catch {
        made.push(`"${d.path}" is not a directory`);
      }
    }
    const results: DirResult[] = [];
    for (const [i, d] of dirs.entries()) {
      const refused = made[i];
      if (refused !== undefined) {
        results.push({ path: d.path, error: "refused", message: refused });
        continue;
      }
      if (d.mode !== undefined) {
        const own = (await Deno.stat(d.path)).mode! & 0o777;
        await Deno.chmod(d.path, d.narrow ? own & d.mode : d.mode);
      }
      if (d.mtime !== undefined) {
        await Deno.utime(d.path, new Date(), new Date(d.mtime));
      }
      results.push({ path: d.path, ...statOf(await Deno.lstat(d.path)) });
    }
    return Response.json(results);
  }

  async function mkdir(url: URL, request: Request): Promise<Response> {
    if (!url.searchParams.has("path")) return await mkdirMany(request);
    const path = url.searchParams.get("path") ?? "";
    const refused = writable(path);
    if (refused) return refused;
    try {
      await Deno.mkdir(path, { recursive: true });
    } catch {
      return error(409, "not_regular", `"${path}" is not a directory`);
    }
    const mode = url.searchParams.get("mode");
    if (mode !== null) await Deno.chmod(path, Number(mode));
    const mtime = url.searchParams.get("mtime");
    if (mtime !== null) {
      await Deno.utime(path, new Date(), new Date(Number(mtime)));
    }
    return Response.json(statOf(await Deno.lstat(path)));
  }

  /** Where a new entry may go: a file or link there is replaced, a directory is not. */
  async function clear(path: string): Promise<Response | undefined> {
    try {
      if ((await Deno.lstat(path)).isDirectory) {
        return error(409, "is_directory", `"${path}" is a directory`);
      }
      await Deno.remove(path);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    return undefined;
  }

  async function symlink(url: URL, request: Request): Promise<Response> {
    const path = url.searchParams.get("path") ?? "";
    const { target, mtime } = await request.json();
    const refused = writable(path);
    if (refused) return refused;
    const root = options.writable;
    if (
      typeof target !== "string" || target.startsWith("/") ||
      !inside(root, normalize(join(dirname(path), target)))
    ) {
      return error(
        403,
        "unsafe_link",
        `Cannot make "${path}": its target leads outside the Writable_path`,
      );
    }
    const busy = await clear(path);
    if (busy) return busy;
    await Deno.symlink(target, path);
    if (typeof mtime === "number") setLinkMtimeMs(path, mtime);
    return Response.json(statOf(await Deno.lstat(path)));
  }

  async function link(url: URL, request: Request): Promise<Response> {
    const path = url.searchParams.get("path") ?? "";
    const { existing } = await request.json();
    const refused = writable(path) ?? writable(existing);
    if (refused) return refused;
    if (!(await Deno.lstat(existing)).isFile) {
      return error(409, "not_regular", `"${existing}" is not a file`);
    }
    const busy = await clear(path);
    if (busy) return busy;
    await Deno.link(existing, path);
    return Response.json(statOf(await Deno.lstat(path)));
  }

  /** `POST /v1/delete`: a file, a link (itself) or an empty directory (409 `not_empty` else), as lib/shared/wire.ts says. */
  async function remove(url: URL): Promise<Response> {
    const path = url.searchParams.get("path") ?? "";
    const refused = writable(path);
    if (refused) return refused;
    if (path === options.writable) {
      return error(403, "not_writable", `Cannot delete "${path}": a root`);
    }
    const info = await Deno.lstat(path);
    try {
      await Deno.remove(path);
    } catch (e) {
      if (info.isDirectory && !(e instanceof Deno.errors.NotFound)) {
        return error(409, "not_empty", `"${path}" is not empty`);
      }
      throw e;
    }
    deleted.push(path);
    return Response.json({
      path,
      type: info.isDirectory ? "dir" : info.isSymlink ? "symlink" : "file",
    });
  }

  async function handle(
    request: Request,
    info: Deno.ServeHandlerInfo<Deno.NetAddr>,
  ): Promise<Response> {
    const url = new URL(request.url);
    log.push(`${request.method} ${url.pathname}${url.search}`);
    ports.push(info.remoteAddr.port);
    const hooked = await options.hook?.(url, request);
    if (hooked !== undefined) return hooked;
    const path = url.searchParams.get("path") ?? "";
    const route = `${request.method} ${url.pathname}`;
    try {
      switch (route) {
        case "GET /v1/stat":
          return Response.json(statOf(await Deno.stat(path)));
        case "GET /v1/list":
          return new Response(
            await list(path, url.searchParams.get("links") === "1"),
          );
        case "GET /v1/hash": {
          const data = await Deno.readFile(path);
          const offset = Number(url.searchParams.get("offset") ?? 0);
          const length = Number(
            url.searchParams.get("length") ?? data.length - offset,
          );
          return Response.json({
            sha256: createHash("sha256").update(
              data.subarray(offset, offset + length),
            ).digest("hex"),
            offset,
            length,
            etag: statOf(await Deno.lstat(path)).etag,
          });
        }
        case "GET /v1/upload": {
          const upload = uploads.get(path);
          if (upload === undefined) {
            return error(404, "not_found", "Nothing held");
          }
          return Response.json(statusOf(upload));
        }
        case "PUT /v1/upload":
          putsNow++;
          mostPuts = Math.max(mostPuts, putsNow);
          try {
            return await put(url, request);
          } finally {
            putsNow--;
          }
        case "POST /v1/upload/commit":
          return await commit(url, request);
        case "POST /v1/upload/bundle":
          return await bundle(url, request);
        case "POST /v1/mkdir":
          return await mkdir(url, request);
        case "POST /v1/symlink":
          return await symlink(url, request);
        case "POST /v1/link":
          return await link(url, request);
        case "POST /v1/delete":
          return await remove(url);
      }
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        return error(404, "not_found", `"${path}" does not exist`);
      }
      return error(500, "internal", String(e));
    }
    return error(404, "not_found", `No endpoint ${route}`);
  }

  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    handle,
  );
  return {
    baseUrl: `http://127.0.0.1:${server.addr.port}`,
    port: server.addr.port,
    uploads,
    puts,
    log,
    ports,
    bundled,
    bundleSizes,
    commits: commitLog,
    deleted,
    writes: () => log.filter((l) => !/^(GET|HEAD) |^POST \/v1\/lock\?/.test(l)),
    bytesPut: () => puts.reduce((n, p) => n + p.received, 0),
    mostPutsAtOnce: () => mostPuts,
    async [Symbol.asyncDispose]() {
      await server.shutdown();
    },
  };
}
