// Histories for the checker's tests: a compact way to write one by hand, a generator that records
// concurrent clients against a real sequential register (so its histories are linearizable by
// construction), mutations of them, and a brute-force checker (every order that respects real time)
// to compare the real one against on small histories.
import type { KvOp } from '../../src/linearizability';
import { Rng } from '../../src/util/rng';

const INF = Infinity;

/** Hand-written operations on key "k": r('a', 0, 1) reads "a" in [0, 1]; r(null, ...) reads nothing;
 *  w('a', 0, 1) writes; cas('a', 'b', true, 0, 1); a return of INF is an unknown outcome. */
export const r = (seen: string | null, callMs: number, returnMs: number, client = 0): KvOp => ({ kind: 'read', key: 'k', client, seen, callMs, returnMs });
export const w = (value: string, callMs: number, returnMs: number, client = 0): KvOp => ({ kind: 'write', key: 'k', client, value, callMs, returnMs });
export const cas = (expect: string, value: string, succeeded: boolean, callMs: number, returnMs: number, client = 0): KvOp => ({ kind: 'cas', key: 'k', client, expect, value, succeeded, callMs, returnMs });
export { INF };

export interface GenOptions {
  clients: number;
  keys: number;
  opsPerClient: number;
  /** Share of operations whose outcome the client never learns. */
  unknownRate: number;
  /** Longest operation, in ms. */
  latencyMsMax: number;
}

/** Concurrent clients, each doing one operation at a time, against one sequential register per key:
 *  every operation takes effect at a random instant inside its interval (an unknown-outcome one
 *  maybe never), and its result is what the register said at that instant. */
export function generateLinearizable(seed: number, o: GenOptions): KvOp[] {
  const rng = new Rng(seed);
  interface Slot {
    client: number;
    callMs: number;
    atMs: number;
    returnMs: number;
    unknown: boolean;
    applies: boolean;
  }
  const slots: Slot[] = [];
  for (let c = 0; c < o.clients; c++) {
    let t = rng.float() * o.latencyMsMax;
    for (let i = 0; i < o.opsPerClient; i++) {
      const callMs = t + rng.float() * 2;
      const atMs = callMs + rng.float() * o.latencyMsMax;
      const returnMs = atMs + rng.float() * o.latencyMsMax;
      const unknown = rng.float() < o.unknownRate;
      slots.push({ client: c, callMs, atMs, returnMs: unknown ? INF : returnMs, unknown, applies: !unknown || rng.float() < 0.5 });
      t = returnMs; // after a timeout the client moves on
    }
  }
  slots.sort((a, b) => a.atMs - b.atMs);
  const state = new Map<string, string | null>();
  const written: string[] = [];
  const ops: KvOp[] = [];
  let seq = 0;
  for (const s of slots) {
    const key = `k${rng.int(o.keys)}`;
    const cur = state.get(key) ?? null;
    const base = { client: s.client, key, callMs: s.callMs, returnMs: s.returnMs };
    const dice = rng.float();
    if (dice < 0.45) {
      ops.push({ ...base, kind: 'read', seen: s.unknown ? null : cur });
      continue;
    }
    const value = `v${seq++}`;
    if (dice < 0.75) {
      if (s.applies) state.set(key, value);
      written.push(value);
      ops.push({ ...base, kind: 'write', value });
      continue;
    }
    // A CAS comparing the current value most of the time, else some older (or never written) one.
    const expect = cur !== null && rng.float() < 0.6 ? cur : rng.float() < 0.8 && written.length > 0 ? written[rng.int(written.length)]! : `never${seq}`;
    const succeeded = cur === expect;
    if (succeeded && s.applies) state.set(key, value);
    written.push(value);
    ops.push({ ...base, kind: 'cas', expect, value, succeeded: s.unknown ? false : succeeded });
  }
  return ops.sort((a, b) => a.callMs - b.callMs);
}

/** One random change that usually (not always) breaks linearizability. */
export function mutate(ops: readonly KvOp[], seed: number): KvOp[] {
  const rng = new Rng(seed);
  const out = ops.map((op) => ({ ...op }));
  const i = rng.int(out.length);
  const op = out[i]!;
  const values = [null, ...out.flatMap((x) => (x.kind === 'read' ? [] : [x.value]))];
  const choice = rng.int(4);
  if (choice === 0 && op.kind === 'read') op.seen = values[rng.int(values.length)]!;
  else if (choice === 1 && op.kind === 'cas') op.succeeded = !op.succeeded;
  else if (choice === 2 && op.returnMs !== INF) {
    // Later than it was: it now follows operations it overlapped.
    const shift = rng.float() * 20;
    op.callMs += shift;
    op.returnMs += shift;
  } else if (op.kind === 'read') op.seen = values[rng.int(values.length)]!;
  else if (op.kind === 'cas') op.expect = values.filter((v): v is string => v !== null)[rng.int(values.length - 1)] ?? op.expect;
  else op.callMs = Math.max(0, op.callMs - rng.float() * 20);
  return out.sort((a, b) => a.callMs - b.callMs);
}

/** The register, written independently of src/linearizability/model.ts: the state after `op`, or
 *  undefined when it cannot take effect. */
function registerStep(state: string | null, op: KvOp): string | null | undefined {
  const unknown = op.returnMs === INF;
  if (op.kind === 'read') return state === op.seen ? state : undefined;
  if (op.kind === 'write') return op.value;
  const matches = state !== null && state === op.expect;
  if (unknown || op.succeeded) return matches ? op.value : undefined;
  return matches ? undefined : state;
}

/** Tries every order that respects real time (a before b when a returned before b was called); an
 *  unknown-outcome operation may also be left out. Exponential: for a handful of operations. */
export function bruteForceLinearizable(history: readonly KvOp[]): boolean {
  const ops = history.filter((op) => !(op.kind === 'read' && op.returnMs === INF));
  const placed = ops.map(() => false);
  const done = () => ops.every((op, i) => placed[i] || op.returnMs === INF);
  const go = (state: string | null): boolean => {
    if (done()) return true;
    for (let i = 0; i < ops.length; i++) {
      if (placed[i]) continue;
      if (ops.some((o, j) => j !== i && !placed[j] && o.returnMs < ops[i]!.callMs)) continue;
      const after = registerStep(state, ops[i]!);
      if (after === undefined) continue;
      placed[i] = true;
      if (go(after)) return true;
      placed[i] = false;
    }
    return false;
  };
  return go(null);
}
