/** The state a follower keeps between runs (which files it follows, from which remote offset), saved atomically under `$HSYNC_DIR/follow/`. */
import { createHash } from "node:crypto";
import { dirname, join, resolve } from "node:path";
import { replaceFile } from "../shared/atomic_file.ts";

const STATE_VERSION = 1;

/** The saved state of one follower (remote root, local root, and per file its remote offset of local byte 0). */
export interface FollowState {
  version: 1;
  baseUrl: string;
  remotePath: string;
  local: string;
  /** Set while the first pull runs: a restart runs it again. */
  pulling?: boolean;
  files: Record<string, { base: number; id?: string; etag?: string }>;
}

/**
 * The state file of one follower, under `$HSYNC_DIR/follow/`, named after
 * what it follows (server, remote path, local destination).
 */
export function followStatePath(
  hsyncDir: string,
  baseUrl: string,
  remotePath: string,
  localPath: string,
): string {
  const local = resolve(localPath) + (localPath.endsWith("/") ? "/" : "");
  const key = createHash("sha256").update(
    `${baseUrl}\n${remotePath}\n${local}`,
  ).digest("hex").slice(0, 24);
  return join(hsyncDir, "follow", `${key}.json`);
}

/** Reads a follower state file; undefined when absent or unusable (the follower then starts afresh). */
export async function loadFollowState(
  path: string,
): Promise<FollowState | undefined> {
  try {
    if (!(await Deno.lstat(path)).isFile) return undefined;
    const s = JSON.parse(await Deno.readTextFile(path));
    if (
      s?.version !== STATE_VERSION || typeof s.baseUrl !== "string" ||
      typeof s.remotePath !== "string" || typeof s.local !== "string" ||
      typeof s.files !== "object" || s.files === null
    ) return undefined;
    const files: FollowState["files"] = {};
    for (const [rel, f] of Object.entries(s.files as Record<string, unknown>)) {
      const e = f as { base?: unknown; id?: unknown; etag?: unknown };
      if (!Number.isSafeInteger(e?.base) || (e.base as number) < 0) continue;
      files[rel] = {
        base: e.base as number,
        id: typeof e.id === "string" ? e.id : undefined,
        etag: typeof e.etag === "string" ? e.etag : undefined,
      };
    }
    const state: FollowState = {
      version: STATE_VERSION,
      baseUrl: s.baseUrl,
      remotePath: s.remotePath,
      local: s.local,
      files,
    };
    if (s.pulling === true) state.pulling = true;
    return state;
  } catch {
    return undefined;
  }
}

/** Writes a follower state file atomically (temporary file, fsync, rename), making its directory. */
export async function saveFollowState(
  path: string,
  state: FollowState,
): Promise<void> {
  await Deno.mkdir(dirname(path), { recursive: true });
  await replaceFile(path, new TextEncoder().encode(JSON.stringify(state)));
}
