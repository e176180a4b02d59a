/** How hsyncd writes a response (JSON, headers every answer carries) and reads its query parameters. */
import { HttpError } from "../shared/errors.ts";

const encoder = new TextEncoder();

/**
 * Whether the request came over HTTP/1.x: HTTP/1.1 requests must carry a Host
 * header, HTTP/2 ones carry none (their authority is in the URL). Over
 * HTTP/2 a body longer than its `content-length` fails the stream, and a
 * `connection` header is forbidden.
 */
export function overHttp1(request: Request): boolean {
  return request.headers.has("host");
}

/** `headers` (copied) with `content-type` and `x-content-type-options: nosniff`. */
export function baseHeaders(contentType: string, headers?: Headers): Headers {
  const out = new Headers(headers);
  out.set("content-type", contentType);
  out.set("x-content-type-options", "nosniff");
  return out;
}

/** A JSON response with its length, never cached. */
export function json(
  value: unknown,
  status = 200,
  headers?: Headers,
): Response {
  const bytes = encoder.encode(JSON.stringify(value));
  const out = baseHeaders("application/json; charset=utf-8", headers);
  out.set("cache-control", "no-store");
  out.set("content-length", String(bytes.length));
  return new Response(bytes, { status, headers: out });
}

/** The `path` query parameter; 400 when missing. */
export function requirePath(url: URL): string {
  const path = url.searchParams.get("path");
  if (path === null) {
    throw new HttpError(
      400,
      "bad_request",
      'Missing query parameter "path"',
    );
  }
  return path;
}

/** The 400 for query parameter `name` given as `raw` (null: missing), saying what was `expected`; the value is quoted, at most 80 characters of it. */
export function badQuery(
  name: string,
  raw: string | null,
  expected: string,
): HttpError {
  const shown = raw === null ? "null" : JSON.stringify(raw.slice(0, 80));
  return new HttpError(
    400,
    "bad_request",
    `Invalid query parameter ${name}=${shown}: expected ${expected}`,
  );
}

/** Whether the switch `name=1` is given (absent: false); 400 for any other value. */
export function optionalFlag(url: URL, name: string): boolean {
  const raw = url.searchParams.get(name);
  if (raw !== null && raw !== "1") throw badQuery(name, raw, "1");
  return raw !== null;
}

/** A whole number of bytes given as query parameter `name`, or undefined when absent; 400 when not one. */
export function optionalInteger(url: URL, name: string): number | undefined {
  return queryNumber(url, name, /^\d{1,16}$/, "a whole number of bytes");
}

/** An optional count (`after=N`); 400 when it is not a whole number. */
export function optionalCount(url: URL, name: string): number | undefined {
  return queryNumber(url, name, /^\d{1,16}$/, "a whole number");
}

/** An optional time in milliseconds since 1970 (negative before it); 400 when it is not a whole number. */
export function optionalTime(url: URL, name: string): number | undefined {
  return queryNumber(
    url,
    name,
    /^-?\d{1,16}$/,
    "a whole number of milliseconds",
  );
}

/** Query parameter `name` as a safe integer written as `form` allows; undefined when absent, 400 (`expected`) otherwise. */
function queryNumber(
  url: URL,
  name: string,
  form: RegExp,
  expected: string,
): number | undefined {
  const raw = url.searchParams.get(name);
  if (raw === null) return undefined;
  const n = Number(raw);
  if (!form.test(raw) || !Number.isSafeInteger(n)) {
    throw badQuery(name, raw, expected);
  }
  return n;
}
