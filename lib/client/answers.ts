/** Answers of the server's read endpoints checked before they are believed: a JSON body, an extents list. */
import type { Extents } from "../shared/wire.ts";
import type { Exchange } from "./remote.ts";

/** The answer's body parsed as JSON, null when it is not JSON (its checks then call it malformed); the exchange is done. */
export async function jsonOrNull(ex: Exchange): Promise<unknown> {
  try {
    return await ex.response.json();
  } catch (error) {
    if (error instanceof SyntaxError) return null;
    throw error;
  } finally {
    ex.done();
  }
}

/** Sorted, disjoint, non-empty data ranges within the size, and an ETag. */
export function validExtents(body: Partial<Extents> | null): body is Extents {
  if (
    typeof body?.etag !== "string" || !Number.isSafeInteger(body.size) ||
    (body.size as number) < 0 || !Array.isArray(body.data)
  ) return false;
  let at = 0;
  for (const pair of body.data as unknown[]) {
    if (
      !Array.isArray(pair) || pair.length !== 2 ||
      !Number.isSafeInteger(pair[0]) || !Number.isSafeInteger(pair[1]) ||
      pair[0] < at || pair[1] <= pair[0] || pair[1] > body.size!
    ) return false;
    at = pair[1];
  }
  return true;
}
