// Real multi-member quorumkv clusters on loopback for integration tests: start N member processes,
// find the leader, kill / pause / partition / restart members, add and remove members, and drive
// continuous writes while a fault happens (a Writer records every acknowledged put with its
// revision, so that a test can check afterwards that no acknowledged write was lost).
//
// Every process started here runs in its own process group and is killed (SIGKILL to the group) by
// stopAll(), by a failed start, and at process exit — a failing test never leaves members behind.
// Every wait is bounded.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { grpcDefinitions } from '../../src/proto';
import { SERVER_BIN, etcdctl, freePort, killGroup, tempDir, trackProcess } from './harness';

/** Short Raft timings so that elections (and so fault tests) take well under a second. */
export const FAST_TIMINGS = ['--heartbeat-interval=50', '--election-timeout=500'];
export const ELECTION_TIMEOUT_MS = 500;

const READY_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 5_000;
const RPC_DEADLINE_MS = 2_000;
/** Members re-read their failpoints file every 100 ms (src/util/failpoints.ts). */
const FAILPOINTS_SETTLE_MS = 250;


export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `probe` until it returns a value other than undefined, or throws after `timeoutMs`. */
export async function waitFor<T>(what: string | (() => string), timeoutMs: number, probe: () => Promise<T | undefined> | T | undefined, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'string' ? what : what()}${lastErr ? ` (last error: ${(lastErr as Error).message})` : ''}`);
    await sleep(everyMs);
  }
}

// ---------------------------------------------------------------------------------------------
// gRPC clients (raw @grpc/grpc-js, the etcd v3 protos of src/proto)

type Client = grpc.Client & Record<string, (...a: unknown[]) => unknown>;
const clients = new Map<string, Client>();

/** One cached client per endpoint and service; closed by closeClients(). */
export function grpcClient(endpoint: string, service: 'KV' | 'Maintenance' | 'Cluster'): Client {
  const key = `${service}@${endpoint}`;
  let c = clients.get(key);
  if (!c) {
    const Ctor = (grpcDefinitions().etcdserverpb as Record<string, unknown>)[service] as new (a: string, c: grpc.ChannelCredentials, o?: object) => Client;
    // Short reconnect backoff: a restarted member must be usable again quickly.
    c = new Ctor(endpoint, grpc.credentials.createInsecure(), { 'grpc.initial_reconnect_backoff_ms': 100, 'grpc.max_reconnect_backoff_ms': 500 });
    clients.set(key, c);
  }
  return c;
}

export function closeClients(): void {
  for (const c of clients.values()) c.close();
  clients.clear();
}

export function unary<T>(endpoint: string, service: 'KV' | 'Maintenance' | 'Cluster', method: string, req: object, deadlineMs = RPC_DEADLINE_MS): Promise<T> {
  const c = grpcClient(endpoint, service);
  return new Promise((resolve, reject) =>
    c[method]!(req, { deadline: Date.now() + deadlineMs }, (err: grpc.ServiceError | null, res: T) => (err ? reject(err) : resolve(res))),
  );
}

export interface KeyValue {
  key: string;
  value: string;
  mod_revision: number;
  create_revision: number;
  version: number;
}

interface RangeResponsePb {
  header: { revision: string };
  kvs: { key: Buffer; value: Buffer; mod_revision: string; create_revision: string; version: string }[];
  more: boolean;
  count: string;
}

export async function put(endpoint: string, key: string, value: string, deadlineMs = RPC_DEADLINE_MS): Promise<number> {
  const r = await unary<{ header: { revision: string } }>(endpoint, 'KV', 'Put', { key: Buffer.from(key), value: Buffer.from(value) }, deadlineMs);
  return Number(r.header.revision);
}

/** Every key under `prefix` on one member; serializable reads only this member's store. */
export async function rangePrefix(endpoint: string, prefix: string, opts: { serializable?: boolean; deadlineMs?: number } = {}): Promise<{ revision: number; kvs: KeyValue[] }> {
  const key = Buffer.from(prefix);
  const end = Buffer.from(prefix);
  end[end.length - 1]!++;
  const r = await unary<RangeResponsePb>(endpoint, 'KV', 'Range', { key, range_end: end, serializable: opts.serializable ?? false }, opts.deadlineMs ?? 10_000);
  return {
    revision: Number(r.header.revision),
    kvs: r.kvs.map((kv) => ({
      key: kv.key.toString(),
      value: kv.value.toString(),
      mod_revision: Number(kv.mod_revision),
      create_revision: Number(kv.create_revision),
      version: Number(kv.version),
    })),
  };
}

export async function get(endpoint: string, key: string, opts: { serializable?: boolean; deadlineMs?: number } = {}): Promise<KeyValue | undefined> {
  const r = await unary<RangeResponsePb>(endpoint, 'KV', 'Range', { key: Buffer.from(key), serializable: opts.serializable ?? false }, opts.deadlineMs ?? RPC_DEADLINE_MS);
  const kv = r.kvs[0];
  return kv && { key: kv.key.toString(), value: kv.value.toString(), mod_revision: Number(kv.mod_revision), create_revision: Number(kv.create_revision), version: Number(kv.version) };
}

export interface StatusPb {
  header: { member_id: string; revision: string; raft_term: string };
  leader: string;
  raftIndex: string;
  raftTerm: string;
  raftAppliedIndex: string;
  errors: string[];
  isLearner: boolean;
}

export function status(endpoint: string, deadlineMs = 1000): Promise<StatusPb> {
  return unary<StatusPb>(endpoint, 'Maintenance', 'Status', {}, deadlineMs);
}

export async function hashKV(endpoint: string, revision = 0): Promise<{ hash: number; revision: number; compactRevision: number }> {
  const r = await unary<{ hash: number; header: { revision: string }; compact_revision: string }>(endpoint, 'Maintenance', 'HashKV', { revision }, 10_000);
  return { hash: r.hash, revision: Number(r.header.revision), compactRevision: Number(r.compact_revision) };
}

// ---------------------------------------------------------------------------------------------
// Members and clusters

export interface ClusterMember {
  readonly name: string;
  /** Member ID in hex, as `etcdctl member list` prints it. */
  id: string;
  readonly clientUrl: string;
  /** host:port for etcdctl and gRPC clients. */
  readonly endpoint: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  readonly failpointsFile: string;
  proc: ChildProcess;
  /** Everything the current process wrote (stdout + stderr); earlier incarnations in `history`. */
  output(): string;
  readonly history: string[];
  running(): boolean;
  paused: boolean;
  /** Sends `signal` (default SIGKILL) to the member's process group and waits for it to exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the member again on the same data dir and ports; resolves once it serves clients. */
  restart(): Promise<void>;
  /** SIGSTOP: the process freezes (a long GC pause, a hung VM). */
  pause(): void;
  resume(): void;
  /** Drops all peer traffic of this member (or only to/from `peers`), via the failpoints file;
   *  resolves once the member has certainly re-read the file (it polls it every 100 ms). */
  isolate(peers?: ClusterMember[]): Promise<void>;
  heal(): Promise<void>;
}

/** Where member `index` (1-based) runs, when not on loopback with free ports (e.g. netns.ts). */
export interface MemberPlacement {
  host: string;
  clientPort: number;
  peerPort: number;
  /** Command prefix the member runs under (e.g. `ip netns exec <ns>`); it must exec the member. */
  command?: string[];
}

export interface ClusterOptions {
  size: number;
  placement?: (index: number) => MemberPlacement;
  /** Extra server flags for every member (after the defaults, so they win). */
  args?: string[];
  env?: NodeJS.ProcessEnv;
  /** Default FAST_TIMINGS. */
  timings?: string[];
}

export interface Cluster {
  readonly members: ClusterMember[];
  running(): ClusterMember[];
  /** The member that is leader by its own account and by a majority of the running members'. */
  leader(): Promise<ClusterMember | undefined>;
  waitForLeader(timeoutMs?: number, opts?: { among?: ClusterMember[] }): Promise<ClusterMember>;
  /** `etcdctl member add` (as a learner if asked), then starts the new member with
   *  --initial-cluster-state=existing and the --initial-cluster etcdctl printed. */
  addMember(opts?: { learner?: boolean; name?: string }): Promise<ClusterMember>;
  /** `etcdctl member remove`, then stops the process. */
  removeMember(m: ClusterMember): Promise<void>;
  /** Stops a member's process and drops it from `members` (after a removal done by the test). */
  forget(m: ClusterMember): Promise<void>;
  /** Waits until every given member (default: running ones) applied at least `revision`. */
  waitForRevision(revision: number, timeoutMs?: number, members?: ClusterMember[]): Promise<void>;
  stopAll(): Promise<void>;
  /** Member IDs by hex, refreshed from `Cluster.MemberList`. */
  refreshIds(): Promise<void>;
  /** Waits until MemberList shows the client URL of every given member (a member publishes its
   *  name and client URLs through the log after it starts; until then `--cluster` commands of
   *  etcdctl do not see it). */
  waitForPublished(members?: ClusterMember[], timeoutMs?: number): Promise<void>;
}

interface MemberSpec {
  name: string;
  host: string;
  command: string[];
  clientPort: number;
  peerPort: number;
  dataDir: string;
  initialCluster: string;
  state: 'new' | 'existing';
}

function spawnMember(spec: MemberSpec, args: string[], env: NodeJS.ProcessEnv, failpointsFile: string): ChildProcess {
  const url = `http://${spec.host}:${spec.clientPort}`;
  const peer = `http://${spec.host}:${spec.peerPort}`;
  const argv = [
    ...spec.command,
    process.execPath,
    SERVER_BIN,
    `--name=${spec.name}`,
    `--data-dir=${spec.dataDir}`,
    `--listen-client-urls=${url}`,
    `--advertise-client-urls=${url}`,
    `--listen-peer-urls=${peer}`,
    `--initial-advertise-peer-urls=${peer}`,
    `--initial-cluster=${spec.initialCluster}`,
    `--initial-cluster-state=${spec.state}`,
    ...args,
  ];
  const proc = spawn(argv[0]!, argv.slice(1), {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env, QUORUMKV_FAILPOINTS: failpointsFile },
  });
  trackProcess(proc);
  return proc;
}

async function waitReady(proc: ChildProcess, out: () => string, name: string, timeoutMs = READY_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!out().includes('ready to serve client requests')) {
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`member ${name} exited early (${proc.exitCode ?? proc.signalCode}):\n${out().slice(-4000)}`);
    if (Date.now() > deadline) {
      killGroup(proc);
      throw new Error(`member ${name} not ready after ${timeoutMs} ms:\n${out().slice(-4000)}`);
    }
    await sleep(25);
  }
}

function makeMember(spec: MemberSpec, args: string[], env: NodeJS.ProcessEnv, dir: string): ClusterMember {
  const failpointsFile = path.join(dir, `${spec.name}.failpoints.json`);
  fs.writeFileSync(failpointsFile, '{}');
  let out = '';
  const attach = (p: ChildProcess) => {
    out = '';
    p.stdout!.on('data', (d) => (out += d));
    p.stderr!.on('data', (d) => (out += d));
  };
  const m: ClusterMember = {
    name: spec.name,
    id: '',
    clientUrl: `http://${spec.host}:${spec.clientPort}`,
    endpoint: `${spec.host}:${spec.clientPort}`,
    peerUrl: `http://${spec.host}:${spec.peerPort}`,
    dataDir: spec.dataDir,
    failpointsFile,
    proc: spawnMember(spec, args, env, failpointsFile),
    history: [],
    paused: false,
    output: () => out,
    running: () => m.proc.exitCode === null && m.proc.signalCode === null,
    async stop(signal: NodeJS.Signals = 'SIGKILL') {
      const p = m.proc;
      if (!m.running()) return;
      const exited = new Promise<void>((r) => p.once('exit', () => r()));
      if (m.paused) killGroup(p, 'SIGCONT');
      m.paused = false;
      killGroup(p, signal);
      const t = setTimeout(() => killGroup(p), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(t);
    },
    async restart() {
      await m.stop();
      m.history.push(out);
      // A restart never re-bootstraps: the data dir decides (state only matters for a fresh one).
      m.proc = spawnMember(spec, args, env, failpointsFile);
      attach(m.proc);
      await waitReady(m.proc, () => out, spec.name);
    },
    pause() {
      killGroup(m.proc, 'SIGSTOP');
      m.paused = true;
    },
    resume() {
      killGroup(m.proc, 'SIGCONT');
      m.paused = false;
    },
    async isolate(peers?: ClusterMember[]) {
      const list = peers ? peers.map((p) => p.id) : ['*'];
      fs.writeFileSync(failpointsFile, JSON.stringify({ dropPeerTraffic: list }));
      await sleep(FAILPOINTS_SETTLE_MS);
    },
    async heal() {
      fs.writeFileSync(failpointsFile, '{}');
      await sleep(FAILPOINTS_SETTLE_MS);
    },
  };
  attach(m.proc);
  return m;
}

/** Ports handed out by this process: freePort() binds and releases, so two calls can return the
 *  same port; never give one out twice. */
const portsGiven = new Set<number>();
async function uniquePort(): Promise<number> {
  for (;;) {
    const p = await freePort();
    if (!portsGiven.has(p)) {
      portsGiven.add(p);
      return p;
    }
  }
}

/** Attempts at starting a cluster when a port was taken by someone else in the meantime. */
const START_ATTEMPTS_MAX = 3;

/** Starts `size` members of a new cluster and waits until they elected a leader. */
export async function startCluster(opts: ClusterOptions): Promise<Cluster> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startClusterOnce(opts);
    } catch (err) {
      if (attempt >= START_ATTEMPTS_MAX || !String((err as Error).message).includes('EADDRINUSE')) throw err;
    }
  }
}

async function startClusterOnce(opts: ClusterOptions): Promise<Cluster> {
  const dir = tempDir('quorumkv-cluster-');
  const args = [...(opts.timings ?? FAST_TIMINGS), ...(opts.args ?? [])];
  const env = opts.env ?? {};
  const specs: MemberSpec[] = [];
  const place = async (i: number): Promise<Required<MemberPlacement>> => {
    if (opts.placement) return { command: [], ...opts.placement(i) };
    return { host: '127.0.0.1', clientPort: await uniquePort(), peerPort: await uniquePort(), command: [] };
  };
  for (let i = 1; i <= opts.size; i++) {
    specs.push({ name: `n${i}`, ...(await place(i)), dataDir: path.join(dir, `n${i}.etcd`), initialCluster: '', state: 'new' });
  }
  const initialCluster = specs.map((s) => `${s.name}=http://${s.host}:${s.peerPort}`).join(',');
  for (const s of specs) s.initialCluster = initialCluster;
  const members: ClusterMember[] = specs.map((s) => makeMember(s, args, env, dir));
  let nextName = opts.size + 1;

  const cluster: Cluster = {
    members,
    running: () => members.filter((m) => m.running() && !m.paused),

    async leader() {
      const up = cluster.running();
      const views = await Promise.all(up.map((m) => status(m.endpoint).then((s) => ({ m, s }), () => undefined)));
      const votes = new Map<string, number>();
      for (const v of views) if (v && v.s.leader !== '0') votes.set(v.s.leader, (votes.get(v.s.leader) ?? 0) + 1);
      for (const v of views) {
        if (!v || v.s.leader !== v.s.header.member_id) continue;
        // The leader by its own account, seen as leader by a majority of those that answered (an
        // isolated old leader believes in itself until check-quorum makes it step down).
        if ((votes.get(v.s.leader) ?? 0) * 2 > views.filter(Boolean).length) return v.m;
      }
      return undefined;
    },

    waitForLeader(timeoutMs = 10_000, o = {}) {
      return waitFor('a leader', timeoutMs, async () => {
        const l = await cluster.leader();
        return l && (!o.among || o.among.includes(l)) ? l : undefined;
      });
    },

    async refreshIds() {
      const ep = cluster.running().map((m) => m.endpoint);
      let lastErr: unknown;
      for (const e of ep) {
        try {
          const r = await unary<{ members: { ID: string; peerURLs: string[] }[] }>(e, 'Cluster', 'MemberList', {});
          for (const pm of r.members) {
            const m = members.find((x) => pm.peerURLs.includes(x.peerUrl));
            if (m) m.id = BigInt(pm.ID).toString(16);
          }
          return;
        } catch (err) {
          lastErr = err;
        }
      }
      throw new Error(`MemberList failed on every member: ${String(lastErr)}`);
    },

    async waitForPublished(which = cluster.running(), timeoutMs = 10_000) {
      await waitFor(`${which.map((m) => m.name).join(',')} to publish their client URLs`, timeoutMs, async () => {
        const l = await cluster.leader();
        if (!l) return undefined;
        const r = await unary<{ members: { peerURLs: string[]; clientURLs: string[] }[] }>(l.endpoint, 'Cluster', 'MemberList', {});
        const ok = which.every((m) => r.members.some((pm) => pm.peerURLs.includes(m.peerUrl) && pm.clientURLs.includes(m.clientUrl)));
        return ok ? true : undefined;
      }, 100);
    },

    async addMember(o = {}) {
      const index = nextName++;
      const name = o.name ?? `n${index}`;
      const spec: MemberSpec = { name, ...(await place(index)), dataDir: path.join(dir, `${name}.etcd`), initialCluster: '', state: 'existing' };
      const peerUrl = `http://${spec.host}:${spec.peerPort}`;
      const leader = await cluster.waitForLeader();
      const r = await etcdctl(leader.endpoint, ['member', 'add', name, `--peer-urls=${peerUrl}`, ...(o.learner ? ['--learner'] : [])]);
      if (r.code !== 0) throw new Error(`etcdctl member add failed: ${r.stderr}${r.stdout}`);
      if (process.env.QUORUMKV_TEST_DEBUG) console.log(r.stdout);
      const ic = /ETCD_INITIAL_CLUSTER="([^"]*)"/.exec(r.stdout);
      if (!ic) throw new Error(`etcdctl member add printed no ETCD_INITIAL_CLUSTER:\n${r.stdout}`);
      spec.initialCluster = ic[1]!;
      // etcdctl prints the ID with %16x: space-padded to 16 characters.
      const idm = /Member\s+([0-9a-f]+) added/.exec(r.stdout);
      if (!idm) throw new Error(`etcdctl member add printed no member ID:\n${r.stdout}`);
      const m = makeMember(spec, args, env, dir);
      m.id = idm[1]!;
      members.push(m);
      await waitReady(m.proc, m.output, name);
      await cluster.waitForPublished([m]);
      return m;
    },

    async removeMember(m) {
      const leader = await cluster.waitForLeader();
      const r = await etcdctl(leader.endpoint, ['member', 'remove', m.id]);
      if (r.code !== 0) throw new Error(`etcdctl member remove ${m.id} failed: ${r.stderr}${r.stdout}`);
      await cluster.forget(m);
    },

    async forget(m) {
      await m.stop();
      const i = members.indexOf(m);
      if (i >= 0) members.splice(i, 1);
    },

    async waitForRevision(revision, timeoutMs = 20_000, which) {
      for (const m of which ?? cluster.running()) {
        await waitFor(`${m.name} to apply revision ${revision}`, timeoutMs, async () => {
          const s = await status(m.endpoint);
          return Number(s.header.revision) >= revision ? true : undefined;
        });
      }
    },

    async stopAll() {
      closeClients();
      await Promise.all(members.map((m) => m.stop()));
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };

  try {
    await Promise.all(members.map((m) => waitReady(m.proc, m.output, m.name)));
    await cluster.waitForLeader(15_000);
    await cluster.refreshIds();
    await cluster.waitForPublished();
  } catch (err) {
    await cluster.stopAll();
    throw err;
  }
  return cluster;
}

// ---------------------------------------------------------------------------------------------
// Continuous writes during faults

export interface AckedPut {
  key: string;
  value: string;
  revision: number;
  endpoint: string;
  /** Date.now() when the acknowledgement arrived. */
  atMs: number;
}

const RETRYABLE = new Set([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED, grpc.status.CANCELLED, grpc.status.UNKNOWN, grpc.status.INTERNAL]);

/**
 * `concurrency` clients writing unique keys round-robin over `endpoints()`. A put that fails is
 * never retried under the same key (it may still commit later: its outcome is unknown); the
 * writer moves on to the next endpoint with a fresh key. Only acknowledged puts are recorded.
 */
export class Writer {
  readonly acked: AckedPut[] = [];
  /** Failed puts by gRPC code and message (their outcome is unknown: they may still commit). */
  readonly errors = new Map<string, number>();
  /** Failures other than unavailable / deadline exceeded / cancelled. */
  readonly unexpected: string[] = [];
  attempts = 0;
  private stopped = false;
  private loops: Promise<void>[] = [];
  private seq = 0;

  constructor(
    private readonly endpoints: () => string[],
    private readonly prefix = 'w/',
    private readonly concurrency = 4,
    private readonly deadlineMs = 1500,
  ) {}

  start(): this {
    for (let c = 0; c < this.concurrency; c++) this.loops.push(this.loop(c));
    return this;
  }

  private async loop(c: number): Promise<void> {
    let turn = c;
    while (!this.stopped) {
      const eps = this.endpoints();
      if (eps.length === 0) {
        await sleep(50);
        continue;
      }
      const endpoint = eps[turn++ % eps.length]!;
      const key = `${this.prefix}${String(this.seq++).padStart(7, '0')}`;
      const value = `v-${key}-${c}`;
      this.attempts++;
      try {
        const revision = await put(endpoint, key, value, this.deadlineMs);
        this.acked.push({ key, value, revision, endpoint, atMs: Date.now() });
      } catch (err) {
        const code = (err as grpc.ServiceError).code;
        const name = `${grpc.status[code] ?? code}: ${(err as Error).message.slice(0, 80)}`;
        this.errors.set(name, (this.errors.get(name) ?? 0) + 1);
        // Anything else (a bad request, a bug) is kept for the test to look at; the loop goes on,
        // so that one odd error does not turn into an unhandled rejection.
        if (!RETRYABLE.has(code)) this.unexpected.push(name);
        await sleep(20);
      }
    }
  }

  /** Resolves once at least `n` more puts were acknowledged (bounded). */
  async waitForAcks(n: number, timeoutMs = 10_000): Promise<void> {
    const target = this.acked.length + n;
    await waitFor(() => `${n} acknowledged puts (have ${this.acked.length - (target - n)}; errors ${JSON.stringify([...this.errors])})`, timeoutMs, () => (this.acked.length >= target ? true : undefined), 20);
  }

  /** Stops the clients; fails if any put failed in an unexpected way. */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
    if (this.unexpected.length > 0) throw new Error(`unexpected put failures: ${[...new Set(this.unexpected)].join('; ')}`);
  }

  maxRevision(): number {
    return this.acked.reduce((m, a) => Math.max(m, a.revision), 0);
  }
}

/**
 * Kills a follower of `cluster` (SIGKILL) after a first put ('early' = 'before the kill') has
 * reached every member, then puts keys big/000000.. (`value(key, i)`, `count` of them, 16 clients)
 * to the leader: a restart of that follower must catch up past what the leader keeps behind its
 * snapshot. Returns the leader, the killed follower and the other member.
 */
export async function killFollowerBehind(
  cluster: Cluster,
  count: number,
  value: (key: string, i: number) => string,
): Promise<{ leader: ClusterMember; follower: ClusterMember; other: ClusterMember }> {
  const leader = await cluster.waitForLeader();
  const follower = cluster.members.find((m) => m !== leader)!;
  const other = cluster.members.find((m) => m !== leader && m !== follower)!;
  await put(leader.endpoint, 'early', 'before the kill');
  await cluster.waitForRevision(2);
  await follower.stop('SIGKILL');
  const t0 = Date.now();
  let next = 0;
  const client = async (): Promise<void> => {
    for (let i = next++; i < count; i = next++) {
      const key = `big/${String(i).padStart(6, '0')}`;
      await put(leader.endpoint, key, value(key, i), 10_000);
    }
  };
  await Promise.all(Array.from({ length: 16 }, client));
  console.log(`      loaded ${count} keys in ${Date.now() - t0} ms`);
  return { leader, follower, other };
}

/** What a test started, stopped after it (on failure too): the writer first (its loops end and
 *  its failure, if any, is logged), then every member of the cluster. */
export async function stopWriterAndCluster(w: Writer | undefined, c: Cluster | undefined): Promise<void> {
  await w?.stop().catch((err: unknown) => console.log(`      writer: ${String(err)}`));
  await c?.stopAll();
}

/**
 * The cluster agrees, and lost nothing: every member in `members` has applied the highest
 * acknowledged revision, holds every acknowledged put (same value, mod_revision = the revision
 * its put was acknowledged with), all members hold identical key-values under `prefix`, and
 * HashKV at a common revision is the same on all of them. Returns a short summary.
 */
export async function checkAgreement(cluster: Cluster, members: ClusterMember[], acked: AckedPut[], prefix = 'w/'): Promise<string> {
  const maxRev = acked.reduce((m, a) => Math.max(m, a.revision), 0);
  await cluster.waitForRevision(maxRev, 30_000, members);
  // Wait until the members' revisions are equal (writes may still be in flight from timed-out puts).
  const rev = await waitFor('members at the same revision', 15_000, async () => {
    const revs = await Promise.all(members.map(async (m) => Number((await status(m.endpoint)).header.revision)));
    return revs.every((r) => r === revs[0]) ? revs[0] : undefined;
  });
  const views = await Promise.all(members.map((m) => rangePrefix(m.endpoint, prefix, { serializable: true })));
  const byKey = views.map((v) => new Map(v.kvs.map((kv) => [kv.key, kv])));
  for (const [i, m] of members.entries()) {
    for (const a of acked) {
      const kv = byKey[i]!.get(a.key);
      if (!kv) throw new Error(`${m.name}: acknowledged put ${a.key} (revision ${a.revision}, via ${a.endpoint}) is missing`);
      if (kv.value !== a.value || kv.mod_revision !== a.revision) {
        throw new Error(`${m.name}: acknowledged put ${a.key}@${a.revision} reads back as ${kv.value}@${kv.mod_revision}`);
      }
    }
  }
  const canon = JSON.stringify(views[0]!.kvs);
  for (const [i, v] of views.entries()) {
    if (JSON.stringify(v.kvs) !== canon) throw new Error(`${members[i]!.name} differs from ${members[0]!.name} under ${prefix}: ${v.kvs.length} vs ${views[0]!.kvs.length} keys`);
  }
  const hashes = await Promise.all(members.map((m) => hashKV(m.endpoint, rev)));
  for (const [i, h] of hashes.entries()) {
    if (h.hash !== hashes[0]!.hash) throw new Error(`HashKV at revision ${rev}: ${members[i]!.name}=${h.hash} but ${members[0]!.name}=${hashes[0]!.hash}`);
  }
  return `${acked.length} acked puts on ${members.length} members, revision ${rev}, ${views[0]!.kvs.length} keys, hash ${hashes[0]!.hash}`;
}
