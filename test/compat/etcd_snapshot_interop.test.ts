// Snapshot files between quorumkv and a real etcd 3.4 (etcd-server), both ways:
//  - `etcdctl snapshot save` from quorumkv, `etcdctl snapshot restore`, and a real etcd started on
//    the restored data dir serves the same keys, values, revisions, history and leases;
//  - `etcdctl snapshot save` from that etcd (after more writes, large values and a delete),
//    `quorumkv snapshot restore`, and a quorumkv member serves what etcd served.
// Also checked: the status etcdctl computes equals `quorumkv snapshot status` for both files.
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { SERVER_BIN, etcdctl, freePort, killGroup, requireEtcdctl, startServer, tempDir, trackProcess, type CmdResult, type ServerProcess } from '../integration/harness';

function hasEtcd(): boolean {
  return (process.env.PATH ?? '').split(':').some((d) => fs.existsSync(path.join(d, 'etcd')));
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<CmdResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env: { ...process.env, ...env }, timeout: 60_000, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as NodeJS.ErrnoException).code === 'number' ? (err as unknown as { code: number }).code : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

async function ok(endpoint: string, ...args: string[]): Promise<string> {
  const r = await etcdctl(endpoint, args);
  assert.equal(r.code, 0, `etcdctl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

interface Kv {
  key: string;
  value?: string;
  create_revision: number;
  mod_revision: number;
  version: number;
  lease?: number;
}

async function getAll(endpoint: string, rev?: number): Promise<{ revision: number; kvs: Kv[] }> {
  const out = JSON.parse(await ok(endpoint, 'get', '', '--from-key', '-w', 'json', ...(rev ? [`--rev=${rev}`] : [])));
  return { revision: out.header.revision, kvs: out.kvs ?? [] };
}

async function statusJson(file: string): Promise<{ etcdctl: unknown; quorumkv: unknown }> {
  const e = await run('etcdctl', ['snapshot', 'status', file, '-w', 'json'], { ETCDCTL_API: '3' });
  assert.equal(e.code, 0, e.stderr);
  const q = await run(process.execPath, [SERVER_BIN, 'snapshot', 'status', file, '-w', 'json']);
  assert.equal(q.code, 0, q.stderr);
  return { etcdctl: JSON.parse(e.stdout), quorumkv: JSON.parse(q.stdout) };
}

describe('snapshot files between quorumkv and a real etcd 3.4', function () {
  this.timeout(120_000);
  let qkv: ServerProcess | undefined;
  let restoredQkv: ServerProcess | undefined;
  let etcd: ChildProcess | undefined;
  after(async () => {
    await qkv?.stop();
    await restoredQkv?.stop();
    if (etcd) killGroup(etcd);
  });

  it('quorumkv → etcdctl snapshot save/restore → etcd → etcdctl snapshot save → quorumkv snapshot restore', async function () {
    requireEtcdctl(this);
    if (!hasEtcd()) {
      if (process.env.CI) throw new Error('etcd is required in CI (apt-get install etcd-server)');
      this.skip();
    }
    const dir = tempDir('quorumkv-interop-');
    qkv = await startServer();
    // History: 3 rounds over 40 keys, a deletion, a leased key, a compaction in the middle.
    for (let round = 0; round < 3; round++) {
      const lines = Array.from({ length: 40 }, (_, i) => `put io/${String(i).padStart(2, '0')} r${round}-${'x'.repeat(i * 7)}`);
      for (let b = 0; b < lines.length; b += 20) {
        const r = await etcdctl(qkv.endpoint, ['txn'], `\n${lines.slice(b, b + 20).join('\n')}\n\n\n`);
        assert.equal(r.code, 0, r.stderr);
      }
    }
    await ok(qkv.endpoint, 'del', 'io/05');
    const leaseId = (await ok(qkv.endpoint, 'lease', 'grant', '3600')).split(/\s+/)[1]!;
    await ok(qkv.endpoint, 'put', 'io/leased', 'v', `--lease=${leaseId}`);
    // Values of about a page and larger: leaves whose elements share overflow pages.
    for (let i = 0; i < 6; i++) await ok(qkv.endpoint, 'put', `io/big${i}`, `${i}`.repeat(2500 + 1100 * i));
    const compactAt = 4;
    await ok(qkv.endpoint, 'compact', String(compactAt));
    const fromQkv = await getAll(qkv.endpoint);
    const historyRev = fromQkv.revision - 30;
    const qkvHistory = await getAll(qkv.endpoint, historyRev);

    // quorumkv → etcd
    const file1 = path.join(dir, 'from-quorumkv.db');
    const save1 = await etcdctl(qkv.endpoint, ['snapshot', 'save', file1]);
    assert.equal(save1.code, 0, save1.stderr);
    const st1 = await statusJson(file1);
    assert.deepEqual(st1.quorumkv, st1.etcdctl);
    const etcdDir = path.join(dir, 'etcd-data');
    const restore1 = await run('etcdctl', ['snapshot', 'restore', file1, `--data-dir=${etcdDir}`], { ETCDCTL_API: '3' });
    assert.equal(restore1.code, 0, restore1.stderr);
    const port = await freePort();
    const peerPort = await freePort();
    const etcdEndpoint = `127.0.0.1:${port}`;
    etcd = spawn(
      'etcd',
      [`--data-dir=${etcdDir}`, `--listen-client-urls=http://${etcdEndpoint}`, `--advertise-client-urls=http://${etcdEndpoint}`, `--listen-peer-urls=http://127.0.0.1:${peerPort}`],
      { detached: true, stdio: 'ignore' },
    );
    trackProcess(etcd);
    const deadline = Date.now() + 20_000;
    while ((await etcdctl(etcdEndpoint, ['endpoint', 'health'])).code !== 0) {
      assert.ok(Date.now() < deadline, 'etcd did not start on the restored data dir');
      await new Promise((r) => setTimeout(r, 200));
    }
    const inEtcd = await getAll(etcdEndpoint);
    assert.equal(inEtcd.revision, fromQkv.revision);
    assert.deepEqual(inEtcd.kvs, fromQkv.kvs);
    assert.deepEqual((await getAll(etcdEndpoint, historyRev)).kvs, qkvHistory.kvs, 'history survives');
    const compacted = await etcdctl(etcdEndpoint, ['get', 'io/00', `--rev=${compactAt - 1}`]);
    assert.match(compacted.stderr, /required revision has been compacted/);
    assert.match(await ok(etcdEndpoint, 'lease', 'timetolive', leaseId, '--keys'), /attached keys\(\[io\/leased\]\)/);

    // etcd → quorumkv: more writes on etcd first (values larger than a bolt page, a delete).
    for (let i = 0; i < 5; i++) await ok(etcdEndpoint, 'put', `big/${i}`, `${i}`.repeat(6000 + i));
    await ok(etcdEndpoint, 'del', 'io/10');
    const fromEtcd = await getAll(etcdEndpoint);
    const etcdHistory = await getAll(etcdEndpoint, historyRev);
    const file2 = path.join(dir, 'from-etcd.db');
    const save2 = await etcdctl(etcdEndpoint, ['snapshot', 'save', file2]);
    assert.equal(save2.code, 0, save2.stderr);
    const st2 = await statusJson(file2);
    assert.deepEqual(st2.quorumkv, st2.etcdctl);
    const qDir = path.join(dir, 'quorumkv-restored');
    const restore2 = await run(process.execPath, [SERVER_BIN, 'snapshot', 'restore', file2, `--data-dir=${qDir}`, '--bump-revision=0']);
    assert.equal(restore2.code, 0, restore2.stderr);
    restoredQkv = await startServer({ dataDir: qDir });
    const back = await getAll(restoredQkv.endpoint);
    assert.equal(back.revision, fromEtcd.revision);
    assert.deepEqual(back.kvs, fromEtcd.kvs);
    assert.deepEqual((await getAll(restoredQkv.endpoint, historyRev)).kvs, etcdHistory.kvs, 'history survives');
    assert.match((await etcdctl(restoredQkv.endpoint, ['get', 'io/00', `--rev=${compactAt - 1}`])).stderr, /required revision has been compacted/);
    assert.match(await ok(restoredQkv.endpoint, 'lease', 'timetolive', leaseId, '--keys'), /attached keys\(\[io\/leased\]\)/);
    // A bare database (as `member/snap/db` in an etcd data dir: no SHA-256 after it) needs
    // --skip-hash-check, as with etcdctl.
    const raw = path.join(dir, 'raw.db');
    fs.writeFileSync(raw, fs.readFileSync(file2).subarray(0, fs.statSync(file2).size - 32));
    const refused = await run(process.execPath, [SERVER_BIN, 'snapshot', 'restore', raw, `--data-dir=${path.join(dir, 'raw-1')}`]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /snapshot missing hash but --skip-hash-check=false/);
    const rawOk = await run(process.execPath, [SERVER_BIN, 'snapshot', 'restore', raw, '--skip-hash-check', '--bump-revision=0', `--data-dir=${path.join(dir, 'raw-2')}`]);
    assert.equal(rawOk.code, 0, rawOk.stderr);
    assert.match(rawOk.stdout, new RegExp(`revision ${fromEtcd.revision},`));
    // and it takes writes at the next revision
    const put = JSON.parse(await ok(restoredQkv.endpoint, 'put', 'after', 'x', '-w', 'json'));
    assert.equal(put.header.revision, fromEtcd.revision + 1);
  });

  it('users and passwords survive both ways: bcrypt hashes, as etcd writes them (auth enabled in the files)', async function () {
    requireEtcdctl(this);
    if (!hasEtcd()) {
      if (process.env.CI) throw new Error('etcd is required in CI (apt-get install etcd-server)');
      this.skip();
    }
    const dir = tempDir('quorumkv-interop-auth-');
    const root = ['--user', 'root:rootpw'];
    const q = await startServer();
    let e: ChildProcess | undefined;
    let q2: ServerProcess | undefined;
    try {
      await ok(q.endpoint, 'user', 'add', 'root:rootpw');
      await ok(q.endpoint, 'auth', 'enable');
      await ok(q.endpoint, ...root, 'user', 'add', 'alice:alicepw');
      await ok(q.endpoint, ...root, 'put', 'k', 'from-quorumkv');
      const file1 = path.join(dir, 'q.db');
      assert.equal((await etcdctl(q.endpoint, [...root, 'snapshot', 'save', file1])).code, 0);
      const etcdDir = path.join(dir, 'etcd-data');
      const restore1 = await run('etcdctl', ['snapshot', 'restore', file1, `--data-dir=${etcdDir}`], { ETCDCTL_API: '3' });
      assert.equal(restore1.code, 0, restore1.stderr);
      const endpoint = `127.0.0.1:${await freePort()}`;
      e = spawn('etcd', [`--data-dir=${etcdDir}`, `--listen-client-urls=http://${endpoint}`, `--advertise-client-urls=http://${endpoint}`, `--listen-peer-urls=http://127.0.0.1:${await freePort()}`], {
        detached: true,
        stdio: 'ignore',
      });
      trackProcess(e);
      const deadline = Date.now() + 20_000;
      while ((await etcdctl(endpoint, [...root, 'endpoint', 'health'])).code !== 0) {
        assert.ok(Date.now() < deadline, 'etcd did not start on the restored data dir');
        await new Promise((r) => setTimeout(r, 200));
      }
      // etcd verifies the hashes quorumkv made.
      assert.equal(await ok(endpoint, '--user', 'alice:alicepw', 'user', 'get', 'alice'), 'User: alice\nRoles:\n');
      assert.match((await etcdctl(endpoint, ['--user', 'alice:wrong', 'user', 'get', 'alice'])).stderr, /authentication failed, invalid user ID or password/);
      // and quorumkv verifies the ones etcd makes.
      await ok(endpoint, ...root, 'user', 'add', 'bob:bobpw');
      const file2 = path.join(dir, 'e.db');
      assert.equal((await etcdctl(endpoint, [...root, 'snapshot', 'save', file2])).code, 0);
      const qDir = path.join(dir, 'q-restored');
      const restore2 = await run(process.execPath, [SERVER_BIN, 'snapshot', 'restore', file2, `--data-dir=${qDir}`, '--bump-revision=0']);
      assert.equal(restore2.code, 0, restore2.stderr);
      q2 = await startServer({ dataDir: qDir });
      assert.equal(await ok(q2.endpoint, '--user', 'bob:bobpw', 'user', 'get', 'bob'), 'User: bob\nRoles:\n');
      assert.equal(await ok(q2.endpoint, '--user', 'alice:alicepw', 'user', 'get', 'alice'), 'User: alice\nRoles:\n');
      assert.match((await etcdctl(q2.endpoint, ['--user', 'bob:wrong', 'user', 'get', 'bob'])).stderr, /authentication failed, invalid user ID or password/);
      assert.equal(await ok(q2.endpoint, ...root, 'get', 'k', '--print-value-only'), 'from-quorumkv\n');
    } finally {
      await q.stop();
      await q2?.stop();
      if (e) killGroup(e);
    }
  });
});
