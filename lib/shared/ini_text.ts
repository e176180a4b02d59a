/**
 * INI text parsed by the `ini` package, the one file that loads it, and only
 * when a file is to be parsed: loading it costs every start 16-24 ms (npm's
 * layer; an empty script starts in 22 ms, one importing `ini` in 46), which a
 * run without a configuration file of its own does not need, since the
 * built-in defaults come parsed ({@linkcode BUILTIN_DEFAULTS}).
 */
import builtinText from "../../hsync.ini" with { type: "text" };
import builtinParsed from "./hsync_ini.json" with { type: "json" };

/** What INI text parses into: sections (objects) and top-level keys. */
export type ParsedIni = Record<string, unknown>;

/** hsync.ini, the built-in defaults, as text. */
export const BUILTIN_TEXT: string = builtinText;

/**
 * hsync.ini as `ini` parses it, written by `deno task defaults`
 * (scripts/defaults_json.ts); tests/config_test.ts fails when it no longer
 * matches the text.
 */
export const BUILTIN_DEFAULTS: Readonly<ParsedIni> = builtinParsed;

/** `text` parsed (the built-in defaults without loading the parser); throws what `ini` throws. */
export async function parseIni(text: string): Promise<ParsedIni> {
  if (text === BUILTIN_TEXT) return structuredClone(BUILTIN_DEFAULTS);
  return await parseIniText(text);
}

/** `text` parsed by `ini` itself, never the stored copy (what the stored copy is checked against). */
export async function parseIniText(text: string): Promise<ParsedIni> {
  const { default: ini } = await import("ini");
  return ini.parse(text) as ParsedIni;
}
