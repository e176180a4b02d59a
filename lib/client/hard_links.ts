/**
 * `-H`: names of one file (one `inode` tag in the listing) stay names of one
 * file. The first name listed is fetched as any file; every other name
 * waits for it and is then linked to it, or fetched on its own when the
 * first failed. Nothing is fetched twice.
 */
import type { FileJob } from "./transfer.ts";

/** What becomes of the names that wait for the first name of their file. */
export interface HardLinkActions {
  /** The first name is in place (placed or identical): give `job` its file. */
  link(first: FileJob, job: FileJob): void;
  /** The first name failed: `job` is fetched on its own. */
  fetch(job: FileJob): void;
}

interface Group {
  first: FileJob;
  state: "pending" | "placed" | "failed";
  waiting: FileJob[];
}

/** The files of one pull that have more than one name, by tag. */
export class HardLinks {
  readonly #actions: HardLinkActions;
  readonly #byTag = new Map<string, Group>();
  /** Groups whose first name has no outcome yet, by its relative path. */
  readonly #pending = new Map<string, Group>();

  /** Hard links of one pull, acted on through `actions`. */
  constructor(actions: HardLinkActions) {
    this.#actions = actions;
  }

  /**
   * Takes a name of the file tagged `tag`: true when it is the first (the
   * caller fetches it as usual, and reports its outcome by
   * {@linkcode settled}); false when it joins its first name (linked or
   * fetched once that one has an outcome: the caller is done with it).
   */
  claim(tag: string, job: FileJob): boolean {
    const group = this.#byTag.get(tag);
    if (group === undefined) {
      const created: Group = { first: job, state: "pending", waiting: [] };
      this.#byTag.set(tag, created);
      this.#pending.set(job.rel, created);
      return true;
    }
    if (group.state === "pending") group.waiting.push(job);
    else this.#act(group, job);
    return false;
  }

  /** The entry at `rel` was placed or found identical (`ok`), or failed: the names waiting for it get their turn. */
  settled(rel: string, ok: boolean): void {
    const group = this.#pending.get(rel);
    if (group === undefined) return;
    this.#pending.delete(rel);
    group.state = ok ? "placed" : "failed";
    const waiting = group.waiting;
    group.waiting = [];
    for (const job of waiting) this.#act(group, job);
  }

  #act(group: Group, job: FileJob): void {
    if (group.state === "placed") this.#actions.link(group.first, job);
    else this.#actions.fetch(job);
  }
}
