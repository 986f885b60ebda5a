// The sequential specification the checker holds a history against: one key of etcd as a register.
// Its state is the key's value or "absent"; a read must see the state, a write sets it, a CAS
// (Txn comparing the value) succeeds iff the state equals the compared value — never on an absent
// key, as etcd's value compares — and then sets it, and a failed CAS leaves it unchanged.
//
// For speed the search works on interned states: every distinct value of one key's history gets a
// small integer, ABSENT is 0, and an operation is four integers.
import { assert } from '../util/assert';
import { outcomeUnknown, type KvOp } from './history';

export const ABSENT = 0;
/** step()'s answer when the operation cannot take effect in this state. */
export const REFUSED = -1;

const enum Kind {
  Read = 0,
  Write = 1,
  Cas = 2,
}

export interface InternedOp {
  kind: Kind;
  /** read: the state seen; write/cas: the state put. */
  a: number;
  /** cas: the state compared. */
  b: number;
  /** cas: it succeeded (always true for an unknown outcome: if it took effect, it succeeded; if it
   *  did not, the search simply never linearizes it, which is the same as "failed"). */
  ok: boolean;
}

/** The state after `op` takes effect in `state`, or REFUSED. */
export function step(state: number, op: InternedOp): number {
  switch (op.kind) {
    case Kind.Read:
      return state === op.a ? state : REFUSED;
    case Kind.Write:
      return op.a;
    case Kind.Cas:
      if (op.ok) return state === op.b && state !== ABSENT ? op.a : REFUSED;
      return state === op.b && state !== ABSENT ? REFUSED : state;
  }
}

/** Does `op` leave every state as it is (a read, a CAS known to have failed)? */
export function keepsState(op: InternedOp): boolean {
  return op.kind === Kind.Read || (op.kind === Kind.Cas && !op.ok);
}

/** Interns one key's operations. Reads of unknown outcome have no effect and say nothing: the
 *  caller leaves them out before calling this. */
export function internOps(ops: readonly KvOp[]): InternedOp[] {
  const ids = new Map<string, number>();
  const id = (v: string | null): number => {
    if (v === null) return ABSENT;
    let n = ids.get(v);
    if (n === undefined) ids.set(v, (n = ids.size + 1));
    return n;
  };
  return ops.map((op): InternedOp => {
    const unknown = outcomeUnknown(op);
    switch (op.kind) {
      case 'read':
        assert(!unknown, 'a read of unknown outcome reached the search');
        return { kind: Kind.Read, a: id(op.seen), b: 0, ok: true };
      case 'write':
        return { kind: Kind.Write, a: id(op.value), b: 0, ok: true };
      case 'cas':
        return { kind: Kind.Cas, a: id(op.value), b: id(op.expect), ok: unknown || op.succeeded };
    }
  });
}
