/**
 * The directories on the server of one push that are known to exist, and
 * the making of one with its parents when a file needs it there before it
 * is sent (bundles make their own).
 */
import { posix } from "node:path";
import { describeError } from "../shared/errors.ts";
import { type PushContext, writeRefusal } from "./push_context.ts";

/** The remote directories a push knows exist, and the making of the others. */
export class RemoteDirs {
  readonly #ctx: PushContext;
  /** Remote directories known to exist. */
  readonly #known = new Set<string>();
  /** Directories being made now, and what each failed with (undefined: made). */
  readonly #making = new Map<string, Promise<unknown>>();

  /** The directories of one push (none known yet). */
  constructor(context: PushContext) {
    this.#ctx = context;
  }

  /** Whether `remote` is known to exist on the server. */
  has(remote: string): boolean {
    return this.#known.has(remote);
  }

  /** `remote` is a directory on the server (the server said so, or wrote a file into it): so are its parents. */
  add(remote: string): void {
    for (let d = remote; !this.#known.has(d); d = posix.dirname(d)) {
      this.#known.add(d);
      if (d === "/") break;
    }
  }

  /**
   * Makes a remote directory and its parents unless known to exist (one
   * request for the files that need it at once); false when it could not
   * be (counted for `label`, or the run stopped).
   */
  async ensure(remote: string, label: string): Promise<boolean> {
    if (this.#known.has(remote)) return true;
    if (this.#ctx.dryRun) {
      this.add(remote);
      return true;
    }
    let making = this.#making.get(remote);
    if (making === undefined) {
      making = this.#make(remote);
      this.#making.set(remote, making);
      making.finally(() => this.#making.delete(remote));
    }
    const error = await making;
    if (error === undefined) return true;
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

  /** One `POST /v1/mkdir` of `remote`, retried; what it failed with (undefined: made). */
  async #make(remote: string): Promise<unknown> {
    try {
      await this.#ctx.backoff.retry(
        () => this.#ctx.push.mkdir(remote, { signal: this.#ctx.signal }),
        this.#ctx.signal,
      );
    } catch (error) {
      return error;
    }
    this.add(remote);
    return undefined;
  }
}
