// Range reads: etcd's key/range_end conventions, limit/more/count, sorting, filters, keys/count only,
// history reads.
import { strict as assert } from 'node:assert';
import { MvccStore, NO_LEASE, SortOrder, SortTarget, KeyValue } from '../../src/mvcc';
import { Errors } from '../../src/util/errors';
import { b, s, put, del, keysOf } from './helpers';

/** Store with keys a..e written in the order c, a, e, b, d, then a updated and b updated twice. */
function fiveKeys(): MvccStore {
  const st = new MvccStore();
  for (const [k, v] of [['c', 'v3'], ['a', 'v1'], ['e', 'v0'], ['b', 'v9'], ['d', 'v2'], ['a', 'v5'], ['b', 'v4'], ['b', 'v6']]) {
    put(st, k, v);
  }
  return st;
}
// revisions: c=2, a=3, e=4, b=5, d=6, a=7, b=8, b=9

describe('mvcc range: key ranges', () => {
  const st = fiveKeys();

  it('an empty or missing range_end reads a single key', () => {
    assert.deepEqual(keysOf(st.range(b('b'), undefined).kvs), ['b']);
    assert.deepEqual(keysOf(st.range(b('b'), Buffer.alloc(0)).kvs), ['b']);
    assert.deepEqual(keysOf(st.range(b('bb'), undefined).kvs), []);
  });

  it('[key, range_end) by byte order; prefix by key+1', () => {
    assert.deepEqual(keysOf(st.range(b('b'), b('d')).kvs), ['b', 'c']);
    const st2 = new MvccStore();
    for (const k of ['foo', 'foo/a', 'foo/b', 'fop', 'fo']) put(st2, k, '1');
    assert.deepEqual(keysOf(st2.range(b('foo/'), b('foo0')).kvs), ['foo/a', 'foo/b']);
    assert.deepEqual(keysOf(st2.range(b('foo'), b('fop')).kvs), ['foo', 'foo/a', 'foo/b']);
  });

  it('range_end "\\0" reads every key >= key; key = range_end = "\\0" reads all keys', () => {
    assert.deepEqual(keysOf(st.range(b('c'), b('\0')).kvs), ['c', 'd', 'e']);
    assert.deepEqual(keysOf(st.range(b('\0'), b('\0')).kvs), ['a', 'b', 'c', 'd', 'e']);
  });

  it('range_end <= key is an empty range', () => {
    assert.equal(st.range(b('c'), b('c')).count, 0);
    assert.equal(st.range(b('d'), b('b')).count, 0);
    assert.deepEqual(st.range(b('d'), b('b')).kvs, []);
  });

  it('binary keys with 0x00 and 0xff bytes order by raw bytes', () => {
    const st2 = new MvccStore();
    const keys = [
      Buffer.from([0x00]), Buffer.from([0x00, 0x00]), Buffer.from([0x01]), Buffer.from([0x7f]),
      Buffer.from([0x80]), Buffer.from([0xff]), Buffer.from([0xff, 0x00]), Buffer.from([0xff, 0xff]),
    ];
    for (const k of [...keys].reverse()) put(st2, k, k);
    const all = st2.range(Buffer.from([0]), Buffer.from([0])).kvs;
    assert.deepEqual(all.map((kv) => Buffer.from(kv.key, "latin1").toString("hex")), keys.map((k) => k.toString('hex')));
    // every key >= 0x80
    const hi = st2.range(Buffer.from([0x80]), Buffer.from([0])).kvs;
    assert.deepEqual(hi.map((kv) => Buffer.from(kv.key, "latin1").toString("hex")), ['80', 'ff', 'ff00', 'ffff']);
    // prefix 0xff: [ff, ff ff + 1) -- the prefix end of 0xff is "\0" (from key)
    const pre = st2.range(Buffer.from([0x00]), Buffer.from([0x01])).kvs;
    assert.deepEqual(pre.map((kv) => Buffer.from(kv.key, "latin1").toString("hex")), ['00', '0000']);
    assert.equal(s(st2.range(Buffer.from([0xff, 0x00]), undefined).kvs[0].key), s(Buffer.from([0xff, 0x00])));
  });
});

describe('mvcc range: limit, count, more', () => {
  const st = fiveKeys();

  it('count ignores limit; more says limit cut keys off', () => {
    const r = st.range(b('a'), b('z'), { limit: 2 });
    assert.deepEqual(keysOf(r.kvs), ['a', 'b']);
    assert.equal(r.count, 5);
    assert.equal(r.more, true);
    const all = st.range(b('a'), b('z'), { limit: 5 });
    assert.equal(all.more, false);
    assert.equal(all.kvs.length, 5);
    assert.equal(st.range(b('a'), b('z'), { limit: 0 }).kvs.length, 5);
  });

  it('the response revision is the current revision, also for reads in the past', () => {
    assert.equal(st.range(b('a'), undefined, { revision: 3 }).revision, 9);
  });
});

describe('mvcc range: sorting', () => {
  const st = fiveKeys();
  const all = (sortOrder: SortOrder, sortTarget: SortTarget, limit = 0): KeyValue[] =>
    st.range(b('\0'), b('\0'), { sortOrder, sortTarget, limit }).kvs;
  // values: a=v5 (ver 2, create 3, mod 7), b=v6 (ver 3, create 5, mod 9), c=v3 (1,2,2), d=v2 (1,6,6), e=v0 (1,4,4)

  it('NONE and ASCEND by KEY are key order; DESCEND by KEY is reversed', () => {
    assert.deepEqual(keysOf(all(SortOrder.NONE, SortTarget.KEY)), ['a', 'b', 'c', 'd', 'e']);
    assert.deepEqual(keysOf(all(SortOrder.ASCEND, SortTarget.KEY)), ['a', 'b', 'c', 'd', 'e']);
    assert.deepEqual(keysOf(all(SortOrder.DESCEND, SortTarget.KEY)), ['e', 'd', 'c', 'b', 'a']);
  });

  it('by VERSION (stable: ties stay in key order)', () => {
    assert.deepEqual(keysOf(all(SortOrder.ASCEND, SortTarget.VERSION)), ['c', 'd', 'e', 'a', 'b']);
    assert.deepEqual(keysOf(all(SortOrder.DESCEND, SortTarget.VERSION)), ['b', 'a', 'c', 'd', 'e']);
  });

  it('by CREATE, MOD and VALUE in both directions', () => {
    assert.deepEqual(keysOf(all(SortOrder.ASCEND, SortTarget.CREATE)), ['c', 'a', 'e', 'b', 'd']);
    assert.deepEqual(keysOf(all(SortOrder.DESCEND, SortTarget.CREATE)), ['d', 'b', 'e', 'a', 'c']);
    assert.deepEqual(keysOf(all(SortOrder.ASCEND, SortTarget.MOD)), ['c', 'e', 'd', 'a', 'b']);
    assert.deepEqual(keysOf(all(SortOrder.DESCEND, SortTarget.MOD)), ['b', 'a', 'd', 'e', 'c']);
    assert.deepEqual(keysOf(all(SortOrder.ASCEND, SortTarget.VALUE)), ['e', 'd', 'c', 'a', 'b']);
    assert.deepEqual(keysOf(all(SortOrder.DESCEND, SortTarget.VALUE)), ['b', 'a', 'c', 'd', 'e']);
  });

  it('NONE with a non-KEY target sorts ascending (as etcd)', () => {
    assert.deepEqual(keysOf(all(SortOrder.NONE, SortTarget.MOD)), ['c', 'e', 'd', 'a', 'b']);
  });

  it('limit applies after sorting', () => {
    const r = st.range(b('\0'), b('\0'), { sortOrder: SortOrder.DESCEND, sortTarget: SortTarget.KEY, limit: 2 });
    assert.deepEqual(keysOf(r.kvs), ['e', 'd']);
    assert.equal(r.more, true);
    assert.equal(r.count, 5);
    assert.deepEqual(keysOf(all(SortOrder.DESCEND, SortTarget.MOD, 3)), ['b', 'a', 'd']);
  });
});

describe('mvcc range: keysOnly, countOnly and filters', () => {
  const st = fiveKeys();

  it('keysOnly empties values and keeps the other fields', () => {
    const r = st.range(b('a'), b('c'), { keysOnly: true });
    assert.deepEqual(keysOf(r.kvs), ['a', 'b']);
    for (const kv of r.kvs) assert.equal(kv.value.length, 0);
    assert.deepEqual(r.kvs.map((kv) => [kv.version, kv.createRevision, kv.modRevision]), [[2, 3, 7], [3, 5, 9]]);
    assert.equal(s(st.range(b('a'), undefined).kvs[0].value), 'v5', 'the stored value is untouched');
  });

  it('countOnly returns the count and no kvs', () => {
    const r = st.range(b('a'), b('z'), { countOnly: true, limit: 1 });
    assert.deepEqual(r.kvs, []);
    assert.equal(r.count, 5);
    assert.equal(r.more, false);
  });

  it('min/max mod and create revision filters apply before limit; count ignores them', () => {
    const all = (o: object) => st.range(b('\0'), b('\0'), o);
    assert.deepEqual(keysOf(all({ minModRevision: 6 }).kvs), ['a', 'b', 'd']);
    assert.deepEqual(keysOf(all({ maxModRevision: 4 }).kvs), ['c', 'e']);
    assert.deepEqual(keysOf(all({ minCreateRevision: 4 }).kvs), ['b', 'd', 'e']);
    assert.deepEqual(keysOf(all({ maxCreateRevision: 3 }).kvs), ['a', 'c']);
    assert.deepEqual(keysOf(all({ minModRevision: 4, maxModRevision: 7 }).kvs), ['a', 'd', 'e']);
    const limited = all({ minModRevision: 6, limit: 2 });
    assert.deepEqual(keysOf(limited.kvs), ['a', 'b']);
    assert.equal(limited.more, true);
    assert.equal(limited.count, 5);
    const exact = all({ minModRevision: 6, limit: 3 });
    assert.equal(exact.more, false);
  });
});

describe('mvcc range: reads at past revisions', () => {
  it('each revision reads exactly what was current then, tombstones included', () => {
    const st = new MvccStore();
    put(st, 'a', '1'); // 2
    put(st, 'b', '1'); // 3
    put(st, 'a', '2'); // 4
    del(st, 'b'); // 5
    put(st, 'b', '2'); // 6
    const at = (rev: number) => st.range(b('a'), b('c'), { revision: rev }).kvs.map((kv) => `${s(kv.key)}=${s(kv.value)}@${kv.version}`);
    assert.deepEqual(at(1), []);
    assert.deepEqual(at(2), ['a=1@1']);
    assert.deepEqual(at(3), ['a=1@1', 'b=1@1']);
    assert.deepEqual(at(4), ['a=2@2', 'b=1@1']);
    assert.deepEqual(at(5), ['a=2@2']);
    assert.deepEqual(at(6), ['a=2@2', 'b=2@1']);
    assert.equal(st.range(b('a'), b('c'), { revision: 5 }).count, 1);
  });

  it('revision 0 or negative reads the current revision', () => {
    const st = new MvccStore();
    put(st, 'a', '1');
    put(st, 'a', '2');
    assert.equal(s(st.range(b('a'), undefined, { revision: 0 }).kvs[0].value), '2');
    assert.equal(s(st.range(b('a'), undefined, { revision: -1 }).kvs[0].value), '2');
  });

  it('a read above the current revision fails with FutureRev', () => {
    const st = new MvccStore();
    put(st, 'a', '1');
    assert.throws(() => st.range(b('a'), undefined, { revision: 3 }), (e) => e === Errors.FutureRev);
  });

  it('a txn that deleted keys reads them as gone', () => {
    const st = new MvccStore();
    put(st, 'a', '1');
    const txn = st.write();
    txn.deleteRange(b('a'), undefined);
    assert.equal(txn.range(b('a'), undefined).count, 0);
    txn.put(b('a'), b('x'), NO_LEASE);
    assert.equal(txn.range(b('a'), undefined).kvs[0].version, 1);
    txn.end();
  });
});
