/**
 * A pull of several remote sources (`-i A -i B`, `HOST:/a HOST:/b DEST`,
 * remote globs): globs expanded on the server, names checked, then each
 * source pulled in turn inside the destination under its own name, as one
 * run with one progress and one summary.
 */
import { checkSourceNames } from "./client_args.ts";
import { ConnectError, HttpError } from "../shared/errors.ts";
import { hasGlob } from "../shared/wire.ts";
import { pull, type PullOptions, type PullSummary } from "./pull.ts";
import { Remote } from "./remote.ts";
import { remoteRootError } from "./root_error.ts";
import { emptySummary, type PullEvent } from "./transfer.ts";

/**
 * Every remote path with its globs expanded on the server (`GET /v1/glob`),
 * in order; then the names are checked (`UsageError`: two with one name).
 * A glob that matches nothing is a `ConnectError` as a missing path is
 * (exit 3), and so is one that matches more than `maxEntries` entries.
 */
export async function expandSources(
  remote: Remote,
  remotePaths: readonly string[],
  options: { maxEntries: number; signal?: AbortSignal },
): Promise<string[]> {
  const out: string[] = [];
  for (const path of remotePaths) {
    if (!hasGlob(path)) {
      out.push(path);
      continue;
    }
    const p = JSON.stringify(path);
    const nothing = new ConnectError(
      `Remote path ${p} matches nothing on ${remote.host}`,
      { status: 404 },
    );
    const tooMany = new ConnectError(
      `Remote path ${p} matches more than ${options.maxEntries} entries on ${remote.host}, the most one run accepts (--max-entries)`,
      { status: 413 },
    );
    let found = 0;
    try {
      for await (
        const match of remote.glob(path, options.signal, options.maxEntries)
      ) {
        if (++found > options.maxEntries) throw tooMany;
        out.push(match.path);
      }
    } catch (error) {
      if (error === tooMany) throw error;
      if (error instanceof HttpError && error.status === 404) {
        // A server from before remote globs has no such endpoint at all.
        if (/^No endpoint /.test(error.message)) {
          throw new ConnectError(
            `Remote path ${p} is a glob and ${remote.host} does not expand globs (its hsyncd is older than this hsync)`,
            { status: 404, cause: error },
          );
        }
        throw nothing;
      }
      if (error instanceof HttpError && error.status === 413) {
        throw new ConnectError(
          `Remote path ${p} matches more entries than ${remote.host} lists for one glob or than --max-entries ${options.maxEntries} allows: ${error.message}`,
          { status: 413, cause: error },
        );
      }
      throw remoteRootError(error, path, remote.host, "read");
    }
    if (found === 0) throw nothing;
  }
  checkSourceNames(out);
  return out;
}

/**
 * Pulls each of `sources` in turn inside `options.localPath` (a directory,
 * made when missing unless a dry run), with one stream of events (totals
 * added up over the sources) and one summary of the whole. `--delete`
 * applies to each source's copy. A source that cannot be read stops the run
 * with its error (the sources before it are complete).
 */
export async function pullSources(
  options: Omit<PullOptions, "remotePath">,
  sources: readonly string[],
  pullOne: (o: PullOptions) => Promise<PullSummary> = pull,
): Promise<PullSummary> {
  const started = performance.now();
  const localPath = options.localPath.endsWith("/")
    ? options.localPath
    : `${options.localPath}/`;
  const total: PullSummary = emptySummary();
  let files = 0;
  let bytes = 0;
  for (const [i, remotePath] of sources.entries()) {
    const last = i === sources.length - 1;
    const base = { files, bytes };
    // A failure of a whole copy (path ".", a refused --delete) names its source.
    const name = remotePath.replace(/\/+$/, "").split("/").pop() || remotePath;
    const onEvent = (event: PullEvent) => {
      if (event.type === "failure" && event.path === ".") {
        event = { ...event, path: name };
      }
      if (event.type === "total") {
        files = base.files + event.files;
        bytes = base.bytes + event.bytes;
        options.onEvent?.({
          type: "total",
          files,
          bytes,
          final: event.final && last,
        });
      } else options.onEvent?.(event);
    };
    const one = await pullOne({ ...options, remotePath, localPath, onEvent });
    for (const f of one.failures) if (f.path === ".") f.path = name;
    addSummary(total, one);
    if (options.signal?.aborted) break;
  }
  total.seconds = (performance.now() - started) / 1000;
  return total;
}

/** Adds `one` into `total` (every count and list; not the seconds). */
export function addSummary(total: PullSummary, one: PullSummary): void {
  total.files += one.files;
  total.bytes += one.bytes;
  total.skipped += one.skipped;
  total.failed += one.failed;
  total.failures.push(...one.failures);
  if (one.omissions?.length) {
    (total.omissions ??= []).push(...one.omissions);
  }
  if (one.withheld) total.withheld = (total.withheld ?? 0) + one.withheld;
  if (one.deleted) total.deleted = (total.deleted ?? 0) + one.deleted;
  total.resumed = (total.resumed ?? 0) + (one.resumed ?? 0);
}
