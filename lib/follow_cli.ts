/** `hsync --sync`: the command-line side of following a remote file or tree. */
import type { PullCommand } from "./client_args.ts";
import type { ClientSettings } from "./config.ts";
import { UsageError } from "./errors.ts";
import type { Transport } from "./transport.ts";

/** Runs `--sync` until interrupted; returns the exit code. */
export function runFollow(
  _cmd: PullCommand,
  _settings: ClientSettings,
  _baseUrl: string,
  _transport: Transport,
): Promise<number> {
  throw new UsageError("--sync is not available in this version yet");
}
