/** The version of hsync and hsyncd, printed by `--version` and served by `/v1/health`. */
export const VERSION = "0.1.0";
