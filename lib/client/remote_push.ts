/** The client side of the v1 write endpoints (push): upload status, one range, commit, a bundle of small files, mkdir; each answer checked before it is believed. */
import { BODY_DIGEST_HEADER, linkTimeSettable } from "../shared/wire.ts";
import { type ByteRange, contentRange } from "../shared/byte_range.ts";
import { ProtocolError } from "../shared/errors.ts";
import { RangeSet } from "../shared/range_set.ts";
import {
  API,
  type CommitRequest,
  type CommitResult,
  type DeleteResult,
  type DirRequest,
  type DirResult,
  HEADER,
  type LinkRequest,
  type SourceId,
  type StatEntry,
  type SymlinkRequest,
  type UploadBundleResult,
  type UploadStatus,
} from "../shared/wire.ts";
import type { Exchange, Remote } from "./remote.ts";
import { newLeaseToken } from "../shared/lease_token.ts";

/** What the server holds of an upload, checked: its size, its source, and the ranges held. */
export interface HeldUpload {
  size: number;
  source: SourceId;
  held: RangeSet;
}

/** What a PUT of one range says about the upload it belongs to. */
export interface UploadTarget {
  size: number;
  source: SourceId;
  /** Drop what the server holds of another source first. */
  restart?: boolean;
  /** The file's time and mode: the range that completes the upload commits it with them. */
  commit?: { mtime: number; mode: number; preserve: boolean };
}

/** The answer to a PUT: what the server holds now, and the commit's result when this range completed an upload asked to commit. */
export interface PutAnswer extends HeldUpload {
  committed?: CommitResult;
}

/** The write endpoints of one server, for one session. */
export class PushRemote {
  readonly #remote: Remote;
  #session: string;
  /** This run of the push, on every request beside the session (`HEADER.pushRun`). */
  readonly run = newLeaseToken();
  #made = 0;
  readonly #failures = new Set<() => void>();

  /** Writes to `remote`, as session `session`. */
  constructor(remote: Remote, session: string) {
    this.#remote = remote;
    this.#session = session;
  }

  /**
   * The session the writes from now on go as: a push's is its lease's
   * token once it holds the lease, so that the same push run again after
   * a kill (which takes the lease back by its token) writes as the same
   * session, and hsyncd does not keep the paths the killed run wrote last
   * from it (for 10 s after a session's last request, another gets 409).
   */
  set session(session: string) {
    this.#session = session;
    this.#made = 0;
  }

  get session(): string {
    return this.#session;
  }

  /**
   * Requests made as the session set last (tries again included): what a
   * last request waits for with `after` (hsyncd counts those carrying the
   * session and {@linkcode run} as they complete).
   */
  get made(): number {
    return this.#made;
  }

  /** `GET /v1/upload`: what the server holds of an upload of `path`; undefined when nothing (404). */
  async status(
    path: string,
    signal?: AbortSignal,
  ): Promise<HeldUpload | undefined> {
    const ex = await this.#send(
      this.#remote.url(API.upload, { path }),
      { signal, headers: this.#headers(), accept: [404] },
    );
    if (ex.response.status === 404) {
      ex.done();
      await ex.response.body?.cancel().catch(() => {});
      return undefined;
    }
    return checkStatus(await this.#json(ex), this.#remote.host);
  }

  /**
   * `PUT /v1/upload`: bytes `range` of a file of `target.size` (whose
   * SHA-256 is `sha256` when requests are signed), `onSent` told the bytes
   * as they go out. Returns what the server holds after it.
   */
  async put(
    path: string,
    target: UploadTarget,
    range: ByteRange,
    upload: {
      sha256?: string;
      body: Uint8Array<ArrayBuffer>;
      onSent?: (bytes: number) => void;
      signal?: AbortSignal;
    },
  ): Promise<PutAnswer> {
    const query: Record<string, string> = {
      path,
      size: String(target.size),
      source: target.source,
    };
    if (target.restart) query.restart = "1";
    // A missing directory is made by the server first (a new tree's).
    query.parents = "1";
    if (target.commit !== undefined) {
      query.commit = "1";
      query.mtime = String(target.commit.mtime);
      query.mode = String(target.commit.mode);
      if (target.commit.preserve) query.preserve = "1";
    }
    const headers = this.#headers();
    headers.set("content-range", contentRange(range, target.size));
    headers.set("content-type", "application/octet-stream");
    if (upload.sha256 !== undefined) {
      headers.set(BODY_DIGEST_HEADER, upload.sha256);
    }
    const ex = await this.#send(this.#remote.url(API.upload, query), {
      method: "PUT",
      headers,
      body: upload.body,
      onBodySent: upload.onSent,
      signal: upload.signal,
    });
    const answer = await this.#json(ex) as PutAnswer | null;
    const held: PutAnswer = checkStatus(answer, this.#remote.host);
    if (answer?.committed !== undefined) {
      held.committed = checkCommitted(answer.committed, this.#remote.host);
    }
    return held;
  }

  /** `POST /v1/upload/commit`: the upload complete (and verified with `sha256`) takes its final name. */
  async commit(
    path: string,
    request: CommitRequest,
    signal?: AbortSignal,
  ): Promise<CommitResult> {
    const headers = this.#headers();
    headers.set("content-type", "application/json");
    const ex = await this.#send(
      this.#remote.url(API.commit, { path }),
      { method: "POST", headers, body: JSON.stringify(request), signal },
    );
    return checkCommitted(await this.#json(ex), this.#remote.host);
  }

  /** `POST /v1/upload/bundle?parents=1`: small files as frames below `root`, their missing directories made; one result per file, in order. */
  async bundle(
    root: string,
    frames: Uint8Array,
    signal?: AbortSignal,
  ): Promise<UploadBundleResult[]> {
    const headers = this.#headers();
    headers.set("content-type", "application/octet-stream");
    const ex = await this.#send(
      this.#remote.url(API.uploadBundle, { root, parents: "1" }),
      {
        method: "POST",
        headers,
        // encodeFrames allocates a plain ArrayBuffer.
        body: frames as Uint8Array<ArrayBuffer>,
        signal,
      },
    );
    const body = await this.#json(ex);
    if (
      !Array.isArray(body) ||
      !body.every((r) =>
        typeof r === "object" && r !== null && typeof r.path === "string"
      )
    ) {
      throw new ProtocolError(
        `Bundle answer from ${this.#remote.host} is malformed`,
      );
    }
    return body as UploadBundleResult[];
  }

  /** `POST /v1/mkdir`: makes `path` and its missing parents; with `mtime` (and `mode`), sets them on it. */
  async mkdir(
    path: string,
    options: { mtime?: number; mode?: number; signal?: AbortSignal } = {},
  ): Promise<StatEntry> {
    const query: Record<string, string> = { path };
    // Decimal, as every number in the query (`mode=493` is 0o755).
    if (options.mode !== undefined) query.mode = String(options.mode);
    if (options.mtime !== undefined) query.mtime = String(options.mtime);
    const ex = await this.#send(this.#remote.url(API.mkdir, query), {
      method: "POST",
      headers: this.#headers(),
      signal: options.signal,
    });
    const body = await this.#json(ex) as Partial<StatEntry> | null;
    if (body?.type !== "dir") {
      throw new ProtocolError(
        `Answer from ${this.#remote.host} to making directory ${
          JSON.stringify(path)
        } is not a directory`,
      );
    }
    return body as StatEntry;
  }

  /**
   * `POST /v1/mkdir` with an array: every directory made (with its
   * parents), then each given its time and mode; one result each, in
   * order. With `after`, hsyncd does it once that many requests of this
   * run have completed (409 `incomplete`, nothing done, when they do not).
   */
  async mkdirs(
    dirs: DirRequest[],
    signal?: AbortSignal,
    after?: number,
  ): Promise<DirResult[]> {
    const headers = this.#headers();
    headers.set("content-type", "application/json");
    const query: Record<string, string> = after === undefined
      ? {}
      : { after: String(after) };
    const ex = await this.#send(this.#remote.url(API.mkdir, query), {
      method: "POST",
      headers,
      body: JSON.stringify(dirs),
      signal,
    });
    const body = await this.#json(ex);
    if (
      !Array.isArray(body) || body.length !== dirs.length ||
      !body.every((r, i) =>
        typeof r === "object" && r !== null && r.path === dirs[i].path &&
        ("error" in r ? typeof r.message === "string" : r.type === "dir")
      )
    ) {
      throw new ProtocolError(
        `Answer from ${this.#remote.host} to making ${dirs.length} directories is malformed`,
      );
    }
    return body as DirResult[];
  }

  /** `POST /v1/symlink` (`-l`): makes `path` a symbolic link with the text `target` and its own time `mtime` (ms; one before 1970 is not sent, the link gets the server's now). */
  async symlink(
    path: string,
    target: string,
    mtime: number,
    signal?: AbortSignal,
  ): Promise<void> {
    const request: SymlinkRequest = linkTimeSettable(mtime)
      ? { target, mtime }
      : { target };
    await this.#postJson(API.symlink, path, request, signal);
  }

  /** `POST /v1/link` (`-H`): gives the file at `existing` (pushed in this run) the name `path` too. */
  async link(
    path: string,
    existing: string,
    signal?: AbortSignal,
  ): Promise<void> {
    const request: LinkRequest = { existing };
    await this.#postJson(API.link, path, request, signal);
  }

  /**
   * `POST /v1/delete` (`--delete`): removes the file, link (never followed)
   * or empty directory at `path`. False when it was not there (404); a
   * directory that holds entries is refused (409 `not_empty`, thrown).
   */
  async delete(path: string, signal?: AbortSignal): Promise<boolean> {
    const ex = await this.#send(
      this.#remote.url(API.delete, { path }),
      { method: "POST", headers: this.#headers(), signal, accept: [404] },
    );
    if (ex.response.status === 404) {
      ex.done();
      await ex.response.body?.cancel().catch(() => {});
      return false;
    }
    const body = await this.#json(ex) as Partial<DeleteResult> | null;
    if (typeof body?.path !== "string") {
      throw new ProtocolError(
        `Answer from ${this.#remote.host} to deleting ${
          JSON.stringify(path)
        } is malformed`,
      );
    }
    return true;
  }

  /** A JSON request about `path` whose answer must be a JSON object (the new entry). */
  async #postJson(
    endpoint: string,
    path: string,
    request: unknown,
    signal?: AbortSignal,
  ): Promise<void> {
    const headers = this.#headers();
    headers.set("content-type", "application/json");
    const ex = await this.#send(this.#remote.url(endpoint, { path }), {
      method: "POST",
      headers,
      body: JSON.stringify(request),
      signal,
    });
    const body = await this.#json(ex);
    if (typeof body !== "object" || body === null || Array.isArray(body)) {
      throw new ProtocolError(
        `Answer from ${this.#remote.host} to making ${
          JSON.stringify(path)
        } is malformed`,
      );
    }
  }

  /**
   * Calls `listener` each time a request fails from now on (no answer, or
   * one refused); the returned function stops it.
   */
  onFailure(listener: () => void): () => void {
    this.#failures.add(listener);
    return () => this.#failures.delete(listener);
  }

  /** `Remote.send`, telling the failure listeners when it throws. */
  async #send(
    url: URL,
    init: Parameters<Remote["send"]>[1],
  ): Promise<Exchange> {
    try {
      return await this.#remote.send(url, init);
    } catch (error) {
      for (const listener of this.#failures) listener();
      throw error;
    }
  }

  #headers(): Headers {
    this.#made++;
    return new Headers({
      [HEADER.uploadSession]: this.#session,
      [HEADER.pushRun]: this.run,
    });
  }

  async #json(ex: Exchange): Promise<unknown> {
    try {
      return await ex.response.json();
    } catch (error) {
      if (error instanceof SyntaxError) {
        throw new ProtocolError(
          `Answer from ${this.#remote.host} is not JSON`,
        );
      }
      throw error;
    } finally {
      ex.done();
    }
  }
}

/** An `UploadStatus` checked: whole sizes, ranges inside the file. */
/** A commit's result as the server sent it, checked (a {@linkcode ProtocolError} when malformed). */
function checkCommitted(value: unknown, host: string): CommitResult {
  const body = value as Partial<CommitResult> | null;
  if (
    body?.type !== "file" || !Number.isSafeInteger(body.size) ||
    typeof body.mtime !== "number" ||
    (body.sha256 !== undefined && typeof body.sha256 !== "string")
  ) {
    throw new ProtocolError(`Commit answer from ${host} is malformed`);
  }
  return body as CommitResult;
}

/** An upload status as the server sent it, checked (a {@linkcode ProtocolError} when malformed). */
export function checkStatus(value: unknown, host: string): HeldUpload {
  const s = value as Partial<UploadStatus> | null;
  const bad = () =>
    new ProtocolError(`Upload status from ${host} is malformed`);
  if (
    typeof s !== "object" || s === null || !Number.isSafeInteger(s.size) ||
    (s.size as number) < 0 || typeof s.source !== "string" ||
    !Array.isArray(s.held)
  ) throw bad();
  const size = s.size as number;
  const held = new RangeSet();
  for (const r of s.held) {
    if (
      !Array.isArray(r) || r.length !== 2 || !Number.isSafeInteger(r[0]) ||
      !Number.isSafeInteger(r[1]) || r[0] < 0 || r[1] < r[0] || r[1] > size
    ) throw bad();
    held.add({ start: r[0], end: r[1] });
  }
  return { size, source: s.source, held };
}
