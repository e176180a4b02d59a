/** Test fixture: keys made by the real ssh-keygen and a real ssh-agent on a socket of its own. */
import { join } from "node:path";

/** Whether ssh-keygen, ssh-agent and ssh-add can run (tests needing them are skipped with this reason otherwise). */
export async function haveOpenSsh(): Promise<boolean> {
  try {
    for (const tool of ["ssh-keygen", "ssh-agent", "ssh-add"]) {
      await new Deno.Command("sh", {
        args: ["-c", `command -v ${tool}`],
        stdout: "null",
        stderr: "null",
      }).output().then((o) => {
        if (!o.success) throw new Error(tool);
      });
    }
    return true;
  } catch {
    return false;
  }
}

/** Runs a command to success; its standard output. */
export async function run(
  program: string,
  args: string[],
  options: { env?: Record<string, string>; stdin?: Uint8Array } = {},
): Promise<string> {
  const child = new Deno.Command(program, {
    args,
    env: options.env,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (options.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(options.stdin);
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  if (!out.success) {
    throw new Error(
      `${program} ${args.join(" ")} failed: ${dec.decode(out.stderr)}`,
    );
  }
  return dec.decode(out.stdout);
}

/** `ssh-keygen -t TYPE -N PASS -f DIR/NAME`: the private key's path (its .pub beside it). */
export async function sshKeygen(
  dir: string,
  name: string,
  options: { type?: string; passphrase?: string; comment?: string } = {},
): Promise<string> {
  const file = join(dir, name);
  await run("ssh-keygen", [
    "-q",
    "-t",
    options.type ?? "ed25519",
    ...(options.type === "rsa" ? ["-b", "1024"] : []),
    "-N",
    options.passphrase ?? "",
    "-C",
    options.comment ?? `${name}@test`,
    "-f",
    file,
  ]);
  return file;
}

/** `ssh-keygen -Y sign -n NAMESPACE -f KEY` over `message`: the armored signature. */
export async function sshSign(
  key: string,
  namespace: string,
  message: Uint8Array,
): Promise<string> {
  return await run("ssh-keygen", ["-Y", "sign", "-n", namespace, "-f", key], {
    stdin: message,
  });
}

/** A real ssh-agent on `SOCK`, killed by `await using`. */
export interface Agent extends AsyncDisposable {
  socket: string;
  /** `ssh-add KEY`. */
  add(key: string): Promise<void>;
}

/** Starts `ssh-agent -D -a DIR/agent.sock` and waits until its socket takes a connection. */
export async function startAgent(dir: string): Promise<Agent> {
  const socket = join(dir, "agent.sock");
  const child = new Deno.Command("ssh-agent", {
    args: ["-D", "-a", socket],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const deadline = Date.now() + 10_000;
  while (true) {
    try {
      // The socket exists from its bind(), before the agent listens on it:
      // only a connection taken shows that ssh-add will be answered.
      const probe = await Deno.connect({ transport: "unix", path: socket });
      probe.close();
      break;
    } catch {
      if (Date.now() > deadline) {
        child.kill("SIGKILL");
        await child.status;
        throw new Error("ssh-agent made no socket within 10 s");
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  return {
    socket,
    add: async (key) => {
      await run("ssh-add", ["-q", key], { env: { SSH_AUTH_SOCK: socket } });
    },
    [Symbol.asyncDispose]: async () => {
      try {
        child.kill("SIGTERM");
      } catch {
        // Already gone.
      }
      await child.status;
    },
  };
}
