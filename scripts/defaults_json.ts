/** `deno task defaults`: writes lib/shared/hsync_ini.json, hsync.ini as `ini` parses it, read at start-up without loading the parser (lib/shared/ini_text.ts). */
import { parseIniText } from "../lib/shared/ini_text.ts";

const text = await Deno.readTextFile(new URL("../hsync.ini", import.meta.url));
const out = new URL("../lib/shared/hsync_ini.json", import.meta.url);
await Deno.writeTextFile(
  out,
  JSON.stringify(await parseIniText(text), null, 2) + "\n",
);
