/** The facts file beside hsyncd's pidfile: what the running server is (address, start time, version, start arguments), as JSON. */
import type { PidInfo } from "./pidfile.ts";

/** `hsyncd.json` beside `hsyncd.pid`, `hsyncd-10809.json` beside `hsyncd-10809.pid`. */
export function factsPath(pidfile: string): string {
  return pidfile.replace(/\.pid$/, "") + ".json";
}

/** The facts in `text`, or undefined when it is not such a record. */
export function parseFacts(text: string): PidInfo | undefined {
  try {
    const info = JSON.parse(text) as PidInfo;
    if (
      Number.isSafeInteger(info.pid) && info.pid > 0 &&
      typeof info.host === "string" && Number.isSafeInteger(info.port) &&
      typeof info.started === "string" &&
      (info.args === undefined ||
        (Array.isArray(info.args) &&
          info.args.every((a) => typeof a === "string"))) &&
      (info.cwd === undefined || typeof info.cwd === "string")
    ) {
      return info;
    }
  } catch {
    // Falls through: not JSON.
  }
  return undefined;
}

/** The record of process `pid`: its facts when `factsText` is about that same pid, else the pid alone (address unknown). */
export function mergeFacts(pid: number, factsText?: string): PidInfo {
  const facts = factsText === undefined ? undefined : parseFacts(factsText);
  if (facts !== undefined && facts.pid === pid) return facts;
  return { pid, host: "", port: 0, scheme: "http", started: "", version: "" };
}
