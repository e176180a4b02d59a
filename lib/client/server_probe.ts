/**
 * Who is at the server's address when an exchange goes wrong: hsyncd (its
 * answers carry {@linkcode API_HEADER} or its JSON error body), another HTTP
 * server, an HTTPS port asked in plain HTTP (or the reverse), or something
 * that speaks no HTTP at all. Each case gets one line that says what to fix.
 */
import { joinBytes } from "../shared/bytes.ts";
import { ConnectError, HttpError } from "../shared/errors.ts";
import { API_HEADER, type ErrorBody } from "../shared/wire.ts";
import { Unauthorized } from "./auth_advice.ts";
import { tlsReason } from "./transport.ts";

/** Most bytes of an error answer read: its JSON body is short, another server's page may not be. */
const MAX_ERROR_BODY = 64 * 1024;

/** What listens on a port, as far as one probe connection can tell. */
export type Listener = "https" | "http" | "neither";

/** `host:port` of a URL, the port spelled out even when it is the scheme's default. */
export function addressOf(url: URL): string {
  const port = url.port !== ""
    ? url.port
    : url.protocol === "https:"
    ? "443"
    : "80";
  return `${url.hostname}:${port}`;
}

/** Builds the error of a failed response from its JSON body (`{error, message}`), or from its status. */
export async function errorFrom(response: Response): Promise<HttpError> {
  return httpError(response, parseErrorBody(await boundedText(response)));
}

/**
 * The error of a failed answer: an `HttpError` when hsyncd gave it (its
 * header, or its JSON error body from a build before the header), else a
 * `ConnectError` saying the address holds another HTTP server. A 5xx
 * without hsyncd's marks stays an `HttpError` (retried): a reverse proxy
 * in front of a busy or restarting hsyncd answers so.
 */
export async function answerError(
  response: Response,
  url: URL,
): Promise<HttpError | ConnectError> {
  const body = parseErrorBody(await boundedText(response));
  if (
    response.headers.get(API_HEADER) === null && body === undefined &&
    response.status < 500
  ) return notHsyncd(response, url);
  const error = httpError(response, body);
  if (response.status !== 401) return error;
  // The server's clock, for "this machine's clock is N minutes ahead".
  const date = Date.parse(response.headers.get("date") ?? "");
  return new Unauthorized(
    error.code,
    error.message,
    Number.isNaN(date) ? undefined : date,
  );
}

/**
 * A successful answer that is not hsyncd's, or undefined: a web page
 * (`text/html`) without hsyncd's header, as a default site or a captive
 * portal gives for any path.
 */
export function foreignSuccess(
  response: Response,
  url: URL,
): ConnectError | undefined {
  if (response.headers.get(API_HEADER) !== null) return undefined;
  const type = response.headers.get("content-type") ?? "";
  return /^\s*text\/html/i.test(type) ? notHsyncd(response, url) : undefined;
}

function notHsyncd(response: Response, url: URL): ConnectError {
  const server = response.headers.get("server");
  const status = `${response.status} ${response.statusText}`.trim();
  return new ConnectError(
    `${
      addressOf(url)
    } is an HTTP server but not hsyncd (it answered "${status}"${
      server === null ? "" : ` as ${JSON.stringify(server.slice(0, 80))}`
    } to ${url.pathname})`,
  );
}

/**
 * The `ConnectError` of a request that got no HTTP answer. When the failure
 * says the port spoke something else than what was sent (`invalid HTTP
 * version`, a TLS record that is not one), `probe` is asked once what
 * listens there, and the line says to add or drop `--tls` only when the
 * probe found the other protocol; otherwise that the port does not speak
 * HTTP(S).
 */
export async function unreachableError(
  error: unknown,
  url: URL,
  probe: () => Promise<Listener | undefined>,
): Promise<ConnectError> {
  const text = causeText(error);
  const address = addressOf(url);
  const tls = url.protocol === "https:";
  const garbled = tls
    ? /InvalidContentType|corrupt message/i.test(text)
    : /invalid HTTP version parsed|unexpected message from connection/i.test(
      text,
    );
  const closed = tls
    ? /tls handshake eof/i.test(text)
    : /connection closed before message completed/i.test(text);
  if (garbled || closed) {
    const found = await probe();
    if (!tls && found === "https") {
      return new ConnectError(
        `${address} speaks HTTPS: add --tls or Tls = yes`,
        { cause: error },
      );
    }
    if (tls && found === "http") {
      return new ConnectError(
        `${address} speaks plain HTTP, not HTTPS: drop --tls or set Tls = no`,
        { cause: error },
      );
    }
    if (garbled && found === "neither") {
      return new ConnectError(
        `${address} does not speak ${tls ? "HTTPS" : "HTTP"} (not an hsyncd?)`,
        { cause: error },
      );
    }
  }
  return new ConnectError(`Cannot reach ${url.host}: ${networkReason(text)}`, {
    cause: error,
  });
}

/**
 * One connection to `url`'s port in the other protocol than `url` asks
 * for: a TLS handshake (a certificate the client does not trust still
 * proves TLS) for an `http:` URL, a plain `GET /v1/health` for an
 * `https:` one. Undefined when nothing could be learnt in `timeoutMs`.
 */
export async function probeListener(
  url: URL,
  timeoutMs = 3000,
): Promise<Listener | undefined> {
  const hostname = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = Number(addressOf(url).split(":").pop());
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), timeoutMs);
  });
  try {
    return await Promise.race([
      url.protocol === "https:"
        ? plainAnswers(url, timeoutMs)
        : tlsHandshakes(hostname, port),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

async function tlsHandshakes(
  hostname: string,
  port: number,
): Promise<Listener | undefined> {
  let conn: Deno.TlsConn;
  try {
    conn = await Deno.connectTls({ hostname, port });
  } catch {
    return undefined;
  }
  try {
    await conn.handshake();
    return "https";
  } catch (error) {
    const text = causeText(error);
    if (/corrupt message|InvalidContentType|end of file|eof/i.test(text)) {
      return "neither";
    }
    // A certificate refused or a TLS alert: it was a TLS handshake.
    return /certificate|alert|issuer|NotValidForName/i.test(text)
      ? "https"
      : "neither";
  } finally {
    try {
      conn.close();
    } catch {
      // Already closed by the failed handshake.
    }
  }
}

async function plainAnswers(
  url: URL,
  timeoutMs: number,
): Promise<Listener | undefined> {
  const plain = new URL(url.href);
  plain.protocol = "http:";
  plain.pathname = "/v1/health";
  plain.search = "";
  try {
    const response = await fetch(plain, {
      signal: AbortSignal.timeout(timeoutMs),
      redirect: "manual",
    });
    await response.body?.cancel().catch(() => {});
    return "http";
  } catch (error) {
    return error instanceof DOMException ? undefined : "neither";
  }
}

/** The messages of an error and its causes, joined (Deno says "fetch failed" and puts the details in the cause chain). */
function causeText(error: unknown): string {
  let text = "";
  for (let e: unknown = error, i = 0; e !== undefined && i < 5; i++) {
    const m = e instanceof Error ? e.message : String(e);
    if (m !== "fetch failed") text = text === "" ? m : `${text}: ${m}`;
    e = e instanceof Error ? e.cause : undefined;
  }
  return text === "" ? "fetch failed" : text;
}

/** `connection refused`, `connection reset`, a TLS reason... from a fetch error's text. */
function networkReason(text: string): string {
  const tls = tlsReason(text);
  if (tls !== undefined) return tls;
  if (/connection refused/i.test(text)) return "connection refused";
  if (/connection reset/i.test(text)) return "connection reset";
  if (/dns error|failed to lookup/i.test(text)) return "unknown host";
  const parts = text.split(": ");
  const last = parts[parts.length - 1].replace(/\s*\(os error \d+\)$/, "");
  return last.charAt(0).toLowerCase() + last.slice(1);
}

/** hsyncd's error body, or undefined when `text` is not one. */
function parseErrorBody(text: string): Partial<ErrorBody> | undefined {
  try {
    const body = JSON.parse(text);
    return typeof body?.error === "string" ? body : undefined;
  } catch {
    return undefined;
  }
}

function httpError(
  response: Response,
  body: Partial<ErrorBody> | undefined,
): HttpError {
  const code = typeof body?.error === "string"
    ? body.error
    : `http_${response.status}`;
  const message = typeof body?.message === "string" && body.message !== ""
    ? body.message
    : `${response.status} ${response.statusText}`.trim();
  return new HttpError(response.status, code, message);
}

/** The first {@linkcode MAX_ERROR_BODY} bytes of a body as text; the rest is not read. */
async function boundedText(response: Response): Promise<string> {
  const body = response.body;
  if (body === null) return "";
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < MAX_ERROR_BODY) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.length;
    }
  } catch {
    // A body cut short: what came is all there is to show.
  } finally {
    await reader.cancel().catch(() => {});
  }
  return new TextDecoder().decode(
    joinBytes(chunks).subarray(0, MAX_ERROR_BODY),
  );
}
