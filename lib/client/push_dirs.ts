/**
 * The directories on the server of one push: which are known to exist, the
 * making of the others (several at once, or one with its parents), and the
 * mode the server gave each it made.
 */
import { posix } from "node:path";
import { describeError } from "../shared/errors.ts";
import { inBatches } from "./in_batches.ts";
import { type PushContext, writeRefusal } from "./push_context.ts";

/** The remote directories a push knows exist, and the making of the others. */
export class RemoteDirs {
  readonly #ctx: PushContext;
  /** Remote directories known to exist. */
  readonly #known = new Set<string>();
  /** Modes the server gave the directories this run asked it to make. */
  readonly #madeModes = new Map<string, number>();

  /** The directories of one push (none known yet). */
  constructor(context: PushContext) {
    this.#ctx = context;
  }

  /** Whether `remote` is known to exist on the server. */
  has(remote: string): boolean {
    return this.#known.has(remote);
  }

  /** `remote` is a directory on the server (the server said so). */
  add(remote: string): void {
    this.#known.add(remote);
  }

  /** The mode the server gave `remote` when this run made it. */
  madeMode(remote: string): number | undefined {
    return this.#madeModes.get(remote);
  }

  /** Makes the remote directories not known to exist, a few at a time; a failure is left for {@linkcode RemoteDirs.ensure} to tell. */
  async prepare(remotes: string[]): Promise<void> {
    if (this.#ctx.dryRun) return;
    const todo = remotes.filter((r) => !this.#known.has(r));
    if (todo.length < 2) return;
    await inBatches(todo, async (remote) => {
      if (this.#ctx.signal.aborted) return;
      try {
        const made = await this.#ctx.push.mkdir(remote, {
          signal: this.#ctx.signal,
        });
        this.#madeModes.set(remote, made.mode);
        this.#markKnown(remote);
      } catch {
        // Made again, and its failure told, by ensure().
      }
    });
  }

  /** Makes a remote directory and its parents unless known to exist; false when it could not be (counted, or the run stopped). */
  async ensure(remote: string, label: string): Promise<boolean> {
    if (this.#known.has(remote)) return true;
    if (this.#ctx.dryRun) {
      this.#markKnown(remote);
      return true;
    }
    try {
      const made = await this.#ctx.backoff.retry(
        () => this.#ctx.push.mkdir(remote, { signal: this.#ctx.signal }),
        this.#ctx.signal,
      );
      this.#madeModes.set(remote, made.mode);
    } catch (error) {
      if (this.#ctx.signal.aborted) return false;
      const refusal = writeRefusal(error, this.#ctx.remote.host);
      if (refusal !== undefined) {
        this.#ctx.stopRun(refusal);
        return false;
      }
      this.#ctx.fail(
        label,
        `Cannot make remote directory ${JSON.stringify(remote)}: ${
          describeError(error)
        }`,
      );
      return false;
    }
    this.#markKnown(remote);
    return true;
  }

  /** `remote` and its parents exist (made, or as a dry run would make them). */
  #markKnown(remote: string): void {
    for (let d = remote; !this.#known.has(d); d = posix.dirname(d)) {
      this.#known.add(d);
      if (d === "/") break;
    }
  }
}
