// The backend → etcd database conversion of `snapshot save`: every kv record becomes etcd's
// revision key and the mvccpb.KeyValue protobuf encodes it, field for field, at the edges of
// int64 (the fast path's numbers and the BigInt path beyond 2^53 give the same bytes).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { protoRoot } from '../../../src/proto';
import { BoltReader, bufferedSink } from '../../../src/storage/etcddb/bolt';
import { writeEtcdDb } from '../../../src/storage/etcddb/etcd_db';
import { encodeKv, kvRecordKey } from '../../../src/storage/backend/backend';
import type { KeyValue } from '../../../src/mvcc';

describe('etcd database from backend records (snapshot save)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'quorumkv-etcddb-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('writes each kv record as etcd revision key and KeyValue, int64 edges and deletions included', async () => {
    const kv = (key: string, createRevision: number, version: number, value: string, lease: bigint): KeyValue => ({ key, createRevision, modRevision: 0, version, value, lease });
    const big = 2 ** 53 + 2; // beyond a double's integers: the BigInt path
    const cases: [number, number, KeyValue][] = [
      [1, 0, kv('a', 1, 1, 'x'.repeat(5000), 0n)],
      [2, 0, kv('a', 1, 2, '', 7n)],
      [3, 0, kv('b', 3, 1, 'v', -1n)], // a negative lease: ten varint bytes
      [3, 1, kv('b', 3, 0, '', 0n)], // a deletion: the key alone, 't' in the revision key
      [2 ** 32 + 5, 2 ** 31, kv('c', 2 ** 40, 2 ** 33, 'w', 2n ** 62n)],
      [big, 0, kv('d', big, big, 'z', 2n ** 63n - 1n)],
    ];
    const records: [Buffer, Buffer][] = cases.map(([rev, sub, k]) => [kvRecordKey(rev, sub), encodeKv(k)]);
    const file = path.join(dir, 'db');
    const fd = fs.openSync(file, 'w');
    try {
      const sink = bufferedSink(async (bytes, position) => void fs.writeSync(fd, bytes, 0, bytes.length, position), 8192);
      await writeEtcdDb((async function* () { yield records; })(), { appliedIndex: 9, appliedTerm: 2 }, sink);
      await sink.flush();
    } finally {
      fs.closeSync(fd);
    }
    const db = BoltReader.open(file);
    try {
      const KeyValuePb = protoRoot().lookupType('mvccpb.KeyValue');
      const got = [...db.entries('key')];
      assert.equal(got.length, cases.length);
      got.forEach(([rk, pb], i) => {
        const [rev, sub, want] = cases[i]!;
        const key = Buffer.alloc(want.version === 0 ? 18 : 17);
        key.writeBigInt64BE(BigInt(rev), 0);
        key[8] = 0x5f;
        key.writeBigInt64BE(BigInt(sub), 9);
        if (want.version === 0) key[17] = 0x74;
        assert.deepEqual(Buffer.from(rk), key, `case ${i}: revision key`);
        const m = KeyValuePb.toObject(KeyValuePb.decode(pb), { longs: String, bytes: String, defaults: true }) as Record<string, string>;
        const b64 = (s: string) => Buffer.from(s, 'latin1').toString('base64');
        if (want.version === 0) {
          assert.deepEqual(m, { ...m, key: b64(want.key), create_revision: '0', mod_revision: '0', version: '0', value: '', lease: '0' }, `case ${i}: a deletion is its key alone`);
          return;
        }
        assert.deepEqual(
          { key: m.key, create_revision: m.create_revision, mod_revision: m.mod_revision, version: m.version, value: m.value, lease: m.lease },
          { key: b64(want.key), create_revision: String(want.createRevision), mod_revision: String(rev), version: String(want.version), value: b64(want.value), lease: String(want.lease) },
          `case ${i}: KeyValue`,
        );
      });
    } finally {
      db.close();
    }
  });

  it('yields to the event loop during a long conversion, even when its reads and writes are already done', async () => {
    // A clock that advances 1 ms per reading: the conversion must take turns every 10 ms of work.
    let ms = 0;
    let yields = 0;
    const clock = { now: () => ms++, yieldToLoop: () => { yields++; return new Promise<void>((r) => setImmediate(r)); } };
    const records: [Buffer, Buffer][] = [];
    for (let rev = 1; rev <= 200; rev++) records.push([kvRecordKey(rev, 0), encodeKv({ key: `k${rev}`, createRevision: rev, modRevision: rev, version: 1, value: 'v', lease: 0n })]);
    const sink = bufferedSink(async () => undefined);
    await writeEtcdDb((async function* () { yield records; })(), { appliedIndex: 1, appliedTerm: 1 }, sink, clock);
    await sink.flush();
    assert.ok(yields >= 15, `yielded ${yields} times over 200 records`);
  });
});
