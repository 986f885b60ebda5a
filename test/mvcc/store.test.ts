// MvccStore write semantics: revisions, create/mod/version, deletes, txns, events.
import { strict as assert } from 'node:assert';
import { MvccStore, EventType, NO_LEASE, bufferOf } from '../../src/mvcc';
import { AssertionError } from '../../src/util/assert';
import { Errors } from '../../src/util/errors';
import { b, s, put, del, get, keysOf, rng } from './helpers';

describe('mvcc store: revisions and versions', () => {
  it('an empty store is at revision 1 with nothing compacted', () => {
    const st = new MvccStore();
    assert.equal(st.currentRevision, 1);
    assert.equal(st.compactRevision, 0);
    assert.equal(st.keyCount, 0);
    assert.equal(st.sizeBytes, 0);
    assert.deepEqual(st.range(b('a'), undefined).kvs, []);
    assert.equal(st.range(b('a'), undefined).revision, 1);
  });

  it('the first put gets revision 2 with create = mod = 2 and version 1', () => {
    const st = new MvccStore();
    const res = put(st, 'foo', 'bar');
    assert.equal(res.revision, 2);
    assert.equal(st.currentRevision, 2);
    const kv = get(st, 'foo')!;
    assert.equal(s(kv.key), 'foo');
    assert.equal(s(kv.value), 'bar');
    assert.equal(kv.createRevision, 2);
    assert.equal(kv.modRevision, 2);
    assert.equal(kv.version, 1);
    assert.equal(kv.lease, 0n);
  });

  it('holds arbitrary bytes exactly and keeps no reference to the caller\'s buffers', () => {
    const st = new MvccStore();
    // Every byte value, including ones that are not valid UTF-8 on their own.
    const key = Buffer.from([0x00, 0x7f, 0x80, 0xc3, 0xff]);
    const value = Buffer.alloc(256);
    for (let i = 0; i < 256; i++) value[i] = 255 - i;
    const txn = st.write();
    txn.put(key, value, NO_LEASE);
    txn.end();
    const expected = Buffer.from(value);
    key.fill(1); // the caller reuses its buffers: the store must not see it
    value.fill(2);
    const kv = st.range(Buffer.from([0x00, 0x7f, 0x80, 0xc3, 0xff]), undefined).kvs[0];
    assert.ok(kv, 'the key is found by its original bytes');
    assert.deepEqual(bufferOf(kv.key), Buffer.from([0x00, 0x7f, 0x80, 0xc3, 0xff]));
    assert.deepEqual(bufferOf(kv.value), expected);
    assert.equal(st.range(key, undefined).kvs.length, 0);
  });

  it('updates keep createRevision, move modRevision and increment version', () => {
    const st = new MvccStore();
    put(st, 'foo', 'v1');
    put(st, 'other', 'x');
    put(st, 'foo', 'v2', 7n);
    const kv = get(st, 'foo')!;
    assert.deepEqual([kv.createRevision, kv.modRevision, kv.version, s(kv.value), kv.lease], [2, 4, 2, 'v2', 7n]);
  });

  it('a delete resets the version: the next put creates the key anew', () => {
    const st = new MvccStore();
    put(st, 'k', 'a');
    put(st, 'k', 'b');
    const d = del(st, 'k');
    assert.equal(d.revision, 4);
    assert.equal(get(st, 'k'), undefined);
    assert.equal(st.keyCount, 0);
    put(st, 'k', 'c');
    const kv = get(st, 'k')!;
    assert.deepEqual([kv.createRevision, kv.modRevision, kv.version], [5, 5, 1]);
    assert.equal(st.keyCount, 1);
  });

  it('a delete of nothing does not advance the revision', () => {
    const st = new MvccStore();
    put(st, 'a', '1');
    const d = del(st, 'zzz');
    assert.equal(d.revision, 2);
    assert.deepEqual(d.events, []);
    assert.equal(st.currentRevision, 2);
  });

  it('an empty txn leaves the revision unchanged', () => {
    const st = new MvccStore();
    const txn = st.write();
    assert.equal(txn.revision, 2);
    assert.deepEqual(txn.end(), { revision: 1, events: [] });
    assert.equal(st.currentRevision, 1);
  });

  it('put returns the previous live kv; deleteRange returns the deleted kvs in key order', () => {
    const st = new MvccStore();
    put(st, 'b', '1');
    put(st, 'a', '1');
    const txn = st.write();
    assert.equal(txn.put(b('c'), b('new'), NO_LEASE).prevKv, undefined);
    assert.equal(s(txn.put(b('a'), b('2'), NO_LEASE).prevKv!.value), '1');
    const { deleted } = txn.deleteRange(b('a'), b('c'));
    assert.deepEqual(keysOf(deleted), ['a', 'b']);
    assert.equal(s(deleted[0].value), '2', 'the txn\'s own earlier put is what gets deleted');
    txn.end();
    assert.deepEqual(keysOf(st.range(b('\0'), b('\0')).kvs), ['c']);
  });

  it('keyCount and sizeBytes follow puts and deletes', () => {
    const st = new MvccStore();
    put(st, 'ab', '1234');
    put(st, 'ab', '12');
    put(st, 'cd', '');
    assert.equal(st.keyCount, 2);
    assert.equal(st.sizeBytes, 6 + 4 + 2);
    del(st, 'ab');
    assert.equal(st.keyCount, 1);
    assert.equal(st.sizeBytes, 12 + 2, 'a tombstone retains its key');
  });

  it('put keeps one key Buffer per key across versions', () => {
    const st = new MvccStore();
    put(st, 'k', '1');
    const first = get(st, 'k')!.key;
    put(st, 'k', '2');
    assert.equal(get(st, 'k')!.key, first);
  });

  it('leases are kept as bigint without losing precision', () => {
    const st = new MvccStore();
    const lease = 0x7fffffffffffffffn;
    put(st, 'k', 'v', lease);
    assert.equal(get(st, 'k')!.lease, lease);
  });
});

describe('mvcc store: write txns', () => {
  it('a multi-op txn is one revision with its events in op order', () => {
    const st = new MvccStore();
    put(st, 'x', 'old');
    const txn = st.write();
    txn.put(b('b'), b('1'), NO_LEASE);
    txn.put(b('a'), b('1'), NO_LEASE);
    txn.deleteRange(b('x'), undefined);
    txn.put(b('x'), b('again'), NO_LEASE);
    const res = txn.end();
    assert.equal(res.revision, 3);
    assert.deepEqual(
      res.events.map((e) => [e.type, s(e.kv.key), e.kv.modRevision]),
      [[EventType.PUT, 'b', 3], [EventType.PUT, 'a', 3], [EventType.DELETE, 'x', 3], [EventType.PUT, 'x', 3]],
    );
    assert.equal(s(res.events[2].prevKv!.value), 'old');
    assert.equal(res.events[3].prevKv, undefined, 'a put after a delete has no previous live value');
    const x = get(st, 'x')!;
    assert.deepEqual([x.createRevision, x.version], [3, 1]);
  });

  it('reads inside a txn see its own writes; reads outside do not until end()', () => {
    const st = new MvccStore();
    put(st, 'a', '1');
    const txn = st.write();
    assert.equal(txn.range(b('a'), undefined).revision, 2);
    txn.put(b('a'), b('2'), NO_LEASE);
    txn.put(b('b'), b('1'), NO_LEASE);
    const inside = txn.range(b('a'), b('c'));
    assert.deepEqual(inside.kvs.map((kv) => s(kv.value)), ['2', '1']);
    assert.equal(inside.revision, 3);
    assert.equal(s(txn.range(b('a'), undefined, { revision: 2 }).kvs[0].value), '1');
    assert.equal(s(txn.range(b('a'), undefined, { revision: 3 }).kvs[0].value), '2');
    assert.equal(s(get(st, 'a')!.value), '1', 'outside the txn the old value is still current');
    assert.equal(st.range(b('b'), undefined).count, 0);
    txn.end();
    assert.equal(s(get(st, 'a')!.value), '2');
  });

  it('two puts of one key in a txn: last wins, version increments, create stays', () => {
    const st = new MvccStore();
    const txn = st.write();
    txn.put(b('k'), b('1'), NO_LEASE);
    const r = txn.put(b('k'), b('2'), NO_LEASE);
    assert.equal(s(r.prevKv!.value), '1');
    const res = txn.end();
    const kv = get(st, 'k')!;
    assert.deepEqual([s(kv.value), kv.version, kv.createRevision, kv.modRevision], ['2', 2, 2, 2]);
    assert.equal(res.events.length, 2);
    assert.equal(st.keyCount, 1);
    assert.deepEqual(st.eventsBetween(2, 2).events.map((e) => s(e.kv.value)), ['1', '2']);
  });

  it('only one write txn may be open, and an ended txn refuses more ops', () => {
    const st = new MvccStore();
    const txn = st.write();
    assert.throws(() => st.write(), AssertionError);
    txn.end();
    assert.throws(() => txn.put(b('a'), b('1'), NO_LEASE), AssertionError);
    assert.throws(() => txn.end(), AssertionError);
    st.write().end();
  });

  it('a txn read at a future revision fails with FutureRev', () => {
    const st = new MvccStore();
    const txn = st.write();
    assert.throws(() => txn.range(b('a'), undefined, { revision: 2 }), (e) => e === Errors.FutureRev);
    txn.put(b('a'), b('1'), NO_LEASE);
    assert.equal(txn.range(b('a'), undefined, { revision: 2 }).count, 1);
    txn.end();
  });

  it('the txn exposes the store\'s committed and compacted revisions', () => {
    const st = new MvccStore();
    put(st, 'a', '1');
    put(st, 'a', '2');
    st.compact(2);
    const txn = st.write();
    assert.deepEqual([txn.currentRevision, txn.compactRevision, txn.revision], [3, 2, 4]);
    txn.end();
  });
});

describe('mvcc store: a write txn\'s point lookup (WriteTxn.get)', () => {
  it('gives range(key)\'s first kv, with or without the value, own writes, tombstones and compaction included', () => {
    const st = new MvccStore();
    const next = rng(2012);
    const keys = ['a', 'b', 'c', 'ab', 'zz'];
    for (let t = 0; t < 300; t++) {
      const txn = st.write();
      for (let op = 0; op < 1 + Math.floor(next() * 4); op++) {
        const key = b(keys[Math.floor(next() * keys.length)]!);
        for (const k of [...keys, '']) {
          const kb = b(k);
          assert.deepEqual(txn.get(kb, true), txn.range(kb, undefined, {}).kvs[0], `value of ${k}`);
          assert.deepEqual(txn.get(kb, false), txn.range(kb, undefined, { keysOnly: true }).kvs[0], `key of ${k}`);
        }
        if (next() < 0.7) txn.put(key, b(`v${t}.${op}`), next() < 0.2 ? 7n : NO_LEASE);
        else txn.deleteRange(key, undefined);
      }
      txn.end();
      if (t % 50 === 49) st.compact(st.currentRevision - 5);
    }
  });
});
