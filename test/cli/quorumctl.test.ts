// quorumctl, the built CLI (dist/src/cli/quorumctl.js), against a real quorumkv process: etcdctl's
// commands and simple output, exit codes (0 ok, 1 error with etcd's message, 2 usage), the first
// reachable of several endpoints, watch and keep-alive until SIGINT, and a snapshot saved with a
// verified SHA-256, restored, and served again by a member started on the restored data dir.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { REPO_ROOT, freePort, startServer, tempDir, type ServerProcess } from '../integration/harness';
import { ProgressBar, formatBytes } from '../../src/cli/progress';
import { prefixEnd } from '../../src/cli/quorumctl/kv';
import { closeClients, put } from '../integration/cluster_harness';

const CTL_BIN = path.join(REPO_ROOT, 'dist', 'src', 'cli', 'quorumctl.js');

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function ctl(endpoints: string, args: string[], input?: string): Promise<Result> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [CTL_BIN, `--endpoints=${endpoints}`, '--dial-timeout=1s', ...args], { timeout: 20_000, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as unknown as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
    child.stdin!.end(input ?? '');
  });
}

/** Starts a long-running command (watch, keep-alive); resolves with its output once `until`
 *  matches it, then interrupts it and checks it exits 0. */
async function runUntil(endpoint: string, args: string[], until: RegExp, meanwhile: () => Promise<void>): Promise<string> {
  const child = spawn(process.execPath, [CTL_BIN, `--endpoints=${endpoint}`, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    await new Promise((r) => setTimeout(r, 700)); // the stream is set up
    await meanwhile();
    const deadline = Date.now() + 10_000;
    while (!until.test(out)) {
      if (Date.now() > deadline) throw new Error(`quorumctl ${args.join(' ')} never printed ${until}: ${out}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill('SIGINT');
    assert.equal(await exited, 0, `exit code after SIGINT; output: ${out}`);
    return out;
  } finally {
    child.kill('SIGKILL');
  }
}

describe('quorumctl against a real member', function () {
  this.timeout(60_000);
  let srv: ServerProcess;
  let ep: string;

  before(async () => {
    srv = await startServer();
    ep = srv.endpoint;
  });
  after(async () => {
    closeClients();
    if (srv) await srv.stop();
  });

  it('put / get / del, with --prefix, stdin values and -w json', async () => {
    assert.deepEqual(await ctl(ep, ['put', 'app/a', '1']), { code: 0, stdout: 'OK\n', stderr: '' });
    assert.equal((await ctl(ep, ['put', 'app/b'], 'from stdin')).stdout, 'OK\n');
    assert.equal((await ctl(ep, ['put', 'other', 'x'])).code, 0);
    assert.equal((await ctl(ep, ['get', 'app/a'])).stdout, 'app/a\n1\n');
    assert.equal((await ctl(ep, ['get', 'app/', '--prefix'])).stdout, 'app/a\n1\napp/b\nfrom stdin\n');
    assert.equal((await ctl(ep, ['get', 'app/', '--prefix', '--keys-only'])).stdout, 'app/a\n\napp/b\n\n', 'as etcdctl: an empty line where the value would be');
    const json = JSON.parse((await ctl(ep, ['get', 'app/a', '-w', 'json'])).stdout);
    assert.equal(Buffer.from(json.kvs[0].key, 'base64').toString(), 'app/a');
    assert.equal(Buffer.from(json.kvs[0].value, 'base64').toString(), '1');
    assert.equal(json.count, 1);
    assert.ok(json.header.revision >= 4);
    assert.equal((await ctl(ep, ['get', 'nothing-here'])).stdout, '');
    assert.equal((await ctl(ep, ['del', 'app/', '--prefix'])).stdout, '2\n');
    assert.equal((await ctl(ep, ['get', 'app/', '--prefix'])).stdout, '');
  });

  it('get --rev reads the past; errors are etcd\'s messages with exit code 1; bad usage exits 2', async () => {
    await ctl(ep, ['put', 'hist', 'v1']);
    const rev = JSON.parse((await ctl(ep, ['get', 'hist', '-w', 'json'])).stdout).header.revision as number;
    await ctl(ep, ['put', 'hist', 'v2']);
    assert.equal((await ctl(ep, ['get', 'hist', '--rev', String(rev)])).stdout, 'hist\nv1\n');
    const future = await ctl(ep, ['get', 'hist', `--rev=${rev + 1000}`]);
    assert.equal(future.code, 1);
    assert.equal(future.stderr, 'Error: etcdserver: mvcc: required revision is a future revision\n');
    const empty = await ctl(ep, ['put', '', 'v']);
    assert.equal(empty.code, 1);
    assert.equal(empty.stderr, 'Error: etcdserver: key is not provided\n');
    assert.equal((await ctl(ep, ['frobnicate'])).code, 2);
    assert.equal((await ctl(ep, ['get', 'k', '--no-such-flag'])).code, 2);
  });

  it('--endpoints: the first reachable one is used; none reachable is an error', async () => {
    const dead = `127.0.0.1:${await freePort()}`;
    assert.equal((await ctl(`${dead},${ep}`, ['get', 'hist'])).stdout, 'hist\nv2\n');
    const none = await ctl(dead, ['get', 'hist']);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /^Error: no endpoint is reachable/);
  });

  it('watch prints PUT and DELETE events (also from --rev) until interrupted', async () => {
    const out = await runUntil(ep, ['watch', 'w/', '--prefix'], /DELETE\nw\/1\n\n/, async () => {
      await ctl(ep, ['put', 'w/1', 'one']);
      await ctl(ep, ['put', 'unrelated', 'x']);
      await ctl(ep, ['del', 'w/1']);
    });
    assert.equal(out, 'PUT\nw/1\none\nDELETE\nw/1\n\n');
    const rev = JSON.parse((await ctl(ep, ['get', 'hist', '-w', 'json'])).stdout).kvs[0].mod_revision as number;
    const replay = await runUntil(ep, ['watch', 'hist', `--rev=${rev}`], /PUT\nhist\nv2\n/, async () => undefined);
    assert.equal(replay, 'PUT\nhist\nv2\n');
  });

  it('lease grant / timetolive --keys / list / keep-alive / revoke, with etcdctl\'s messages', async () => {
    const grant = await ctl(ep, ['lease', 'grant', '60']);
    const m = /^lease ([0-9a-f]+) granted with TTL\(60s\)\n$/.exec(grant.stdout);
    assert.ok(m, grant.stdout + grant.stderr);
    const id = m[1]!;
    assert.equal((await ctl(ep, ['put', 'leased', 'v', '--lease', id])).stdout, 'OK\n');
    assert.match((await ctl(ep, ['lease', 'timetolive', id, '--keys'])).stdout, new RegExp(`^lease ${id} granted with TTL\\(60s\\), remaining\\(\\d+s\\), attached keys\\(\\[leased\\]\\)\\n$`));
    assert.match((await ctl(ep, ['lease', 'list'])).stdout, new RegExp(`^found 1 leases\\n${id}\\n$`));
    const ka = await runUntil(ep, ['lease', 'keep-alive', id], /keepalived/, async () => undefined);
    assert.match(ka, new RegExp(`^lease ${id} keepalived with TTL\\(60\\)\\n`));
    assert.equal((await ctl(ep, ['lease', 'revoke', id])).stdout, `lease ${id} revoked\n`);
    assert.equal((await ctl(ep, ['lease', 'timetolive', id])).stdout, `lease ${id} already expired\n`);
    assert.equal((await ctl(ep, ['get', 'leased'])).stdout, '');
    const gone = await ctl(ep, ['lease', 'revoke', id]);
    assert.equal(gone.code, 1);
    assert.equal(gone.stderr, 'Error: failed to revoke lease (etcdserver: requested lease not found)\n');
  });

  it('member list and endpoint status / health in etcdctl\'s simple format', async () => {
    const members = (await ctl(ep, ['member', 'list'])).stdout;
    assert.match(members, new RegExp(`^([0-9a-f]+), started, default, http://127\\.0\\.0\\.1:\\d+, http://${ep.replace(/\./g, '\\.')}, false\\n$`));
    const id = members.split(',')[0]!;
    const status = (await ctl(ep, ['endpoint', 'status'])).stdout;
    assert.match(status, new RegExp(`^${ep}, ${id}, 3\\.4\\.0, \\d+(\\.\\d)? k?B, true, false, \\d+, \\d+, \\d+, \\n$`));
    assert.match((await ctl(ep, ['endpoint', 'health'])).stdout, new RegExp(`^${ep} is healthy: successfully committed proposal: took = `));
    const dead = `127.0.0.1:${await freePort()}`;
    const bad = await ctl(dead, ['endpoint', 'health']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, new RegExp(`${dead} is unhealthy`));
  });

  it('snapshot save verifies the SHA-256 and writes atomically; restore + a member on it serve the data', async () => {
    const dir = tempDir();
    for (let i = 0; i < 50; i++) await put(ep, `snap/${i}`, `value-${i}`); // faster than 50 CLI runs
    const file = path.join(dir, 'backup.db');
    const save = await ctl(ep, ['snapshot', 'save', file]);
    assert.deepEqual({ code: save.code, stdout: save.stdout }, { code: 0, stdout: `Snapshot saved at ${file}\n` }, save.stderr);
    assert.equal(save.stderr, '', 'no progress output when stderr is not a terminal (short transfer)');
    assert.equal(fs.statSync(file).size % 512, 32);
    assert.ok(!fs.existsSync(`${file}.part`), 'the temp file is renamed away');

    const restored = path.join(dir, 'restored');
    const r = await ctl(ep, ['snapshot', 'restore', file, '--data-dir', restored]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^Restored snapshot ${file} into ${restored}: applied index \\d+`));
    const again = await ctl(ep, ['snapshot', 'restore', file, '--data-dir', restored]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /exists and is not empty/);
    const badFlags = await ctl(ep, ['snapshot', 'restore', file, '--data-dir', path.join(dir, 'never'), '--initial-cluster', 'nobody=http://127.0.0.1:1']);
    assert.equal(badFlags.code, 2, `quorumkv's exit code for bad usage passes through: ${badFlags.stderr}`);

    const copy = await startServer({ dataDir: restored });
    try {
      assert.equal((await ctl(copy.endpoint, ['get', 'snap/7'])).stdout, 'snap/7\nvalue-7\n');
      assert.equal((await ctl(copy.endpoint, ['get', 'snap/', '--prefix', '--keys-only'])).stdout.split('\n').filter((l) => l !== '').length, 50);
    } finally {
      await copy.stop();
    }

    // A corrupted file is refused before anything is written.
    const bad = path.join(dir, 'bad.db');
    const bytes = fs.readFileSync(file);
    bytes[100]! ^= 0xff;
    fs.writeFileSync(bad, bytes);
    const refused = await ctl(ep, ['snapshot', 'restore', bad, '--data-dir', path.join(dir, 'never')]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /snapshot file integrity check failed: expected sha256 [0-9a-f]{64}, got [0-9a-f]{64}/);
    assert.ok(!fs.existsSync(path.join(dir, 'never')));
  });

  it('check: --keys is a number there (a boolean for lease timetolive), bad values exit 2; a short linearizability run and hashes on one member pass', async () => {
    for (const bad of [['check'], ['check', 'frobnicate'], ['check', 'linearizability', '--keys'], ['check', 'linearizability', '--clients=0'], ['check', 'linearizability', '--duration=soon']]) {
      const r = await ctl(ep, bad);
      assert.equal(r.code, 2, `${bad.join(' ')}: ${r.stderr}`);
    }
    const run = await ctl(ep, ['check', 'linearizability', '--duration=500ms', '--clients=3', '--keys=2', '--prefix=chk/']);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.match(run.stdout, /on 2 keys by 3 clients/);
    assert.match(run.stdout, /LINEARIZABLE\n$/);
    assert.equal((await ctl(ep, ['get', 'chk/', '--prefix'])).stdout, '', 'the scratch prefix is deleted');
    const hashes = await ctl(ep, ['check', 'hashes']);
    assert.equal(hashes.code, 0, hashes.stdout + hashes.stderr);
    assert.match(hashes.stdout, /^OK: every member has hash \d+ at revision \d+$/m);
  });
});

describe('quorumctl helpers', () => {
  it('prefixEnd is etcd\'s GetPrefixRangeEnd', () => {
    assert.deepEqual(prefixEnd(Buffer.from('a/')), Buffer.from('a0'));
    assert.deepEqual(prefixEnd(Buffer.from([0x61, 0xff])), Buffer.from([0x62]));
    assert.deepEqual(prefixEnd(Buffer.from([0xff, 0xff])), Buffer.from([0]));
  });

  it('the progress bar shows bytes done of total and the rate; redraws in place on a terminal only', () => {
    let t = 0;
    const tty = new PassThrough();
    let drawn = '';
    tty.on('data', (d) => (drawn += d));
    const bar = new ProgressBar({ label: 'snapshot save', stream: tty as unknown as NodeJS.WriteStream, tty: true, now: () => t });
    t = 1000;
    bar.update(5_000_000, 10_000_000);
    assert.equal(bar.render(t), 'snapshot save [===============>              ]  50% 5.0 MB / 10.0 MB 5.0 MB/s');
    t = 2000;
    bar.update(10_000_000);
    bar.finish();
    assert.match(drawn, /^\r.* 50% .*\x1b\[K(\r.*100% 10\.0 MB \/ 10\.0 MB 5\.0 MB\/s\x1b\[K)+\n$/);

    const log = new PassThrough();
    let plain = '';
    log.on('data', (d) => (plain += d));
    t = 0;
    const quiet = new ProgressBar({ label: 'snapshot restore', stream: log as unknown as NodeJS.WriteStream, tty: false, now: () => t });
    t = 1000;
    quiet.update(1, 2);
    quiet.finish();
    assert.equal(plain, '', 'nothing for a short transfer when not on a terminal');
    t = 6000;
    quiet.update(2, 2);
    assert.match(plain, /^snapshot restore \[=+\] 100% 2 B \/ 2 B/);
    assert.equal(formatBytes(999), '999 B');
    assert.equal(formatBytes(1_500_000), '1.5 MB');
  });
});
