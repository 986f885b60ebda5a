// The real etcdctl (v3) against a real quorumkv process: watch (as a long-running child process
// whose stdout we read), lease grant/put --lease/timetolive --keys/keep-alive --once/list/revoke,
// and the lock and elect commands (client-side recipes over KV, Lease and Watch).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { etcdctl, hasEtcdctl, startServer, type ServerProcess } from '../integration/harness';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A long-running etcdctl command (watch, elect): its output so far, and a kill that always runs. */
class Running {
  out = '';
  private readonly proc: ChildProcess;
  constructor(endpoint: string, args: string[]) {
    this.proc = spawn('etcdctl', [`--endpoints=${endpoint}`, '--dial-timeout=3s', ...args], {
      env: { ...process.env, ETCDCTL_API: '3' },
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc.stdout!.on('data', (d) => (this.out += d));
    this.proc.stderr!.on('data', (d) => (this.out += d));
  }
  async waitFor(re: RegExp, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!re.test(this.out)) {
      if (Date.now() > deadline) throw new Error(`etcdctl output never matched ${re}:\n${this.out}`);
      await sleep(20);
    }
  }
  kill(): void {
    if (this.proc.pid !== undefined && this.proc.exitCode === null && this.proc.signalCode === null) {
      try {
        process.kill(-this.proc.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
}

describe('etcdctl against quorumkv: watch, lease, lock, elect', function () {
  this.timeout(60_000);
  let srv: ServerProcess;
  const running: Running[] = [];
  const run = (args: string[]) => {
    const r = new Running(srv.endpoint, args);
    running.push(r);
    return r;
  };
  const ctl = (...args: string[]) => etcdctl(srv.endpoint, args);

  before(async function () {
    if (!hasEtcdctl()) this.skip();
    srv = await startServer();
  });
  afterEach(() => {
    for (const r of running.splice(0)) r.kill();
  });
  after(async () => {
    await srv?.stop();
  });

  it('watch a key prints later puts and deletes', async () => {
    const w = run(['watch', 'wkey']);
    await sleep(300); // the watch is created once etcdctl has connected
    assert.equal((await ctl('put', 'wkey', 'v1')).code, 0);
    assert.equal((await ctl('del', 'wkey')).code, 0);
    await w.waitFor(/DELETE\nwkey\n\n/);
    assert.equal(w.out, 'PUT\nwkey\nv1\nDELETE\nwkey\n\n'); // a delete prints an empty value line
  });

  it('watch --prefix --rev replays history; --prev-kv prints the previous value', async () => {
    const first = await ctl('put', 'pre/a', '1', '-w', 'json');
    const rev = JSON.parse(first.stdout).header.revision as number;
    await ctl('put', 'pre/b', '2');
    await ctl('put', 'pre/a', '3');
    await ctl('put', 'other', 'x');
    const w = run(['watch', '--prefix', 'pre/', `--rev=${rev}`, '--prev-kv']);
    await w.waitFor(/pre\/a\n3\n/);
    assert.equal(w.out, 'PUT\npre/a\n1\nPUT\npre/b\n2\nPUT\npre/a\n1\npre/a\n3\n');
  });

  it('lease grant, put --lease, timetolive --keys, keep-alive --once, list, revoke', async () => {
    const g = await ctl('lease', 'grant', '60');
    const m = /^lease ([0-9a-f]+) granted with TTL\(60s\)$/m.exec(g.stdout);
    assert.ok(m, g.stdout + g.stderr);
    const id = m[1];
    assert.equal((await ctl('put', '--lease', id, 'lk1', 'a')).stdout, 'OK\n');
    assert.equal((await ctl('put', `--lease=${id}`, 'lk2', 'b')).stdout, 'OK\n');
    const t = await ctl('lease', 'timetolive', '--keys', id);
    assert.match(t.stdout, new RegExp(`^lease ${id} granted with TTL\\(60s\\), remaining\\((59|60)s\\), attached keys\\(\\[lk1 lk2\\]\\)\\n$`));
    const ka = await ctl('lease', 'keep-alive', '--once', id);
    assert.equal(ka.stdout, `lease ${id} keepalived with TTL(60)\n`);
    const list = await ctl('lease', 'list');
    assert.match(list.stdout, new RegExp(`^found \\d+ leases\\n(.*\\n)*${id}\\n`));
    assert.equal((await ctl('lease', 'revoke', id)).stdout, `lease ${id} revoked\n`);
    assert.equal((await ctl('get', '--prefix', 'lk')).stdout, '');
    assert.equal((await ctl('lease', 'timetolive', id)).stdout, `lease ${id} already expired\n`);
    const bad = await ctl('put', '--lease=1234', 'lk3', 'c');
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /etcdserver: requested lease not found/);
  });

  it('a short lease expires on its own and takes its keys with it', async () => {
    const g = await ctl('lease', 'grant', '1'); // raised to the 2 s minimum
    const id = /lease ([0-9a-f]+) granted with TTL\(2s\)/.exec(g.stdout)![1];
    await ctl('put', '--lease', id, 'short', 'x');
    const w = run(['watch', 'short']);
    await w.waitFor(/^$/, 100).catch(() => undefined);
    const t0 = Date.now();
    await w.waitFor(/DELETE\nshort\n/, 6000);
    assert.ok(Date.now() - t0 < 4000);
    assert.equal((await ctl('get', 'short')).stdout, '');
  });

  it('lock runs the command while holding the lock', async () => {
    const r = await ctl('lock', 'mylock', '--', 'echo', 'locked');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'locked\n');
    // The lock is released afterwards: no key is left under the lock's prefix.
    assert.equal((await ctl('get', '--prefix', 'mylock')).stdout, '');
  });

  it('a second lock waits until the first holder lets go', async () => {
    const holder = run(['lock', 'queue']);
    await holder.waitFor(/^queue\/[0-9a-f]+\n/);
    const t0 = Date.now();
    const second = ctl('lock', 'queue', '--', 'echo', 'second');
    await sleep(500);
    holder.kill(); // its session lease is left to expire (60 s) unless revoked: revoke it
    const leaseHex = /queue\/([0-9a-f]+)/.exec(holder.out)![1];
    await ctl('lease', 'revoke', leaseHex);
    const r = await second;
    assert.equal(r.stdout, 'second\n');
    assert.ok(Date.now() - t0 >= 500);
  });

  it('elect prints the leader key and the proposal', async () => {
    const e = run(['elect', 'myelection', 'proposal']);
    await e.waitFor(/^myelection\/[0-9a-f]+\nproposal\n$/);
    const l = run(['elect', '-l', 'myelection']);
    await l.waitFor(/myelection\/[0-9a-f]+\nproposal\n/);
  });
});
