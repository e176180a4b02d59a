// The relay of bench/_link.ts as a process of its own, so that its copying
// neither shares the benchmark's event loop nor hides in its CPU time:
//   deno run -q --allow-net=127.0.0.1 bench/_link_main.ts PORT UPSTREAM_PORT DELAY_MS WINDOW_BYTES
// listens on 127.0.0.1:PORT and relays until SIGTERM or SIGINT.
// deno-lint-ignore-file no-console
import { startLink } from "./_link.ts";

const [port, upstream, delay, window] = Deno.args.map(Number);
if (
  Deno.args.length !== 4 || !Number.isInteger(port) || port < 1 ||
  !Number.isInteger(upstream) || upstream < 1 || !(delay >= 0) ||
  !Number.isInteger(window) || window < 1
) {
  console.error(
    `_link_main: expected PORT UPSTREAM_PORT DELAY_MS WINDOW_BYTES, got "${
      Deno.args.join(" ")
    }"`,
  );
  Deno.exit(1);
}
const link = startLink(upstream, delay, window, { port });
const stop = async () => {
  await link.close();
  Deno.exit(0);
};
Deno.addSignalListener("SIGTERM", stop);
Deno.addSignalListener("SIGINT", stop);
