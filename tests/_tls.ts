/** Test fixture: a private CA and a server certificate for 127.0.0.1/localhost, made with openssl at test time. */

/** Files of a test PKI. */
export interface TestPki {
  caFile: string;
  certFile: string;
  keyFile: string;
  /** A certificate for another host name, signed by the same CA. */
  wrongHostCertFile: string;
  wrongHostKeyFile: string;
}

/** True when openssl can be run here. */
export async function haveOpenssl(): Promise<boolean> {
  try {
    const r = await new Deno.Command("openssl", {
      args: ["version"],
      stdout: "null",
      stderr: "null",
    }).output();
    return r.success;
  } catch {
    return false;
  }
}

async function openssl(args: string[], cwd: string): Promise<void> {
  const r = await new Deno.Command("openssl", {
    args,
    cwd,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!r.success) {
    throw new Error(
      `openssl ${args[0]} failed: ${new TextDecoder().decode(r.stderr)}`,
    );
  }
}

async function leaf(
  dir: string,
  name: string,
  cn: string,
  san: string,
): Promise<void> {
  await Deno.writeTextFile(
    `${dir}/${name}.ext`,
    `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n`,
  );
  await openssl([
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.csr`,
    "-subj",
    `/CN=${cn}`,
  ], dir);
  await openssl([
    "x509",
    "-req",
    "-in",
    `${name}.csr`,
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    `${name}.pem`,
    "-days",
    "2",
    "-sha256",
    "-extfile",
    `${name}.ext`,
  ], dir);
}

/** Makes a CA and two server certificates in `dir` (the README's recipe, scripted). */
export async function makeTestPki(dir: string): Promise<TestPki> {
  await openssl([
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "2",
    "-subj",
    "/CN=hsync test CA",
  ], dir);
  await leaf(dir, "server", "localhost", "DNS:localhost,IP:127.0.0.1");
  await leaf(dir, "other", "elsewhere.example", "DNS:elsewhere.example");
  return {
    caFile: `${dir}/ca.pem`,
    certFile: `${dir}/server.pem`,
    keyFile: `${dir}/server.key`,
    wrongHostCertFile: `${dir}/other.pem`,
    wrongHostKeyFile: `${dir}/other.key`,
  };
}
