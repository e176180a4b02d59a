/**
 * Links of a push: symbolic links made as links (`-l`) and names of one
 * local file made names of one remote file (`-H`). A hard link waits for
 * the first name of its file to be on the server (committed, or left alone
 * as identical), then is one `POST /v1/link`; when that first name failed,
 * the next name is sent as a file and stands in for it.
 */
import { describeError } from "../shared/errors.ts";
import {
  type PushContext,
  type SendJob,
  writeRefusal,
} from "./push_context.ts";

/** How one name of a file is planned like any file (compared, then sent by `send`). */
export type PlanAlone = (
  send?: (job: SendJob) => Promise<void>,
) => Promise<void>;

/** Options of {@linkcode LinkSender}. */
export interface LinkSenderOptions {
  /** Runs a request in the background. */
  spawn: (task: Promise<void>) => void;
  /** Sends a file at once in ranges (never into a bundle that may already be sent). */
  sendNow: (job: SendJob) => Promise<void>;
}

/** The names of one local file (one device and inode) seen so far: the remote path the next one links to, once known. */
interface LinkGroup {
  /** Resolves to a remote name holding the file, or undefined when none does (the next name is sent instead). */
  current: Promise<string | undefined>;
}

/** Makes the symbolic and hard links of one push on the server. */
export class LinkSender {
  readonly #ctx: PushContext;
  readonly #o: LinkSenderOptions;
  readonly #groups = new Map<string, LinkGroup>();
  /** Names sent as files that other names wait for, by label. */
  readonly #awaited = new Map<
    string,
    { remote: string; settle: (at: string | undefined) => void }
  >();
  readonly #stopped: Promise<undefined>;

  /** A sender for one push. */
  constructor(context: PushContext, options: LinkSenderOptions) {
    this.#ctx = context;
    this.#o = options;
    const signal = context.signal;
    this.#stopped = new Promise((resolve) => {
      if (signal.aborted) resolve(undefined);
      else {
        signal.addEventListener("abort", () => resolve(undefined), {
          once: true,
        });
      }
    });
  }

  /** Makes `remote` a symbolic link with the text `target` and the time `mtime` (in the background); a refusal is that entry's failure. */
  symlink(label: string, remote: string, target: string, mtime: number): void {
    this.#ctx.addTotal(1, 0);
    this.#o.spawn(this.#make(
      label,
      () => this.#ctx.push.symlink(remote, target, mtime, this.#ctx.signal),
    ));
  }

  /**
   * One name of a local file with several names (`key` is its device and
   * inode): the first is planned as any file (`plan()`, awaited: the walk's
   * backpressure); each later one waits in the background for a name on the
   * server to link to, and is planned as a file itself (sent at once, never
   * into a bundle) when there is none.
   */
  async name(key: string, job: SendJob, plan: PlanAlone): Promise<void> {
    const group = this.#groups.get(key);
    let settle!: (at: string | undefined) => void;
    const mine = new Promise<string | undefined>((resolve) => settle = resolve);
    if (group === undefined) {
      this.#groups.set(key, { current: mine });
      this.#awaited.set(job.label, { remote: job.remote, settle });
      await plan();
      return;
    }
    const before = group.current;
    group.current = mine;
    this.#o.spawn((async () => {
      const at = await Promise.race([before, this.#stopped]);
      if (this.#ctx.signal.aborted) return settle(undefined);
      if (at === undefined) {
        // No name before is on the server: this one is sent, and linked to.
        this.#awaited.set(job.label, { remote: job.remote, settle });
        await plan((j) => this.#o.sendNow(j));
        return;
      }
      this.#ctx.addTotal(1, 0);
      await this.#make(
        job.label,
        () => this.#ctx.push.link(job.remote, at, this.#ctx.signal),
      );
      settle(at);
    })());
  }

  /** The outcome of a file's name: on the server (sent or identical) or failed. */
  settled(label: string, ok: boolean): void {
    const waiting = this.#awaited.get(label);
    if (waiting === undefined) return;
    this.#awaited.delete(label);
    waiting.settle(ok ? waiting.remote : undefined);
  }

  /** One link request, retried while the network or the server falters; counted. */
  async #make(label: string, request: () => Promise<void>): Promise<void> {
    const ctx = this.#ctx;
    if (ctx.dryRun) {
      ctx.emit({ type: "plan", action: "transfer", path: label, bytes: 0 });
      return;
    }
    try {
      await ctx.backoff.retry(request, ctx.signal);
    } catch (error) {
      if (ctx.signal.aborted) return;
      const refusal = writeRefusal(error, ctx.remote.host);
      if (refusal !== undefined) {
        ctx.stopRun(refusal);
        return;
      }
      ctx.fail(label, describeError(error));
      return;
    }
    ctx.linked(label);
  }
}
