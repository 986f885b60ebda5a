// The search for a linearization of one key's history: Wing & Gong's algorithm with Lowe's
// memoization ("Testing for linearizability", 2017), as the Porcupine checker runs it.
//
// The history becomes a list of call and return events in time order (a call before a return at
// the same time: such operations overlap, which allows more orders, never fewer). The search walks
// the list from the front: at a call it tries to linearize that operation now (the model accepts it
// in the current state), removing its call and return from the list and starting again from the
// front; at a return it has met an operation that must already have taken effect but has not, so it
// undoes the last choice and tries the next call after it. A (set of linearized operations, state)
// pair seen before is not explored again: what can follow depends only on that pair. Reaching the
// end of the list, or a return at Infinity (only unknown-outcome operations are left, and they may
// take effect later or never), is a linearization; running out of choices proves there is none.
//
// Bounded: every step counts against a shared budget (steps, a deadline, bytes of memo), and a
// search that hits it answers 'unknown', never a verdict it has not proved.
import { assert } from '../util/assert';
import { Rng } from '../util/rng';
import { outcomeUnknown, type KvOp } from './history';
import { LinearizedSet } from './linearized_set';
import { ABSENT, REFUSED, internOps, keepsState, step } from './model';

export type Verdict = 'linearizable' | 'violation' | 'unknown';

/** Limits shared by every search of one check (each key, each minimization attempt). */
export interface Budget {
  /** Steps left (one step: one call tried or one choice undone). */
  stepsLeft: number;
  /** Absolute deadline on `now()`'s clock; Infinity for none. */
  deadlineMs: number;
  now: () => number;
  /** Bytes the memo of one search may hold (its bitsets). */
  memoBytesMax: number;
  /** Why the budget ran out, once it did. */
  exhausted?: string;
}

/** Steps between two looks at the clock. */
const CLOCK_EVERY_STEPS = 4096;

export function makeBudget(o: { stepsMax?: number; timeMs?: number; memoBytesMax?: number; now?: () => number } = {}): Budget {
  const now = o.now ?? (() => performance.now());
  return {
    stepsLeft: o.stepsMax ?? 200_000_000,
    deadlineMs: o.timeMs === undefined ? Infinity : now() + o.timeMs,
    now,
    memoBytesMax: o.memoBytesMax ?? 512 * 1024 * 1024,
  };
}

/** Takes one step from the budget; false once it is exhausted. The clock is read every
 *  CLOCK_EVERY_STEPS steps of the budget, not of one search: shrinking runs many short searches. */
function spend(b: Budget): boolean {
  if (b.exhausted) return false;
  if (b.stepsLeft <= 0) b.exhausted = 'step bound reached';
  else if (b.stepsLeft % CLOCK_EVERY_STEPS === 0 && b.now() > b.deadlineMs) b.exhausted = 'time bound reached';
  b.stepsLeft--;
  return b.exhausted === undefined;
}

/** Seeded, so that a check is reproducible; the two 32-bit halves make a false memo hit need a
 *  64-bit collision, and a hit is confirmed against the stored bitset anyway. */
const ZOBRIST_SEED = 0x5eed_1e;

interface MemoEntry {
  h2: number;
  state: number;
  /** LinearizedSet.snapshot(). */
  bits: Uint32Array;
}
/** What one memo entry costs besides its bitset (object, array slot, map share), roughly. */
const MEMO_ENTRY_OVERHEAD_BYTES = 96;

/** For each operation, the interchangeable one called just before it (-1: none or not one).
 *
 *  Writes (and CASes) of unknown outcome whose value nobody observes — no read returned it, no CAS
 *  compared it — are interchangeable: each may set the key, once, at any time after its call, to a
 *  value that only a failed CAS can tell from another such value (and only as "not the compared
 *  one"). A linearization that uses one of them while one called earlier is unused stays a
 *  linearization with the two swapped, so the search only ever uses them in call order. Without
 *  this, every such operation is tried at every point of the history: a run with a few hundred
 *  timeouts on one key would not finish. */
function interchangeable(ops: readonly KvOp[]): Int32Array {
  const observed = new Set<string | null>();
  for (const op of ops) {
    if (op.kind === 'read') observed.add(op.seen);
    if (op.kind === 'cas') observed.add(op.expect);
  }
  const before = new Int32Array(ops.length).fill(-1);
  let last = -1;
  ops.forEach((op, i) => {
    if (!outcomeUnknown(op) || op.kind === 'read' || observed.has(op.value)) return;
    before[i] = last;
    last = i;
  });
  return before;
}

export interface SearchResult {
  verdict: Verdict;
  steps: number;
}

/** Is this one key's history linearizable? `ops` may be in any order. */
export function searchKey(all: readonly KvOp[], budget: Budget): SearchResult {
  // A read that never returned constrains nothing and changes nothing. The others are numbered as
  // LinearizedSet wants them: known outcomes by return time, then the unknown ones.
  const known = all.filter((op) => !outcomeUnknown(op)).sort((a, b) => a.returnMs - b.returnMs);
  const unknown = all.filter((op) => outcomeUnknown(op) && op.kind !== 'read').sort((a, b) => a.callMs - b.callMs);
  const ops = [...known, ...unknown];
  const n = ops.length;
  if (n === 0) return { verdict: 'linearizable', steps: 0 };
  const model = internOps(ops);
  const pending = ops.map(outcomeUnknown);
  const before = interchangeable(ops);

  // Events 0..2n-1: event 2i is op i's call, 2i+1 its return. HEAD and TAIL are sentinels.
  const HEAD = 2 * n;
  const TAIL = 2 * n + 1;
  const order = Array.from({ length: 2 * n }, (_, e) => e);
  const time = (e: number) => ((e & 1) === 0 ? ops[e >> 1]!.callMs : ops[e >> 1]!.returnMs);
  order.sort((x, y) => time(x) - time(y) || (x & 1) - (y & 1) || x - y);
  const next = new Int32Array(2 * n + 2);
  const prev = new Int32Array(2 * n + 2);
  let last = HEAD;
  for (const e of order) {
    next[last] = e;
    prev[e] = last;
    last = e;
  }
  next[last] = TAIL;
  prev[TAIL] = last;
  next[TAIL] = -1;
  prev[HEAD] = -1;

  /** Removes event e from the list. */
  const unlink = (e: number) => {
    next[prev[e]!] = next[e]!;
    prev[next[e]!] = prev[e]!;
  };
  /** Puts e back where it was (its neighbours still point past it). */
  const relink = (e: number) => {
    next[prev[e]!] = e;
    prev[next[e]!] = e;
  };
  // Op i leaves the list as its call and return, and comes back in the reverse order, so that each
  // event finds its old neighbours in place.
  const lift = (i: number) => {
    unlink(2 * i);
    unlink(2 * i + 1);
  };
  const unlift = (i: number) => {
    relink(2 * i + 1);
    relink(2 * i);
  };

  const rng = new Rng(ZOBRIST_SEED);
  const z1 = Uint32Array.from({ length: n }, () => rng.nextU32());
  const z2 = Uint32Array.from({ length: n }, () => rng.nextU32());
  const linearized = new LinearizedSet(known.length, unknown.length);
  let h1 = 0;
  let h2 = 0;
  const flip = (i: number) => {
    linearized.flip(i);
    h1 = (h1 ^ z1[i]!) >>> 0;
    h2 = (h2 ^ z2[i]!) >>> 0;
  };
  // The memo: (h1, state) picks a bucket; an entry matches on h2, the state and the whole bitset.
  const memo = new Map<number, MemoEntry[]>();
  const memoBytesMax = budget.memoBytesMax;
  let memoBytes = 0;
  /** Records (linearized, state); false if it was seen before. */
  const remember = (state: number): boolean => {
    const k = (h1 ^ Math.imul(state, 0x9e3779b1)) & 0x3fffffff; // a small integer: V8 keeps it unboxed
    const bucket = memo.get(k);
    if (bucket) {
      for (const m of bucket) if (m.h2 === h2 && m.state === state && linearized.equals(m.bits)) return false;
    }
    const entry: MemoEntry = { h2, state, bits: linearized.snapshot() };
    if (bucket) bucket.push(entry);
    else memo.set(k, [entry]);
    memoBytes += entry.bits.byteLength + MEMO_ENTRY_OVERHEAD_BYTES;
    return true;
  };

  const stackOp: number[] = [];
  const stackState: number[] = [];
  let state = ABSENT;
  let steps = 0;
  let entry = next[HEAD]!;
  for (;;) {
    steps++;
    if (!spend(budget) || memoBytes > memoBytesMax) {
      if (memoBytes > memoBytesMax) budget.exhausted ??= `memo bound reached (${memoBytesMax} bytes)`;
      return { verdict: 'unknown', steps };
    }
    if (entry === TAIL) return { verdict: 'linearizable', steps };
    const i = entry >> 1;
    if ((entry & 1) === 0) {
      // Of interchangeable operations, only the earliest one not yet linearized is tried.
      const b = before[i]!;
      const after = b >= 0 && !linearized.has(b) ? REFUSED : step(state, model[i]!);
      if (after !== REFUSED) {
        flip(i);
        if (remember(after)) {
          stackOp.push(i);
          stackState.push(state);
          state = after;
          lift(i);
          entry = next[HEAD]!;
          continue;
        }
        flip(i);
      }
      entry = next[entry]!;
      continue;
    }
    // A return: op i had to take effect by now. Events at Infinity sort last, so meeting one means
    // every operation with a known outcome is linearized.
    if (pending[i]) return { verdict: 'linearizable', steps };
    // Undo the last choice. If it was a read (or a failed CAS), undo the one before it too: such an
    // operation, once called and matching the state, can be linearized right away in any
    // linearization that extends the choices before it (it changes no state, and everything that
    // had to precede it already does), so if none extends the choices with it, none extends them
    // without it either.
    let j: number | undefined;
    do {
      j = stackOp.pop();
      if (j === undefined) return { verdict: 'violation', steps };
      state = stackState.pop()!;
      flip(j);
      unlift(j);
    } while (keepsState(model[j]!));
    entry = next[2 * j]!;
    assert(entry >= 0, 'the search left the event list');
  }
}
