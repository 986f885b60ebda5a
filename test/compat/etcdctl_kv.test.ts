// The real etcdctl (Debian's etcd-client, v3 API) against a real quorumkv process: the KV API as
// etcd's own CLI uses it, with etcd's output formats and error messages.
import assert from 'node:assert/strict';
import { etcdctl, startServer, type ServerProcess, requireEtcdctl } from '../integration/harness';

describe('etcdctl against quorumkv: KV', function () {
  this.timeout(60_000);
  let srv: ServerProcess;
  const ctl = (...args: string[]) => etcdctl(srv.endpoint, args);
  const ok = async (...args: string[]) => {
    const r = await ctl(...args);
    assert.equal(r.code, 0, `etcdctl ${args.join(' ')} failed: ${r.stderr}`);
    return r.stdout;
  };
  const json = async (...args: string[]) => JSON.parse(await ok(...args, '-w', 'json'));
  const b64 = (s: string) => Buffer.from(s).toString('base64');

  before(async function () {
    requireEtcdctl(this);
    srv = await startServer();
  });
  after(async () => srv && (await srv.stop()));

  it('put then get returns the value, with etcd header fields', async () => {
    assert.equal((await ok('put', 'foo', 'bar')).trim(), 'OK');
    assert.equal(await ok('get', 'foo'), 'foo\nbar\n');
    const r = await json('get', 'foo');
    assert.equal(r.count, 1);
    assert.equal(r.kvs[0].key, b64('foo'));
    assert.equal(r.kvs[0].value, b64('bar'));
    assert.equal(r.kvs[0].version, 1);
    assert.equal(r.kvs[0].create_revision, r.kvs[0].mod_revision);
    assert.ok(r.header.cluster_id > 0 && r.header.member_id > 0 && r.header.raft_term > 0);
    assert.equal(r.header.revision, r.kvs[0].mod_revision);
  });

  it('revisions: the first write on an empty store is revision 2, each write adds one', async () => {
    const fresh = await startServer();
    try {
      await etcdctl(fresh.endpoint, ['put', 'a', '1']);
      const r = JSON.parse((await etcdctl(fresh.endpoint, ['get', 'a', '-w', 'json'])).stdout);
      assert.equal(r.header.revision, 2);
      assert.equal(r.kvs[0].create_revision, 2);
      await etcdctl(fresh.endpoint, ['put', 'a', '2']);
      const r2 = JSON.parse((await etcdctl(fresh.endpoint, ['get', 'a', '-w', 'json'])).stdout);
      assert.equal(r2.header.revision, 3);
      assert.equal(r2.kvs[0].version, 2);
      assert.equal(r2.kvs[0].create_revision, 2);
      assert.equal(r2.kvs[0].mod_revision, 3);
    } finally {
      await fresh.stop();
    }
  });

  it('prefix, range, from-key, limit, sort and keys-only reads', async () => {
    for (const [k, v] of [['pfx/b', '2'], ['pfx/a', '1'], ['pfx/c', '3'], ['pfy', 'x']]) await ok('put', k!, v!);
    assert.equal(await ok('get', 'pfx/', '--prefix', '--keys-only'), 'pfx/a\n\npfx/b\n\npfx/c\n\n');
    assert.equal(await ok('get', 'pfx/a', 'pfx/c'), 'pfx/a\n1\npfx/b\n2\n');
    assert.equal(await ok('get', 'pfx/c', '--from-key', '--keys-only'), 'pfx/c\n\npfy\n\n');
    const lim = await json('get', 'pfx/', '--prefix', '--limit=2');
    assert.equal(lim.kvs.length, 2);
    assert.equal(lim.more, true);
    assert.equal(lim.count, 3);
    assert.equal(await ok('get', 'pfx/', '--prefix', '--sort-by=KEY', '--order=DESCEND', '--print-value-only'), '3\n2\n1\n');
    assert.equal(await ok('get', 'pfx/', '--prefix', '--sort-by=CREATE', '--order=ASCEND', '--keys-only'), 'pfx/b\n\npfx/a\n\npfx/c\n\n');
  });

  it('reads at a past revision see the old value', async () => {
    await ok('put', 'hist', 'v1');
    const rev1 = (await json('get', 'hist')).kvs[0].mod_revision;
    await ok('put', 'hist', 'v2');
    assert.equal(await ok('get', 'hist', `--rev=${rev1}`, '--print-value-only'), 'v1\n');
    assert.equal(await ok('get', 'hist', '--print-value-only'), 'v2\n');
  });

  it('delete with --prev-kv prints the count and the deleted pairs', async () => {
    await ok('put', 'del/1', 'a');
    await ok('put', 'del/2', 'b');
    assert.equal(await ok('del', 'del/', '--prefix', '--prev-kv'), '2\ndel/1\na\ndel/2\nb\n');
    assert.equal(await ok('get', 'del/', '--prefix'), '');
    assert.equal(await ok('del', 'nothing-here'), '0\n');
  });

  it('txn: compares choose the branch; success and failure ops run atomically', async () => {
    await ok('put', 'tx', 'one');
    const r1 = await etcdctl(srv.endpoint, ['txn'], 'value("tx") = "one"\n\nput tx two\nput tx2 yes\n\nput tx three\n\n');
    assert.equal(r1.code, 0, r1.stderr);
    assert.equal(r1.stdout, 'SUCCESS\n\nOK\n\nOK\n');
    assert.equal(await ok('get', 'tx', '--print-value-only'), 'two\n');
    const r2 = await etcdctl(srv.endpoint, ['txn'], 'value("tx") = "one"\n\nput tx never\n\nget tx\n\n');
    assert.equal(r2.stdout, 'FAILURE\n\ntx\ntwo\n');
    const r3 = await etcdctl(srv.endpoint, ['txn'], 'version("missing") = "0"\nmod("tx") > "1"\n\nput made 1\n\n\n');
    assert.equal(r3.stdout.split('\n')[0], 'SUCCESS');
  });

  it('compaction: reads below fail with etcd\'s error, future revisions too', async () => {
    await ok('put', 'cmp', 'a');
    const old = (await json('get', 'cmp')).kvs[0].mod_revision;
    await ok('put', 'cmp', 'b');
    const head = (await json('get', 'cmp')).header.revision;
    assert.equal((await ok('compact', String(head))).trim(), `compacted revision ${head}`);
    const r = await ctl('get', 'cmp', `--rev=${old}`);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /etcdserver: mvcc: required revision has been compacted/);
    const f = await ctl('get', 'cmp', `--rev=${head + 1000}`);
    assert.notEqual(f.code, 0);
    assert.match(f.stderr, /etcdserver: mvcc: required revision is a future revision/);
    assert.equal(await ok('get', 'cmp', `--rev=${head}`, '--print-value-only'), 'b\n');
  });

  it('rejects an empty key and an oversize request with etcd\'s messages', async () => {
    const e = await ctl('put', '', 'x');
    assert.notEqual(e.code, 0);
    assert.match(e.stderr, /etcdserver: key is not provided/);
    const big = Buffer.alloc(1_700_000, 'a');
    const r = await etcdctl(srv.endpoint, ['put', 'big'], big);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /etcdserver: request is too large/);
    assert.equal(await ok('get', 'big'), '');
  });

  it('unimplemented services answer UNIMPLEMENTED with a clear message', async () => {
    // etcdctl has no command left that reaches an unimplemented RPC: call one directly.
    const grpc = await import('@grpc/grpc-js');
    const { serviceDefinition } = await import('../../src/proto');
    // Downgrade is etcd 3.5's; quorumkv speaks 3.4.
    const Ctor = grpc.makeGenericClientConstructor(serviceDefinition('etcdserverpb.Maintenance'), 'Maintenance');
    const client = new Ctor(srv.endpoint, grpc.credentials.createInsecure()) as unknown as {
      Downgrade(req: object, cb: (err: { code: number; details: string } | null) => void): void;
      close(): void;
    };
    const err = await new Promise<{ code: number; details: string } | null>((resolve) => client.Downgrade({ action: 0, version: '3.4.0' }, resolve));
    client.close();
    assert.ok(err);
    assert.equal(err.code, grpc.status.UNIMPLEMENTED);
    assert.match(err.details, /etcdserverpb\.Maintenance\/Downgrade is not implemented/);
  });
});
