// The `etcd3` npm client with `auth: {username, password}` against real quorumkv processes:
// allowed and denied get/put/watch, auth state surviving a restart (tokens do not: the client
// re-authenticates on "invalid auth token"), and a token minted through one member of a
// 3-member cluster serving requests on another (tokens travel in the log).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Etcd3, EtcdPermissionDeniedError, EtcdAuthenticationFailedError } from 'etcd3';
import { SERVER_BIN, etcdctl, startServer, tempDir, type ServerProcess } from '../integration/harness';
import { startCluster, type Cluster } from '../integration/cluster_harness';
import { serviceDefinition } from '../../src/proto';

type Opts = ConstructorParameters<typeof Etcd3>[0];
const client = (url: string, auth?: { username: string; password: string }) => new Etcd3({ hosts: url, auth, retry: false } as Opts);

const Auth = grpc.makeGenericClientConstructor(serviceDefinition('etcdserverpb.Auth'), 'Auth');
const KV = grpc.makeGenericClientConstructor(serviceDefinition('etcdserverpb.KV'), 'KV');
/** One unary call over grpc-js (a client per call), as a promise. */
const call = <T>(ctor: typeof Auth, endpoint: string, method: string, req: object, md = new grpc.Metadata()) =>
  new Promise<T>((resolve, reject) => {
    const cl = new ctor(endpoint, grpc.credentials.createInsecure()) as unknown as Record<string, (...args: unknown[]) => unknown> & grpc.Client;
    cl[method]!(req, md, { deadline: Date.now() + 5000 }, (err: Error | null, res: T) => (cl.close(), err ? reject(err) : resolve(res)));
  });

/** etcdctl setup: root + alice (readwrite on /app/), auth enabled. */
async function setupAuth(endpoint: string): Promise<void> {
  const steps: [string[], string?][] = [
    [['user', 'add', 'root', '--interactive=false'], 'rootpw\n'],
    [['user', 'add', 'alice:alicepw']],
    [['role', 'add', 'app']],
    [['role', 'grant-permission', 'app', 'readwrite', '/app/', '--prefix']],
    [['user', 'grant-role', 'alice', 'app']],
    [['auth', 'enable']],
  ];
  for (const [args, input] of steps) {
    const r = await etcdctl(endpoint, args, input);
    assert.equal(r.code, 0, `etcdctl ${args.join(' ')}: ${r.stderr}`);
  }
}

describe('etcd3 npm client against quorumkv: auth', function () {
  this.timeout(120_000);
  let srv: ServerProcess;
  const clients: Etcd3[] = [];
  const open = (auth?: { username: string; password: string }) => {
    const c = client(srv.url, auth);
    clients.push(c);
    return c;
  };

  before(async () => {
    srv = await startServer();
    await setupAuth(srv.endpoint);
  });
  after(async () => {
    for (const c of clients) c.close();
    await srv?.stop();
  });

  it('alice may read and write /app/, nothing else; root may do anything', async () => {
    const alice = open({ username: 'alice', password: 'alicepw' });
    const root = open({ username: 'root', password: 'rootpw' });
    await alice.put('/app/a').value('1');
    assert.equal(await alice.get('/app/a').string(), '1');
    assert.deepEqual(await alice.getAll().prefix('/app/').strings(), { '/app/a': '1' });
    await assert.rejects(alice.put('/etc/x').value('1').exec(), EtcdPermissionDeniedError);
    await root.put('/etc/x').value('root');
    await assert.rejects(alice.get('/etc/x').string(), EtcdPermissionDeniedError);
    assert.equal(await root.get('/etc/x').string(), 'root');
  });

  it('a wrong password is refused with etcd\'s error', async () => {
    await assert.rejects(open({ username: 'alice', password: 'nope' }).get('/app/a').string(), EtcdAuthenticationFailedError);
  });

  it('watch: allowed ranges deliver events; a denied watch is refused', async () => {
    const alice = open({ username: 'alice', password: 'alicepw' });
    const w = await alice.watch().prefix('/app/').create();
    const got = new Promise<string>((resolve) => w.on('put', (kv) => resolve(kv.value.toString())));
    await alice.put('/app/w').value('event');
    assert.equal(await got, 'event');
    await w.cancel();
    await assert.rejects(
      (async () => {
        const denied = await alice.watch().key('/etc/x').create();
        await new Promise((_, reject) => denied.on('error', reject));
      })(),
      /permission denied/,
    );
  });

  it('auth state survives a restart; old tokens do not, and the client re-authenticates', async () => {
    const alice = open({ username: 'alice', password: 'alicepw' });
    assert.equal(await alice.get('/app/a').string(), '1');
    const url = srv.url;
    await srv.stop('SIGTERM');
    // Same data dir and client URL (the later flag wins), so the same client object reconnects.
    srv = await startServer({ dataDir: srv.dataDir, args: [`--listen-client-urls=${url}`] });
    // The same client: its cached token is unknown after the restart ("invalid auth token"), it
    // authenticates again and the call succeeds.
    assert.equal(await alice.get('/app/a').string(), '1');
    await assert.rejects(alice.put('/etc/x').value('1').exec(), EtcdPermissionDeniedError);
    const anon = client(url);
    clients.push(anon);
    await assert.rejects(anon.get('/app/a').string(), /user name is empty/);
  });
});

describe('auth in a 3-member cluster', function () {
  this.timeout(120_000);
  let cluster: Cluster | undefined;
  after(async () => cluster?.stopAll());

  it('a token issued through one member is valid on the others', async () => {
    cluster = await startCluster({ size: 3 });
    await cluster.waitForLeader();
    const [a, b, c] = cluster.members as [Cluster['members'][0], Cluster['members'][0], Cluster['members'][0]];
    await setupAuth(a.endpoint);
    const { token } = await call<{ token: string }>(Auth, b.endpoint, 'Authenticate', { name: 'alice', password: 'alicepw' });
    assert.match(token, /^[A-Za-z]{16}\.\d+$/);
    const md = new grpc.Metadata();
    md.set('token', token);
    // A simple token is known to a member once it has applied the Authenticate entry: c may lag
    // b by a few milliseconds (as with etcd), so the first use is retried for a bounded time.
    for (let i = 0; ; i++) {
      try {
        await call(KV, c.endpoint, 'Put', { key: Buffer.from('/app/k'), value: Buffer.from('v') }, md);
        break;
      } catch (err) {
        if (i >= 20 || !/invalid auth token/.test(String(err))) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const r = await call<{ kvs: { value: Buffer }[] }>(KV, a.endpoint, 'Range', { key: Buffer.from('/app/k') }, md);
    assert.equal(r.kvs[0]!.value.toString(), 'v');
    await assert.rejects(call(KV, c.endpoint, 'Put', { key: Buffer.from('/etc/k'), value: Buffer.from('v') }, md), /permission denied/);
    const bogus = new grpc.Metadata();
    bogus.set('token', 'AAAAAAAAAAAAAAAA.1');
    await assert.rejects(call(KV, a.endpoint, 'Range', { key: Buffer.from('/app/k') }, bogus), (e: grpc.ServiceError) => e.code === grpc.status.UNAUTHENTICATED && e.details === 'etcdserver: invalid auth token');
  });
});

describe('auth with JWT tokens (--auth-token jwt,...)', function () {
  this.timeout(120_000);
  let cluster: Cluster | undefined;
  let single: ServerProcess | undefined;
  after(async () => {
    await cluster?.stopAll();
    await single?.stop();
  });
  const dir = tempDir('quorumkv-jwt-');
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pub = path.join(dir, 'jwt.pub');
  const priv = path.join(dir, 'jwt.key');
  fs.writeFileSync(pub, publicKey.export({ type: 'spki', format: 'pem' }));
  fs.writeFileSync(priv, privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const withToken = (token: string) => {
    const md = new grpc.Metadata();
    md.set('token', token);
    return md;
  };

  it('a token is valid on every member, also on one restarted since (nothing shared but the key); an auth change makes it old', async () => {
    cluster = await startCluster({ size: 3, args: [`--auth-token=jwt,pub-key=${pub},priv-key=${priv},sign-method=ES256,ttl=10m`] });
    await cluster.waitForLeader();
    const [a, b, c] = cluster.members as [Cluster['members'][0], Cluster['members'][0], Cluster['members'][0]];
    await setupAuth(a.endpoint);
    const { token } = await call<{ token: string }>(Auth, b.endpoint, 'Authenticate', { name: 'alice', password: 'alicepw' });
    assert.equal(token.split('.').length, 3, 'a JWT');
    await c.restart();
    await cluster.waitForLeader();
    await call(KV, c.endpoint, 'Put', { key: Buffer.from('/app/k'), value: Buffer.from('v') }, withToken(token));
    const r = await call<{ kvs: { value: Buffer }[] }>(KV, a.endpoint, 'Range', { key: Buffer.from('/app/k') }, withToken(token));
    assert.equal(r.kvs[0]!.value.toString(), 'v');
    await assert.rejects(call(KV, a.endpoint, 'Put', { key: Buffer.from('/etc/k'), value: Buffer.from('v') }, withToken(token)), /permission denied/);
    // etcdctl authenticates per command: it works as with simple tokens.
    const got = await etcdctl(c.endpoint, ['--user', 'alice:alicepw', 'get', '/app/k', '--print-value-only']);
    assert.equal(got.stdout, 'v\n', got.stderr);
    assert.equal((await etcdctl(a.endpoint, ['--user', 'root:rootpw', 'role', 'add', 'another'])).code, 0);
    await assert.rejects(
      call(KV, b.endpoint, 'Range', { key: Buffer.from('/app/k') }, withToken(token)),
      (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT && e.details === 'etcdserver: revision of auth store is old',
    );
  });

  it('a member with the public key only verifies tokens and refuses Authenticate; bad --auth-token values exit naming the flag', async () => {
    single = await startServer({ args: [`--auth-token=jwt,pub-key=${pub},sign-method=ES256`] });
    await setupAuth(single.endpoint);
    await assert.rejects(
      call(Auth, single.endpoint, 'Authenticate', { name: 'alice', password: 'alicepw' }),
      (e: grpc.ServiceError) => e.code === grpc.status.UNKNOWN && e.details === 'auth: token signing attempted with verify-only key',
    );
    const bad = async (value: string, why: RegExp) => {
      const r = spawnSync(process.execPath, [SERVER_BIN, `--auth-token=${value}`, `--data-dir=${path.join(dir, 'never')}`], { encoding: 'utf8', timeout: 20_000 });
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, /--auth-token/);
      assert.match(r.stderr, why);
    };
    await bad('jwt,pub-key=/nonexistent,sign-method=RS256', /cannot read \/nonexistent/);
    await bad(`jwt,pub-key=${pub},sign-method=RS256`, /needs rsa/);
    await bad(`jwt,pub-key=${pub},sign-method=HS256`, /sign-method must be one of/);
    await bad(`jwt,pub-key=${pub},sign-method=ES256,colour=blue`, /unknown jwt option "colour"/);
    await bad('opaque', /expected "simple" or "jwt/);
  });
});
