/** Whole small files read through a node descriptor, positionally (no shared file offset): hsyncd's jail and hsync's bundles read them so. */
import { readSync } from "node:fs";

/** Fills `data` from the start of the file open as `fd`; false if the file ends first. */
export function readFully(fd: number, data: Uint8Array): boolean {
  let at = 0;
  while (at < data.length) {
    const n = readSync(fd, data, at, data.length - at, at);
    if (n === 0) return false;
    at += n;
  }
  return true;
}
