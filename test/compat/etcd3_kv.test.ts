// The `etcd3` npm client against a real quorumkv process: KV reads and writes, binary keys and
// values, txns, compaction, and etcd's errors as that client maps them.
import assert from 'node:assert/strict';
import { Etcd3 } from 'etcd3';
import { startServer, type ServerProcess } from '../integration/harness';

describe('etcd3 npm client against quorumkv: KV', function () {
  this.timeout(60_000);
  let srv: ServerProcess;
  let client: Etcd3;

  before(async () => {
    srv = await startServer();
    client = new Etcd3({ hosts: srv.url, retry: false } as ConstructorParameters<typeof Etcd3>[0]);
  });
  after(async () => {
    client?.close();
    await srv?.stop();
  });

  it('put/get strings and a missing key', async () => {
    await client.put('greeting').value('hello');
    assert.equal(await client.get('greeting').string(), 'hello');
    assert.equal(await client.get('no-such-key').string(), null);
  });

  it('binary keys and values (all byte values, including 0x00 and 0xff) round-trip', async () => {
    const key = Buffer.from([0x00, 0xff, 0x10, 0x80, 0x00]);
    const value = Buffer.alloc(256);
    for (let i = 0; i < 256; i++) value[i] = i;
    await client.put(key).value(value);
    const got = await client.get(key).buffer();
    assert.ok(got && got.equals(value));
    const keys = await client.getAll().prefix(Buffer.from([0x00, 0xff])).keyBuffers();
    assert.deepEqual(keys.map((k) => k.toString('hex')), [key.toString('hex')]);
  });

  it('prefix, limit, sort and count', async () => {
    for (let i = 0; i < 10; i++) await client.put(`list/${i}`).value(String(9 - i));
    assert.deepEqual(await client.getAll().prefix('list/').limit(3).keys(), ['list/0', 'list/1', 'list/2']);
    assert.deepEqual(await client.getAll().prefix('list/').sort('Key', 'Descend').limit(2).keys(), ['list/9', 'list/8']);
    assert.deepEqual(Object.values(await client.getAll().prefix('list/').sort('Value', 'Ascend').limit(2).strings()), ['0', '1']);
    assert.equal(await client.getAll().prefix('list/').count(), 10);
    const raw = await client.kv.range({ key: Buffer.from('list/'), range_end: Buffer.from('list0'), limit: 4 } as never);
    assert.equal(raw.kvs.length, 4);
    assert.equal(raw.more, true);
    assert.equal(String(raw.count), '10');
  });

  it('reads at a past revision, and min/max revision filters', async () => {
    const r1 = await client.put('ver').value('a').exec();
    const rev1 = r1.header.revision;
    await client.put('ver').value('b');
    assert.equal(await client.get('ver').revision(rev1).string(), 'a');
    assert.equal(await client.get('ver').string(), 'b');
    const all = await client.getAll().prefix('ver').minModRevision(Number(rev1) + 1).keys();
    assert.deepEqual(all, ['ver']);
    const none = await client.getAll().prefix('ver').maxCreateRevision(Number(rev1) - 1).keys();
    assert.deepEqual(none, []);
  });

  it('delete with previous values', async () => {
    await client.put('gone/1').value('x');
    await client.put('gone/2').value('y');
    const res = await client.delete().prefix('gone/').getPrevious();
    assert.deepEqual(res.map((kv) => kv.value.toString()), ['x', 'y']);
    assert.equal(await client.getAll().prefix('gone/').count(), 0);
  });

  it('txn with compares on value, version, create and mod revision', async () => {
    await client.put('cas').value('v1');
    const ok = await client.if('cas', 'Value', '==', 'v1').and('cas', 'Version', '>', 0).then(client.put('cas').value('v2')).else(client.get('cas')).commit();
    assert.equal(ok.succeeded, true);
    const no = await client.if('cas', 'Value', '==', 'v1').then(client.put('cas').value('v3')).else(client.get('cas')).commit();
    assert.equal(no.succeeded, false);
    assert.equal(no.responses[0]!.response_range!.kvs[0]!.value.toString(), 'v2');
    const create = await client.if('fresh', 'Create', '==', 0).then(client.put('fresh').value('1')).commit();
    assert.equal(create.succeeded, true);
    const again = await client.if('fresh', 'Create', '==', 0).then(client.put('fresh').value('2')).commit();
    assert.equal(again.succeeded, false);
    // All writes of a txn share one revision.
    const multi = await client.if('fresh', 'Mod', '>', 0).then(client.put('m1').value('1'), client.put('m2').value('2')).commit();
    const [a, b] = await Promise.all([client.get('m1').exec(), client.get('m2').exec()]);
    assert.equal(a.kvs[0]!.mod_revision, multi.header.revision);
    assert.equal(b.kvs[0]!.mod_revision, multi.header.revision);
  });

  it('txn writing one key twice is rejected with etcd\'s duplicate-key error', async () => {
    await assert.rejects(
      client.if('cas', 'Version', '>', 0).then(client.put('dup').value('1'), client.put('dup').value('2')).commit(),
      (err: Error) => err.message.includes('etcdserver: duplicate key given in txn request'),
    );
  });

  it('txn with more than 128 ops is rejected', async () => {
    const ops = Array.from({ length: 129 }, (_, i) => client.put(`many/${i}`).value('x'));
    await assert.rejects(client.if('cas', 'Version', '>', 0).then(...ops).commit(), /etcdserver: too many operations in txn request/);
  });

  it('compaction: old revisions are gone, newer ones readable', async () => {
    const r1 = await client.put('c').value('1').exec();
    await client.put('c').value('2');
    const r3 = await client.put('c').value('3').exec();
    await client.kv.compact({ revision: r3.header.revision });
    await assert.rejects(client.get('c').revision(r1.header.revision).string(), /11 OUT_OF_RANGE: etcdserver: mvcc: required revision has been compacted/);
    assert.equal(await client.get('c').revision(r3.header.revision).string(), '3');
    await assert.rejects(client.kv.compact({ revision: r1.header.revision }), /required revision has been compacted/);
  });

  it('empty key and oversize value are rejected, nothing is written', async () => {
    await assert.rejects(client.put('').value('x').exec(), /etcdserver: key is not provided/);
    await assert.rejects(client.put('huge').value(Buffer.alloc(1_600_000)).exec(), /etcdserver: request is too large/);
    assert.equal(await client.get('huge').string(), null);
  });

  it('put with ignore_value keeps the value; on a missing key fails with key not found', async () => {
    await client.put('iv').value('keep');
    await client.kv.put({ key: Buffer.from('iv'), ignore_value: true } as never);
    assert.equal(await client.get('iv').string(), 'keep');
    await assert.rejects(client.kv.put({ key: Buffer.from('iv-missing'), ignore_value: true } as never), /etcdserver: key not found/);
    await assert.rejects(client.kv.put({ key: Buffer.from('iv'), value: Buffer.from('x'), ignore_value: true } as never), /etcdserver: value is provided/);
  });

  it('put with an unknown lease fails with lease not found', async () => {
    await assert.rejects(client.put('leased').value('x').lease('123456789').exec(), /etcdserver: requested lease not found/);
  });
});
