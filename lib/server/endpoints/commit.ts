/** `/v1/upload/commit` (push): a complete upload verified when asked, given its mode and time, and renamed into place. */
import { HttpError } from "../../shared/errors.ts";
import { API, type CommitRequest, HEADER } from "../../shared/wire.ts";
import { waitForSlot } from "../admission.ts";
import type { Endpoint, ServerContext } from "../context.ts";
import { json, requirePath } from "../http.ts";
import { readJsonBody } from "../request_body.ts";

/** Longest commit request: room for about 150,000 holes. */
const MAX_COMMIT_BYTES = 4 * 1024 * 1024;

/** `POST /v1/upload/commit?path=P` with a `CommitRequest`. */
export const commitEndpoint: Endpoint = {
  path: API.commit,
  methods: ["POST"],
  run: commit,
};

async function commit(ctx: ServerContext, request: Request, url: URL) {
  const target = ctx.writeJail.target(requirePath(url));
  const body = parseCommit(await readJsonBody(request, MAX_COMMIT_BYTES));
  const release = await waitForSlot(ctx, ctx.uploadJobs, request, "commit");
  try {
    const result = await ctx.uploads.commit(
      target,
      {
        ...body,
        session: request.headers.get(HEADER.uploadSession) ?? undefined,
      },
      async (job) => {
        // Verifying is hashing: it waits for a hash slot like /v1/hash.
        const slot = await waitForSlot(ctx, ctx.hashJobs, request, "verify");
        try {
          return await job();
        } finally {
          slot();
        }
      },
    );
    return json(result);
  } finally {
    release();
  }
}

function parseCommit(body: unknown): CommitRequest {
  const bad = (why: string) =>
    new HttpError(400, "bad_request", `Invalid commit request: ${why}`);
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw bad("expected a JSON object");
  }
  const b = body as Record<string, unknown>;
  const count = (name: string) => {
    const v = b[name];
    if (!Number.isSafeInteger(v) || (v as number) < 0) {
      throw bad(`${name} must be a whole number`);
    }
    return v as number;
  };
  const time = (name: string) => {
    const v = b[name];
    if (!Number.isSafeInteger(v)) {
      throw bad(`${name} must be a whole number of milliseconds`);
    }
    return v as number;
  };
  if (typeof b.source !== "string" || b.source === "") {
    throw bad("source must be a string");
  }
  if (b.sha256 !== undefined && !/^[0-9a-f]{64}$/.test(String(b.sha256))) {
    throw bad("sha256 must be 64 hex digits");
  }
  const size = count("size");
  return {
    size,
    source: b.source,
    // Before 1970 too (a negative number of milliseconds).
    mtime: time("mtime"),
    mode: count("mode") & 0o7777,
    preserve: b.preserve === true,
    sha256: b.sha256 === undefined ? undefined : String(b.sha256),
    holes: b.holes === undefined ? undefined : parseHoles(b.holes, size, bad),
  };
}

/** Holes as `[start, end)` pairs of whole numbers within `[0, size)`, sorted, not overlapping, none empty. */
function parseHoles(
  holes: unknown,
  size: number,
  bad: (why: string) => HttpError,
): Array<[number, number]> {
  if (!Array.isArray(holes)) {
    throw bad("holes must be an array of [start, end]");
  }
  let last = 0;
  return holes.map((hole: unknown, i) => {
    const [start, end] = Array.isArray(hole) && hole.length === 2
      ? hole
      : [NaN, NaN];
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end)) {
      throw bad(`hole ${i} must be [start, end] in whole bytes`);
    }
    if (!(start >= last && end > start && end <= size)) {
      throw bad(
        `hole ${i} [${start}, ${end}] must be sorted, not overlap the one before, not be empty and end within the ${size} bytes`,
      );
    }
    last = end;
    return [start, end];
  });
}
