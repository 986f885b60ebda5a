// The linearizability checker on histories whose answer is known: hand-written anomalies (stale
// read, lost write, CAS anomalies), overlapping operations that are fine, unknown outcomes; the
// shrinker; the bounds (an exhausted budget answers 'unknown', never a verdict); histories recorded
// from a real sequential register (always linearizable) and random mutations of small ones, whose
// verdict must equal a brute-force search over every order.
import assert from 'node:assert/strict';
import { checkHistory, makeBudget, minimizeViolation, searchKey, type KvOp } from '../../src/linearizability';
import { LinearizedSet } from '../../src/linearizability/linearized_set';
import { removable } from '../../src/linearizability/minimize';
import { Rng } from '../../src/util/rng';
import { INF, bruteForceLinearizable, cas, generateLinearizable, mutate, r, w } from './histories';

const verdict = (ops: KvOp[]) => checkHistory(ops).verdict;

describe('linearizability checker: hand-written histories', () => {
  it('sequential writes and reads of the latest value are linearizable; the empty history too', () => {
    assert.equal(verdict([]), 'linearizable');
    assert.equal(verdict([r(null, 0, 1), w('a', 2, 3), r('a', 4, 5), w('b', 6, 7), r('b', 8, 9)]), 'linearizable');
  });

  it('a stale read (the value before an acknowledged write, read after it) is a violation', () => {
    const res = checkHistory([w('a', 0, 1), w('b', 2, 3), r('a', 4, 5)]);
    assert.equal(res.verdict, 'violation');
    assert.equal(res.violation?.subHistory.length, 3);
  });

  it('a lost write (acknowledged, then the key reads as absent) is a violation', () => {
    assert.equal(verdict([w('a', 0, 1), r(null, 2, 3)]), 'violation');
    assert.equal(verdict([w('a', 0, 1), r('a', 2, 3), r(null, 4, 5)]), 'violation');
  });

  it('a read of a value nobody wrote is a violation', () => {
    assert.equal(verdict([w('a', 0, 1), r('zzz', 2, 3)]), 'violation');
  });

  it('CAS: two that both succeed from the same value, one that fails on a matching value, one that succeeds on an absent key', () => {
    assert.equal(verdict([w('a', 0, 1), cas('a', 'b', true, 2, 3), cas('a', 'c', true, 4, 5)]), 'violation');
    assert.equal(verdict([w('a', 0, 1), cas('a', 'b', true, 2, 10, 1), cas('a', 'c', true, 2, 10, 2)]), 'violation', 'concurrent: still only one can win');
    assert.equal(verdict([w('a', 0, 1), cas('a', 'b', false, 2, 3)]), 'violation');
    assert.equal(verdict([cas('a', 'b', true, 0, 1)]), 'violation');
    assert.equal(verdict([w('a', 0, 1), r('a', 2, 3), cas('a', 'b', true, 4, 5), cas('a', 'c', false, 6, 7), r('b', 8, 9)]), 'linearizable');
    assert.equal(verdict([w('a', 0, 1), cas('a', 'b', true, 2, 10, 1), cas('a', 'c', false, 2, 10, 2), r('b', 11, 12)]), 'linearizable');
    assert.equal(verdict([cas('a', 'b', false, 0, 1)]), 'linearizable', 'etcd: a value compare on a missing key fails');
  });

  it('overlapping operations may take effect in either order', () => {
    // A read during a write may see the old or the new value ...
    assert.equal(verdict([w('a', 0, 1), w('b', 2, 10), r('b', 3, 4), r('b', 5, 6)]), 'linearizable');
    assert.equal(verdict([w('a', 0, 1), w('b', 2, 10), r('a', 3, 4), r('b', 5, 6)]), 'linearizable');
    // ... but once one read saw the new value, a later one may not see the old.
    assert.equal(verdict([w('a', 0, 1), w('b', 2, 10), r('b', 3, 4), r('a', 5, 6)]), 'violation');
    // Two concurrent writes: either may win, and reads after both agree on the winner.
    assert.equal(verdict([w('a', 0, 10, 1), w('b', 0, 10, 2), r('a', 11, 12), r('a', 13, 14)]), 'linearizable');
    assert.equal(verdict([w('a', 0, 10, 1), w('b', 0, 10, 2), r('b', 11, 12), r('a', 13, 14)]), 'violation');
    // A read whose interval touches a write's return at the same instant overlaps it.
    assert.equal(verdict([w('a', 0, 5), r(null, 5, 6)]), 'linearizable');
  });

  it('an unknown outcome may take effect at any time after its call, or never, but only once', () => {
    assert.equal(verdict([w('a', 0, INF), r(null, 1, 2), r('a', 5, 6)]), 'linearizable');
    assert.equal(verdict([w('a', 0, INF), r(null, 1, 2), r(null, 5, 6)]), 'linearizable', 'never applied');
    assert.equal(verdict([w('a', 0, INF), r('a', 1, 2), r(null, 5, 6)]), 'violation', 'applied, then gone');
    assert.equal(verdict([r('a', 1, 2), w('a', 3, INF)]), 'violation', 'seen before it was called');
    // A CAS of unknown outcome either did its compare-and-put or nothing.
    assert.equal(verdict([w('a', 0, 1), cas('a', 'b', false, 2, INF), r('b', 5, 6), r('b', 7, 8)]), 'linearizable');
    assert.equal(verdict([w('a', 0, 1), cas('a', 'b', false, 2, INF), r('a', 5, 6)]), 'linearizable');
    assert.equal(verdict([w('a', 0, 1), cas('a', 'b', false, 2, INF), r('b', 5, 6), r('a', 7, 8)]), 'violation');
    assert.equal(verdict([w('c', 0, 1), cas('a', 'b', false, 2, INF), r('b', 5, 6)]), 'violation', 'its compare could never hold');
    // A read of unknown outcome says nothing, whatever its (meaningless) value field holds.
    assert.equal(verdict([w('a', 0, 1), r('zzz', 2, INF)]), 'linearizable');
  });

  it('keys are checked separately; the verdict names the key at fault', () => {
    const other = (op: KvOp): KvOp => ({ ...op, key: 'other' });
    const res = checkHistory([w('a', 0, 1), r('a', 2, 3), other(w('x', 0, 1)), other(r(null, 2, 3))]);
    assert.equal(res.verdict, 'violation');
    assert.equal(res.violation?.key, 'other');
    assert.deepEqual(res.keys.map((k) => k.key), ['k', 'other']);
  });
});

describe('linearizability checker: shrinking a violation', () => {
  it('a stale read hidden in 600 operations of 6 clients shrinks to the write, the overwrite and the read', () => {
    const base = generateLinearizable(7, { clients: 6, keys: 1, opsPerClient: 100, unknownRate: 0, latencyMsMax: 5 });
    // A read long after every other operation, of a value some completed write put earlier.
    const endMs = Math.max(...base.map((op) => op.returnMs));
    const old = base.find((op) => op.kind === 'write')!;
    assert.ok(old.kind === 'write');
    const stale: KvOp = { ...r(old.value, endMs + 10, endMs + 11, 99), key: old.key };
    const res = checkHistory([...base, stale]);
    assert.equal(res.verdict, 'violation');
    const sub = res.violation!.subHistory;
    assert.ok(res.violation!.minimal);
    assert.ok(sub.includes(stale), 'the stale read is in the sub-history');
    assert.ok(sub.includes(old), 'and the write it saw');
    assert.ok(sub.length <= 4, `shrunk to ${sub.length} operations:\n${sub.map((op) => JSON.stringify(op)).join('\n')}`);
    assert.equal(bruteForceLinearizable(sub), false, 'the sub-history is itself a violation');
    for (const op of sub) assert.ok(base.includes(op) || op === stale, 'made of recorded operations, unchanged');
  });

  it('never drops a write that a failed CAS may need (the shown part must prove the whole wrong)', () => {
    // Linearizable as a whole (b lands between a and the CAS), not without "write b".
    const whole = [w('a', 0, 1), w('b', 2, 3), cas('a', 'c', false, 4, 5)];
    assert.equal(verdict(whole), 'linearizable');
    assert.equal(verdict([whole[0]!, whole[2]!]), 'violation');
    assert.equal(removable(whole, new Set([whole[1]!])), false);
    // A write somebody read stays too; reads and failed CASes can always go.
    const read = [w('a', 0, 1), r('a', 2, 3)];
    assert.equal(removable(read, new Set([read[0]!])), false);
    assert.equal(removable(read, new Set([read[1]!])), true);
    assert.equal(removable(whole, new Set([whole[2]!])), true);
  });

  it('each sub-history of a random violation is a violation by brute force, and 1-minimal', () => {
    let shrunk = 0;
    for (let seed = 1; seed <= 300; seed++) {
      const ops = mutate(generateLinearizable(seed, { clients: 3, keys: 1, opsPerClient: 3, unknownRate: 0.15, latencyMsMax: 6 }), seed * 31);
      if (searchKey(ops, makeBudget()).verdict !== 'violation') continue;
      const m = minimizeViolation(ops, makeBudget());
      assert.ok(m.minimal);
      assert.equal(bruteForceLinearizable(m.ops), false, `seed ${seed}`);
      for (const op of m.ops) {
        const without = new Set([op]);
        if (m.ops.length > 1 && removable(m.ops, without)) assert.equal(bruteForceLinearizable(m.ops.filter((x) => x !== op)), true, `seed ${seed}: could still drop ${JSON.stringify(op)}`);
      }
      if (m.ops.length < ops.length) shrunk++;
    }
    assert.ok(shrunk > 20, `only ${shrunk} violations were shrunk`);
  });
});

describe('linearizability checker: bounds', () => {
  // 12 concurrent writes, then a read of a value none of them wrote: proving it a violation means
  // trying every subset of the writes (2^12 memo states).
  const hard = [...Array.from({ length: 12 }, (_, i) => w(`v${i}`, 0, 100, i)), r('nobody', 200, 201)];

  it('a search that hits the step bound answers unknown, not a verdict', () => {
    const res = checkHistory(hard, { stepsMax: 5_000 });
    assert.equal(res.verdict, 'unknown');
    assert.match(res.unknownReason!, /step bound/);
    assert.equal(checkHistory(hard).verdict, 'violation', 'with room, it is proven');
  });

  it('the time bound and the memo bound answer unknown too', () => {
    let t = 0;
    const res = checkHistory(hard, { timeMs: 5, now: () => (t += 1) });
    assert.equal(res.verdict, 'unknown');
    assert.match(res.unknownReason!, /time bound/);
    const memo = checkHistory(hard, { memoBytesMax: 10_000 });
    assert.equal(memo.verdict, 'unknown');
    assert.match(memo.unknownReason!, /memo bound/);
  });

  it('shrinking is bounded by its own time bound too, across its many short searches', () => {
    const base = generateLinearizable(5, { clients: 6, keys: 1, opsPerClient: 60, unknownRate: 0, latencyMsMax: 5 });
    const old = base.find((op) => op.kind === 'write')!;
    assert.ok(old.kind === 'write');
    const ops = [...base, { ...r(old.value, 1e6, 1e6 + 1, 99), key: old.key }];
    let t = 0;
    const res = checkHistory(ops, { minimizeTimeMs: 3, now: () => (t += 1) });
    assert.equal(res.verdict, 'violation');
    assert.equal(res.violation!.minimal, false);
    assert.ok(res.violation!.subHistory.length > 4, 'stopped early, before it got small');
  });

  it('a linearizable history that needs more steps than allowed is unknown, not a violation', () => {
    const ops = generateLinearizable(3, { clients: 8, keys: 1, opsPerClient: 50, unknownRate: 0.05, latencyMsMax: 10 });
    assert.equal(checkHistory(ops).verdict, 'linearizable');
    assert.equal(checkHistory(ops, { stepsMax: 50 }).verdict, 'unknown');
  });
});

describe('linearizability checker: search internals', () => {
  it('LinearizedSet copies are equal exactly when the sets are (random flips against a plain Set)', () => {
    const rng = new Rng(11);
    for (let round = 0; round < 200; round++) {
      const known = rng.int(100);
      const unknown = rng.int(70);
      const a = new LinearizedSet(known, unknown);
      const ref = new Set<number>();
      const copies: { snap: Uint32Array; members: string }[] = [];
      for (let f = 0; f < 150 && known + unknown > 0; f++) {
        const i = rng.int(known + unknown);
        a.flip(i);
        if (ref.has(i)) ref.delete(i);
        else ref.add(i);
        for (let j = 0; j < known + unknown; j++) assert.equal(a.has(j), ref.has(j));
        const members = [...ref].sort((x, y) => x - y).join(',');
        for (const c of copies) assert.equal(a.equals(c.snap), c.members === members);
        if (rng.int(3) === 0) copies.push({ snap: a.snapshot(), members });
      }
    }
  });

  /** `rounds` rounds of: a write that times out (nobody reads it), a write, a read of it, a CAS
   *  that succeeds and one that fails. */
  const withLostWrites = (rounds: number): KvOp[] => {
    const ops: KvOp[] = [];
    for (let i = 0; i < rounds; i++) {
      ops.push(w(`lost${i}`, i * 10, INF, 1 + (i % 7)));
      ops.push(w(`v${i}`, i * 10 + 1, i * 10 + 3, 0));
      ops.push(r(`v${i}`, i * 10 + 4, i * 10 + 5, 0));
      ops.push(cas(`v${i}`, `c${i}`, true, i * 10 + 6, i * 10 + 7, 0));
      ops.push(cas(`v${i}`, `x${i}`, false, i * 10 + 8, i * 10 + 9, 0));
    }
    return ops;
  };

  it('300 timed-out writes nobody read, among reads and CASes on one key, are checked in few steps', () => {
    const res = checkHistory(withLostWrites(300), { stepsMax: 2_000_000 });
    assert.equal(res.verdict, 'linearizable');
    assert.ok(res.steps < 1_000_000, `${res.steps} steps`);
  });

  it('a timed-out write read back, then a read of an older value: a violation, shrunk to the ops that show it', () => {
    const ops = [...withLostWrites(25), r('lost5', 500, 501, 0), r('c24', 502, 503, 0)];
    const bad = checkHistory(ops);
    assert.equal(bad.verdict, 'violation');
    const sub = bad.violation!.subHistory;
    assert.ok(bad.violation!.minimal);
    assert.ok(sub.some((op) => op.kind === 'read' && op.seen === 'lost5'));
    assert.ok(sub.some((op) => op.kind === 'write' && op.value === 'lost5'));
    assert.ok(sub.length <= 6, `${sub.length} operations`);
    assert.equal(bruteForceLinearizable(sub), false);
  });
});

describe('linearizability checker: random histories', () => {
  it('every history recorded from a real sequential register is linearizable (200 seeds)', () => {
    for (let seed = 1; seed <= 200; seed++) {
      const ops = generateLinearizable(seed, { clients: 1 + (seed % 6), keys: 1 + (seed % 3), opsPerClient: 40, unknownRate: 0.05, latencyMsMax: 1 + (seed % 10) });
      const res = checkHistory(ops);
      assert.equal(res.verdict, 'linearizable', `seed ${seed}: ${JSON.stringify(res.violation)}`);
    }
  });

  it('on small mutated histories the verdict equals a brute-force search over every order (1,500 seeds)', () => {
    let violations = 0;
    for (let seed = 1; seed <= 1500; seed++) {
      const ops = mutate(generateLinearizable(seed, { clients: 2 + (seed % 2), keys: 1, opsPerClient: 2 + (seed % 2), unknownRate: 0.15, latencyMsMax: 4 + (seed % 5) }), seed * 7919);
      const expected = bruteForceLinearizable(ops) ? 'linearizable' : 'violation';
      assert.equal(verdict(ops), expected, `seed ${seed}: ${JSON.stringify(ops)}`);
      if (expected === 'violation') violations++;
    }
    assert.ok(violations > 300 && violations < 1400, `${violations} of 1,500 mutations were violations: both answers must be exercised`);
  });
});
