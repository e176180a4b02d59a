/** Writing a whole buffer through a Deno handle, whose `writeSync` may take only part of it. */

/** Writes all of `bytes` at `file`'s position. */
export function writeAllSync(file: Deno.FsFile, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.length;) {
    done += file.writeSync(bytes.subarray(done));
  }
}
