// TLS with etcd's flags, driven by the real etcdctl 3.4 (behaviour recorded against etcd 3.4.23, see
// docs/security.md "TLS"): client TLS with client-certificate auth on one member, the certificate's
// CN as the auth user, flag validation, and a 3-member cluster with peer TLS too.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { SERVER_BIN, etcdctl, freePort, hasEtcdctl, startServer, tempDir, type CmdResult, type ServerProcess } from './harness';
import { hasOpenssl, makeTestCerts, removeTestCerts, type TestCerts } from './tls_certs';
import { serviceDefinition } from '../../src/proto';

/** Client-side flags of etcdctl for a certificate pair (undefined: CA only). */
function ctlTls(certs: TestCerts, who?: { cert: string; key: string }): string[] {
  return [`--cacert=${certs.ca}`, ...(who ? [`--cert=${who.cert}`, `--key=${who.key}`] : [])];
}

/** Server flags for client TLS with client-certificate auth. */
function serverTls(certs: TestCerts): string[] {
  return [`--cert-file=${certs.server.cert}`, `--key-file=${certs.server.key}`, `--trusted-ca-file=${certs.ca}`, '--client-cert-auth'];
}

/** etcdctl's error lines, without the client's JSON retry warnings. */
function errorLines(r: CmdResult): string {
  return r.stderr
    .split('\n')
    .filter((l) => l && !l.startsWith('{'))
    .join('\n');
}

/** One HTTP/1.1 POST over TLS (what curl or fetch with a client certificate does). */
function httpsPost(url: string, body: string, tlsOpts: https.RequestOptions): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method: 'POST', ...tlsOpts, agent: false }, (res) => {
      let data = '';
      res.on('data', (d) => (data += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: data }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Retries `fn` until it passes (a leader election and the members' publish take a moment). */
async function eventually(fn: () => Promise<void>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

function skipUnlessTools(ctx: Mocha.Context): void {
  if (hasEtcdctl() && hasOpenssl()) return;
  if (process.env.CI) throw new Error('etcdctl and openssl are required in CI');
  ctx.skip();
}

describe('TLS: one member with client TLS and client-certificate auth', function () {
  this.timeout(60_000);
  let certs: TestCerts;
  let srv: ServerProcess;
  let url: string;
  const ctl = (who: { cert: string; key: string } | undefined, args: string[]) => etcdctl(url, [...ctlTls(certs, who), ...args]);
  const ok = async (who: { cert: string; key: string } | undefined, args: string[]) => {
    const r = await ctl(who, args);
    assert.equal(r.code, 0, `etcdctl ${args.join(' ')} failed: ${r.stderr}`);
    return r.stdout;
  };
  /** A refused handshake: etcdctl gives up after its dial timeout (1 s here). */
  const refused = async (who: { cert: string; key: string } | undefined) => {
    const r = await etcdctl(url, [...ctlTls(certs, who), '--dial-timeout=1s', '--command-timeout=2s', 'get', 'k']);
    assert.notEqual(r.code, 0, `etcdctl should have been refused: ${r.stdout}`);
    assert.match(errorLines(r), /context deadline exceeded/);
  };

  before(async function () {
    skipUnlessTools(this);
    certs = makeTestCerts();
    const port = await freePort();
    url = `https://127.0.0.1:${port}`;
    srv = await startServer({ args: [`--listen-client-urls=${url}`, `--advertise-client-urls=${url}`, ...serverTls(certs)] });
  });
  after(async () => {
    if (srv) await srv.stop();
    removeTestCerts(certs);
  });

  it('etcdctl with --cacert/--cert/--key: put, get, endpoint status and health --cluster', async () => {
    assert.equal(await ok(certs.alice, ['put', 'k', 'v1']), 'OK\n');
    assert.equal(await ok(certs.alice, ['get', 'k']), 'k\nv1\n');
    // --cluster builds one client per advertised (https) URL: the :authority rewriter path over TLS.
    // (The member publishes its client URLs through the log just after it starts serving.)
    await eventually(async () => assert.match(await ok(certs.alice, ['endpoint', 'status', '--cluster']), new RegExp(`^${url}, [0-9a-f]+, `)));
    const health = await ctl(certs.alice, ['endpoint', 'health', '--cluster']);
    assert.equal(health.code, 0, health.stderr);
    assert.match(health.stderr + health.stdout, new RegExp(`${url} is healthy`));
  });

  it('quorumctl with --cacert/--cert/--key (and refused without a certificate)', () => {
    const bin = path.join(path.dirname(SERVER_BIN), 'quorumctl.js');
    const run = (args: string[]) => spawnSync(process.execPath, [bin, `--endpoints=${url}`, '--dial-timeout=1s', ...args], { encoding: 'utf8', timeout: 10_000 });
    const withCert = [`--cacert=${certs.ca}`, `--cert=${certs.alice.cert}`, `--key=${certs.alice.key}`];
    assert.equal(run([...withCert, 'put', 'qc', 'v']).stdout, 'OK\n');
    assert.equal(run([...withCert, 'get', 'qc']).stdout, 'qc\nv\n');
    const r = run([`--cacert=${certs.ca}`, 'get', 'qc']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^Error: no endpoint is reachable .*context deadline exceeded/m);
  });

  it('a client without a certificate, or with one from another CA, fails the handshake', async () => {
    await refused(undefined);
    await refused(certs.mallory);
    assert.match(srv.output(), /"msg":"rejected connection"/);
  });

  it('the JSON gateway over https with a client certificate (HTTP/1.1 by ALPN); none: refused', async () => {
    const tlsOpts = { ca: fs.readFileSync(certs.ca), cert: fs.readFileSync(certs.alice.cert), key: fs.readFileSync(certs.alice.key) };
    const put = await httpsPost(`${url}/v3/kv/put`, JSON.stringify({ key: Buffer.from('gw').toString('base64'), value: Buffer.from('1').toString('base64') }), tlsOpts);
    assert.equal(put.status, 200, put.body);
    const range = await httpsPost(`${url}/v3/kv/range`, JSON.stringify({ key: Buffer.from('gw').toString('base64') }), tlsOpts);
    assert.equal(range.status, 200, range.body);
    assert.equal(Buffer.from((JSON.parse(range.body) as { kvs: { value: string }[] }).kvs[0]!.value, 'base64').toString(), '1');
    await assert.rejects(httpsPost(`${url}/v3/kv/range`, '{}', { ca: tlsOpts.ca }));
  });

  describe('the certificate CN as the user (etcd AuthInfoFromTLS)', () => {
    before(async () => {
      await ok(certs.root, ['user', 'add', 'root', '--new-user-password=rootpw']);
      await ok(certs.root, ['user', 'add', 'alice', '--no-password']);
      await ok(certs.root, ['role', 'add', 'app']);
      await ok(certs.root, ['role', 'grant-permission', 'app', 'readwrite', '/app/', '--prefix']);
      await ok(certs.root, ['user', 'grant-role', 'alice', 'app']);
      assert.equal(await ok(certs.root, ['auth', 'enable']), 'Authentication Enabled\n');
    });

    it('etcdctl --cert alice.crt without --user is alice: allowed and denied requests', async () => {
      assert.equal(await ok(certs.alice, ['put', '/app/x', '1']), 'OK\n');
      assert.equal(await ok(certs.alice, ['get', '/app/x']), '/app/x\n1\n');
      for (const args of [['put', '/etc/x', '1'], ['get', '/etc/x'], ['user', 'list']]) {
        const r = await ctl(certs.alice, args);
        assert.notEqual(r.code, 0);
        assert.match(errorLines(r), /etcdserver: permission denied/, args.join(' '));
      }
      // CN=root is root: admin requests, and the Maintenance RPCs of per-endpoint clients.
      assert.match(await ok(certs.root, ['user', 'list']), /alice\nroot/);
      assert.match(await ok(certs.root, ['endpoint', 'hashkv', '--cluster']), new RegExp(`^${url}, [0-9]+`));
      const denied = await ctl(certs.alice, ['endpoint', 'hashkv', '--cluster']);
      assert.match(errorLines(denied), /auth: permission denied/);
    });

    it('a token wins over the certificate; a password for a no-password user is refused as etcd does', async () => {
      assert.equal(await ok(certs.alice, ['--user=root:rootpw', 'put', '/etc/x', '1']), 'OK\n');
      const r = await ctl(certs.alice, ['--user=alice:x', 'get', '/app/x']);
      assert.match(errorLines(r), /password was given for no password user/);
    });

    it('a client cannot forge the CN metadata key: it is replaced by the verified certificate\'s', async () => {
      const Ctor = grpc.makeGenericClientConstructor(serviceDefinition('etcdserverpb.KV'), 'KV');
      const creds = grpc.credentials.createSsl(fs.readFileSync(certs.ca), fs.readFileSync(certs.alice.key), fs.readFileSync(certs.alice.cert));
      const c = new Ctor(url.replace('https://', ''), creds) as unknown as grpc.Client & { Range(req: object, md: grpc.Metadata, cb: (err: grpc.ServiceError | null) => void): void };
      const md = new grpc.Metadata();
      md.set('x-quorumkv-verified-cert-cn', 'root');
      const err = await new Promise<grpc.ServiceError | null>((resolve) => c.Range({ key: Buffer.from('/etc/x') }, md, resolve));
      c.close();
      assert.equal(err?.code, grpc.status.PERMISSION_DENIED);
    });

    it('the gateway refuses a certificate with a CN while auth is on (etcd 3.4: 400)', async () => {
      const tlsOpts = { ca: fs.readFileSync(certs.ca), cert: fs.readFileSync(certs.alice.cert), key: fs.readFileSync(certs.alice.key) };
      const r = await httpsPost(`${url}/v3/kv/range`, JSON.stringify({ key: Buffer.from('/app/x').toString('base64') }), tlsOpts);
      assert.equal(r.status, 400);
      assert.equal(r.body, 'CommonName of client sending a request against gateway will be ignored and not used as expected\n');
    });
  });
});

describe('TLS: flag validation', function () {
  this.timeout(20_000);
  let certs: TestCerts;
  before(function () {
    skipUnlessTools(this);
    certs = makeTestCerts();
  });
  after(() => removeTestCerts(certs));

  const start = (args: string[]) => {
    const dir = tempDir();
    const r = spawnSync(process.execPath, [SERVER_BIN, `--data-dir=${dir}`, ...args], { encoding: 'utf8', timeout: 10_000 });
    fs.rmSync(dir, { recursive: true, force: true });
    return { code: r.status, stderr: r.stderr.trim() };
  };

  it('https URLs need a certificate and key; files must exist; the key must match', () => {
    const https = ['--listen-client-urls=https://127.0.0.1:1', '--advertise-client-urls=https://127.0.0.1:1'];
    assert.deepEqual(start(https), { code: 2, stderr: 'quorumkv: --listen-client-urls https://127.0.0.1:1 is https: it needs --cert-file and --key-file' });
    assert.deepEqual(start([...https, `--cert-file=${certs.server.cert}`]), { code: 2, stderr: 'quorumkv: --cert-file and --key-file must both be given (got only --cert-file)' });
    const missing = path.join(certs.dir, 'nope.crt');
    assert.deepEqual(start([...https, `--cert-file=${missing}`, `--key-file=${certs.server.key}`]), {
      code: 2,
      stderr: `quorumkv: invalid --cert-file=${JSON.stringify(missing)}: cannot read it (ENOENT)`,
    });
    const mismatch = start([...https, `--cert-file=${certs.server.cert}`, `--key-file=${certs.alice.key}`]);
    assert.equal(mismatch.code, 2);
    assert.match(mismatch.stderr, /^quorumkv: invalid --cert-file\/--key-file\/--trusted-ca-file .*key values mismatch/);
    assert.deepEqual(start(['--listen-peer-urls=https://127.0.0.1:1']), { code: 2, stderr: 'quorumkv: --listen-peer-urls https://127.0.0.1:1 is https: it needs --peer-cert-file and --peer-key-file' });
  });
});

describe('TLS: a 3-member cluster with client and peer TLS', function () {
  this.timeout(60_000);
  let certs: TestCerts;
  const procs: ChildProcess[] = [];
  const outputs: string[] = [];
  let clientUrls: string[] = [];
  let peerUrls: string[] = [];
  const dirs: string[] = [];
  const ctl = (i: number, args: string[]) => etcdctl(clientUrls[i]!, [...ctlTls(certs, certs.root), ...args]);
  const ok = async (i: number, args: string[]) => {
    const r = await ctl(i, args);
    assert.equal(r.code, 0, `etcdctl ${args.join(' ')} on member ${i} failed: ${r.stderr}`);
    return r.stdout;
  };

  before(async function () {
    skipUnlessTools(this);
    certs = makeTestCerts();
    const ports = await Promise.all([0, 1, 2, 3, 4, 5].map(() => freePort()));
    assert.equal(new Set(ports).size, 6);
    clientUrls = [0, 1, 2].map((i) => `https://127.0.0.1:${ports[i]}`);
    peerUrls = [0, 1, 2].map((i) => `https://127.0.0.1:${ports[3 + i]}`);
    const initialCluster = peerUrls.map((u, i) => `m${i}=${u}`).join(',');
    const peerTls = [`--peer-cert-file=${certs.server.cert}`, `--peer-key-file=${certs.server.key}`, `--peer-trusted-ca-file=${certs.ca}`, '--peer-client-cert-auth'];
    for (let i = 0; i < 3; i++) {
      const dir = tempDir();
      dirs.push(dir);
      const p = spawn(
        process.execPath,
        [
          SERVER_BIN,
          `--name=m${i}`,
          `--data-dir=${dir}`,
          `--listen-client-urls=${clientUrls[i]}`,
          `--advertise-client-urls=${clientUrls[i]}`,
          `--listen-peer-urls=${peerUrls[i]}`,
          `--initial-advertise-peer-urls=${peerUrls[i]}`,
          `--initial-cluster=${initialCluster}`,
          '--heartbeat-interval=50',
          '--election-timeout=500',
          ...serverTls(certs),
          ...peerTls,
        ],
        { detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      outputs.push('');
      p.stdout!.on('data', (d) => (outputs[i] += d));
      p.stderr!.on('data', (d) => (outputs[i] += d));
      procs.push(p);
    }
    const deadline = Date.now() + 20_000;
    while (!outputs.every((o) => o.includes('ready to serve client requests'))) {
      const dead = procs.findIndex((p) => p.exitCode !== null);
      if (dead >= 0) throw new Error(`member m${dead} exited:\n${outputs[dead]}`);
      if (Date.now() > deadline) throw new Error(`members not ready:\n${outputs.join('\n---\n').slice(-4000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  });
  after(() => {
    for (const p of procs) if (p.pid !== undefined && p.exitCode === null) process.kill(-p.pid, 'SIGKILL');
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
    removeTestCerts(certs);
  });

  it('member list shows the https peer and client URLs of every member', async () => {
    await eventually(async () => {
      const out = await ok(1, ['member', 'list']);
      const lines = out.trim().split('\n');
      assert.equal(lines.length, 3, out);
      for (let i = 0; i < 3; i++) assert.ok(lines.some((l) => l.endsWith(`, started, m${i}, ${peerUrls[i]}, ${clientUrls[i]}, false`)), out);
    });
  });

  it('a put on one member is read on another; endpoint health --cluster is healthy everywhere', async () => {
    assert.equal(await ok(0, ['put', 'tls-key', 'v']), 'OK\n');
    assert.equal(await ok(2, ['get', 'tls-key']), 'tls-key\nv\n');
    const r = await ctl(1, ['endpoint', 'health', '--cluster']);
    assert.equal(r.code, 0, r.stderr);
    for (const u of clientUrls) assert.match(r.stderr + r.stdout, new RegExp(`${u} is healthy`));
  });

  it('the peer port (--peer-client-cert-auth) answers a peer with a trusted certificate, and refuses one without or from another CA', async () => {
    const Ctor = grpc.makeGenericClientConstructor(serviceDefinition('quorumkvpb.PeerCluster'), 'PeerCluster');
    const members = async (who: { cert: string; key: string } | undefined): Promise<grpc.ServiceError | { cluster_id: string; members_json: Buffer }> => {
      const ca = fs.readFileSync(certs.ca);
      const creds = who ? grpc.credentials.createSsl(ca, fs.readFileSync(who.key), fs.readFileSync(who.cert)) : grpc.credentials.createSsl(ca);
      const client = new Ctor(peerUrls[0]!.replace('https://', ''), creds) as unknown as {
        Members(req: object, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: { cluster_id: string; members_json: Buffer }) => void): void;
        close(): void;
      };
      try {
        return await new Promise((resolve) => client.Members({}, { deadline: Date.now() + 3000 }, (err, res) => resolve(err ?? res)));
      } finally {
        client.close();
      }
    };
    const ok = await members(certs.server);
    assert.ok(!(ok instanceof Error), String(ok));
    assert.equal((JSON.parse(ok.members_json.toString()) as unknown[]).length, 3);
    for (const who of [undefined, certs.mallory]) {
      const err = await members(who);
      assert.ok(err instanceof Error && err.code === grpc.status.UNAVAILABLE, `refused: ${String(err)}`);
    }
    assert.match(outputs[0]!, /"msg":"rejected peer connection"/);
  });

  it('lease keepalives on every member reach the leader through its https client URL', async () => {
    const granted = await ok(0, ['lease', 'grant', '30']);
    const id = /lease ([0-9a-f]+) granted/.exec(granted)![1]!;
    for (let i = 0; i < 3; i++) assert.match(await ok(i, ['lease', 'keep-alive', '--once', id]), new RegExp(`lease ${id} keepalived with TTL\\(30\\)`));
  });
});
