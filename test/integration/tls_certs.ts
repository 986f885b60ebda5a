// Throw-away certificates for the TLS tests, made with openssl into a temp dir at test time (never
// committed): a CA; a server certificate for 127.0.0.1 usable as a client certificate too (members
// dial each other and the leader's client URL with it, as etcd members do); client certificates
// with CN=alice and CN=root; and "mallory", a CN=alice certificate from another CA.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { tempDir } from './harness';

export interface TestCerts {
  dir: string;
  ca: string;
  server: { cert: string; key: string };
  alice: { cert: string; key: string };
  root: { cert: string; key: string };
  /** Signed by an untrusted CA. */
  mallory: { cert: string; key: string };
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

export function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** EC P-256 keys: generation takes milliseconds (RSA 2048 takes ~0.3 s each). */
function makeCa(dir: string, name: string): void {
  openssl(dir, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '1', '-subj', `/CN=${name}`]);
}

function makeCert(dir: string, name: string, cn: string, ca: string, extensions: string): { cert: string; key: string } {
  openssl(dir, ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`]);
  fs.writeFileSync(path.join(dir, `${name}.ext`), extensions);
  openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.crt`, '-days', '1', '-extfile', `${name}.ext`]);
  return { cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`) };
}

export function makeTestCerts(): TestCerts {
  const dir = tempDir('quorumkv-tls-');
  makeCa(dir, 'ca');
  makeCa(dir, 'evil-ca');
  const client = 'extendedKeyUsage=clientAuth\n';
  return {
    dir,
    ca: path.join(dir, 'ca.crt'),
    server: makeCert(dir, 'server', 'server', 'ca', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n'),
    alice: makeCert(dir, 'alice', 'alice', 'ca', client),
    root: makeCert(dir, 'root', 'root', 'ca', client),
    mallory: makeCert(dir, 'mallory', 'alice', 'evil-ca', client),
  };
}

export function removeTestCerts(c: TestCerts | undefined): void {
  if (c) fs.rmSync(c.dir, { recursive: true, force: true });
}
