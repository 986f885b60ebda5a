// The permission checker (src/auth/perms.ts): a request is allowed when the union of the user's
// grants covers its whole key range — single keys, ranges, prefixes, from-key ("\0") and
// overlapping or touching grants.
import assert from 'node:assert/strict';
import { covers, mergeIntervals, PermType, toInterval, unify, type Permission } from '../../src/auth';

const B = (s: string) => Buffer.from(s, 'latin1');
const ZERO = '\0';
const perm = (permType: PermType, key: string, rangeEnd = ''): Permission => ({ permType, key: B(key), range_end: B(rangeEnd) });
const read = (perms: Permission[], key: string, end = '') => covers(unify(perms).read, B(key), B(end));
const write = (perms: Permission[], key: string, end = '') => covers(unify(perms).write, B(key), B(end));

describe('auth permission checker', () => {
  it('a single-key grant covers exactly that key', () => {
    const p = [perm(PermType.READ, 'foo')];
    assert.ok(read(p, 'foo'));
    assert.ok(!read(p, 'fo'));
    assert.ok(!read(p, 'foo0'));
    assert.ok(!read(p, 'foo', 'fop'), 'a range starting at the key is more than the key');
    assert.ok(read(p, 'foo', `foo${ZERO}`), '[foo, foo\\0) is the key itself');
  });

  it('a range grant [a, z) covers sub-ranges and keys inside, nothing reaching past z', () => {
    const p = [perm(PermType.WRITE, 'a', 'z')];
    assert.ok(write(p, 'a'));
    assert.ok(write(p, 'yzzz'));
    assert.ok(!write(p, 'z'));
    assert.ok(write(p, 'b', 'c'));
    assert.ok(write(p, 'a', 'z'));
    assert.ok(!write(p, 'a', 'za'));
    assert.ok(!write(p, 'a', ZERO), 'from-key is unbounded');
    assert.ok(!read(p, 'b'), 'WRITE does not grant READ');
  });

  it('a prefix grant covers the prefix range (etcdctl sends [p, p+1))', () => {
    const p = [perm(PermType.READWRITE, '/app/', '/app0')];
    assert.ok(read(p, '/app/x') && write(p, '/app/x'));
    assert.ok(read(p, '/app/', '/app0'));
    assert.ok(read(p, '/app/a', '/app/b'));
    assert.ok(!read(p, '/app'));
    assert.ok(!read(p, '/', '/b'));
  });

  it('from-key grants ("\\0" range end) cover everything at or after the key', () => {
    const p = [perm(PermType.READ, 'k', ZERO)];
    assert.ok(read(p, 'k'));
    assert.ok(read(p, '\xff\xff'));
    assert.ok(read(p, 'l', ZERO));
    assert.ok(read(p, 'k', ZERO));
    assert.ok(!read(p, 'j', ZERO));
    assert.ok(!read(p, 'a'));
    const all = [perm(PermType.READ, ZERO, ZERO)];
    assert.ok(read(all, ZERO, ZERO), 'key=range_end="\\0" is every key');
    assert.ok(read(all, 'anything'));
  });

  it('overlapping and touching grants (across roles) merge into one covering range', () => {
    const p = [perm(PermType.READ, 'a', 'c'), perm(PermType.READWRITE, 'b', 'e'), perm(PermType.READ, 'e', 'g')];
    assert.ok(read(p, 'a', 'g'), '[a,c) ∪ [b,e) ∪ [e,g) = [a,g)');
    assert.ok(!read(p, 'a', 'h'));
    assert.ok(write(p, 'b', 'e'));
    assert.ok(!write(p, 'a', 'e'), 'only [b,e) is writable');
    const gap = [perm(PermType.READ, 'a', 'c'), perm(PermType.READ, 'd', 'f')];
    assert.ok(!read(gap, 'a', 'f'), 'a gap [c,d) is not covered');
    assert.ok(read(gap, 'd', 'e'));
    // A single key and a range that starts right after it touch: [k, k\0) ∪ [k\0, m) = [k, m).
    assert.ok(read([perm(PermType.READ, 'k'), perm(PermType.READ, `k${ZERO}`, 'm')], 'k', 'm'));
  });

  it('mergeIntervals drops empty intervals and keeps unbounded ones unbounded', () => {
    const m = mergeIntervals([toInterval(B('b'), B('a')), toInterval(B('x'), B(ZERO)), toInterval(B('c'), B('y'))]);
    assert.equal(m.length, 1);
    assert.deepEqual(m[0]!.start, B('c'));
    assert.equal(m[0]!.end, null);
  });

  it('no grants: nothing is covered', () => {
    assert.ok(!read([], 'a'));
    assert.ok(!read([], ZERO, ZERO));
  });
});
