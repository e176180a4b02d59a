/** Tests of lib/server/error_status.ts: the one map from a throw to hsyncd's answer, used by the handler, the bundle frames and the jail. */
import assert from "node:assert/strict";
import { HttpError } from "../lib/shared/errors.ts";
import {
  BusyError,
  errorResponse,
  errorStatus,
  fsFailureStatus,
  LIMIT_HEADER,
} from "../lib/server/error_status.ts";
import { fsFailure } from "../lib/server/jail/request_path.ts";

/** A node-style file-system error, as node:fs calls throw them. */
function nodeError(code: string): Error {
  return Object.assign(new Error(`${code}: from node:fs`), { code });
}

const FS_CASES: Array<{
  name: string;
  error: unknown;
  status: number;
  code: string;
  message: string;
}> = [
  {
    name: "Deno NotFound",
    error: new Deno.errors.NotFound("lstat '/x'"),
    status: 404,
    code: "not_found",
    message: "No such file or directory",
  },
  {
    name: "Deno NotADirectory",
    error: new Deno.errors.NotADirectory("chdir '/f/x'"),
    status: 404,
    code: "not_found",
    message: "No such file or directory",
  },
  {
    name: "node ENOENT",
    error: nodeError("ENOENT"),
    status: 404,
    code: "not_found",
    message: "No such file or directory",
  },
  {
    name: "node ENOTDIR",
    error: nodeError("ENOTDIR"),
    status: 404,
    code: "not_found",
    message: "No such file or directory",
  },
  {
    name: "Deno FilesystemLoop",
    error: new Deno.errors.FilesystemLoop("open '/l'"),
    status: 404,
    code: "not_found",
    message: "Too many levels of symbolic links",
  },
  {
    name: "node ELOOP",
    error: nodeError("ELOOP"),
    status: 404,
    code: "not_found",
    message: "Too many levels of symbolic links",
  },
  {
    name: "Deno PermissionDenied",
    error: new Deno.errors.PermissionDenied("open '/root/x'"),
    status: 403,
    code: "permission_denied",
    message: "Permission denied",
  },
  {
    name: "Deno NotCapable",
    error: new Deno.errors.NotCapable("Requires read access"),
    status: 403,
    code: "permission_denied",
    message: "Permission denied",
  },
  {
    name: "node EACCES",
    error: nodeError("EACCES"),
    status: 403,
    code: "permission_denied",
    message: "Permission denied",
  },
  {
    name: "node EPERM",
    error: nodeError("EPERM"),
    status: 403,
    code: "permission_denied",
    message: "Permission denied",
  },
];

Deno.test("errorStatus() and the jail's fsFailure() give every file-system failure the same status and code", async (t) => {
  for (const c of FS_CASES) {
    await t.step(c.name, () => {
      assert.deepEqual(errorStatus(c.error), {
        status: c.status,
        body: { error: c.code, message: c.message },
      });
      const jail = fsFailure("/srv/a b", c.error);
      assert.ok(jail instanceof HttpError);
      assert.equal(jail.status, c.status);
      assert.equal(jail.code, c.code);
      // The jail words it with the requested path, and only that.
      assert.equal(
        jail.message,
        `Cannot serve "/srv/a b": ${c.message.toLowerCase()}`,
      );
    });
  }
});

Deno.test("errorStatus() keeps an HttpError's own status, code and message", () => {
  assert.deepEqual(
    errorStatus(new HttpError(409, "changed", 'Cannot serve "/x": retry')),
    {
      status: 409,
      body: { error: "changed", message: 'Cannot serve "/x": retry' },
    },
  );
});

Deno.test("errorStatus() answers anything else 500 internal and tells nothing of it", () => {
  for (
    const error of [
      new Error("Boom in /very/secret/place"),
      nodeError("EIO"),
      new Deno.errors.BadResource("fd 12"),
      "a string",
      undefined,
    ]
  ) {
    assert.deepEqual(errorStatus(error), {
      status: 500,
      body: { error: "internal", message: "Internal server error" },
    });
    assert.equal(fsFailureStatus(error), undefined);
    // The jail passes such an error on unchanged, to become that 500.
    assert.equal(fsFailure("/x", error), error);
  }
});

Deno.test("errorResponse() adds Retry-After to a 503 and names the limit of a busy one, keeping given headers", async () => {
  const busy = errorResponse(
    new BusyError("peerHashQueue", "Cannot hash now: busy"),
  );
  assert.equal(busy.status, 503);
  assert.equal(busy.headers.get("retry-after"), "1");
  assert.equal(busy.headers.get(LIMIT_HEADER), "peerHashQueue");
  assert.deepEqual(await busy.json(), {
    error: "busy",
    message: "Cannot hash now: busy",
  });

  const stopping = errorResponse(
    new HttpError(503, "stopping", "The server is stopping, retry later"),
  );
  assert.equal(stopping.headers.get("retry-after"), "1");
  assert.equal(stopping.headers.get(LIMIT_HEADER), null);
  await stopping.body?.cancel();

  const range = errorResponse(
    new HttpError(416, "bad_range", "Cannot serve"),
    new Headers({ "content-range": "bytes */10" }),
  );
  assert.equal(range.headers.get("content-range"), "bytes */10");
  assert.equal(range.headers.get("retry-after"), null);
  assert.equal(
    range.headers.get("content-type"),
    "application/json; charset=utf-8",
  );
  await range.body?.cancel();
});
