// Starts real quorumkv server processes on loopback for integration tests, and makes sure every
// process a test starts is killed (its whole process group) whether the test passes or fails.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
export const SERVER_BIN = path.join(REPO_ROOT, 'dist', 'src', 'cli', 'quorumkv.js');

const live = new Set<ChildProcess>();

/** Signals a test process's whole process group (processes are spawned detached). */
export function killGroup(p: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): void {
  if (p.pid === undefined || p.exitCode !== null || p.signalCode !== null) return;
  try {
    process.kill(-p.pid, signal);
  } catch {
    /* already gone */
  }
}

/** Makes sure `p` is killed when the test process exits, however it exits. */
export function trackProcess(p: ChildProcess): void {
  live.add(p);
  p.on('exit', () => live.delete(p));
}

process.on('exit', () => {
  for (const p of live) {
    killGroup(p, 'SIGCONT'); // a SIGSTOPped member must be able to die
    killGroup(p);
  }
});

/** A free loopback port (bound then released; good enough on a test machine). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export function tempDir(prefix = 'quorumkv-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export interface ServerProcess {
  readonly endpoint: string; // host:port
  readonly url: string; // http://host:port
  /** The port of its --listen-peer-urls (127.0.0.1). */
  readonly peerPort: number;
  readonly dataDir: string;
  readonly proc: ChildProcess;
  readonly output: () => string;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export interface StartOptions {
  args?: string[];
  dataDir?: string;
  readyTimeoutMs?: number;
  /** Extra environment variables (e.g. QUORUMKV_FAILPOINTS). */
  env?: NodeJS.ProcessEnv;
}

export async function startServer(opts: StartOptions = {}): Promise<ServerProcess> {
  const port = await freePort();
  const peerPort = await freePort();
  const dataDir = opts.dataDir ?? tempDir();
  const url = `http://127.0.0.1:${port}`;
  const args = [
    SERVER_BIN,
    `--listen-client-urls=${url}`,
    `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
    `--data-dir=${dataDir}`,
    ...(opts.args ?? []),
  ];
  const proc = spawn(process.execPath, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
  trackProcess(proc);
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<void>((resolve) => proc.on('exit', () => resolve()));
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 15_000);
  while (!out.includes('ready to serve client requests')) {
    if (proc.exitCode !== null) throw new Error(`server exited early (${proc.exitCode}):\n${out}`);
    if (Date.now() > deadline) {
      killGroup(proc);
      throw new Error(`server not ready in time:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    endpoint: `127.0.0.1:${port}`,
    url,
    peerPort,
    dataDir,
    proc,
    output: () => out,
    stop: async (signal: NodeJS.Signals = 'SIGKILL') => {
      killGroup(proc, signal);
      const t = setTimeout(() => killGroup(proc), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** Starts a server process (quorumkv or etcd: both print "ready to serve client requests") in its
 *  own process group, tracked for cleanup; resolves once it is ready, else kills it and throws
 *  with what it printed. For scripts that compare quorumkv with etcd. */
export async function spawnMember(cmd: string, args: string[], what: string, timeoutMs = 20_000): Promise<{ proc: ChildProcess; output: () => string }> {
  const proc = spawn(cmd, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  trackProcess(proc);
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const deadline = Date.now() + timeoutMs;
  while (!out.includes('ready to serve client requests')) {
    if (proc.exitCode !== null || Date.now() > deadline) {
      killGroup(proc);
      throw new Error(`${what} did not start:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { proc, output: () => out };
}

export interface CmdResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the real etcdctl (v3 API) against `endpoint`, with a hard timeout (after which it is
 *  killed and what it printed so far is returned, e.g. for a watch). */
export function etcdctl(endpoint: string, args: string[], input?: string | Buffer, timeoutMs = 20_000): Promise<CmdResult> {
  return new Promise((resolve) => {
    const child = execFile(
      'etcdctl',
      [`--endpoints=${endpoint}`, '--dial-timeout=3s', '--command-timeout=10s', ...args],
      { env: { ...process.env, ETCDCTL_API: '3' }, timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024, encoding: 'buffer' },
      (err, stdout, stderr) => {
        const code = err ? (typeof (err as NodeJS.ErrnoException).code === 'number' ? ((err as unknown as { code: number }).code) : 1) : 0;
        resolve({ code, stdout: stdout.toString('utf8'), stderr: stderr.toString('utf8') });
      },
    );
    if (input !== undefined) child.stdin!.end(input);
    else child.stdin!.end();
  });
}

/** For suites that drive the real etcdctl: skip them where it is missing, but never in CI. */
export function requireEtcdctl(ctx: Mocha.Context): void {
  if (hasEtcdctl()) return;
  if (process.env.CI) throw new Error('etcdctl is required in CI (apt-get install etcd-client)');
  ctx.skip();
}

export function hasEtcdctl(): boolean {
  return (process.env.PATH ?? '').split(':').some((d) => fs.existsSync(path.join(d, 'etcdctl')));
}
