// Shrinks one key's non-linearizable history to a small sub-history that is still not
// linearizable, so that a person can see the anomaly in a handful of lines.
//
// Only removals that keep the report honest are tried: a sub-history shown must be a proof that the
// whole history is not linearizable, i.e. "the whole is linearizable" must imply "the part is".
// That holds for
//   - a read, or a CAS that failed: they only constrain; a linearization of the whole, with them
//     left out, is one of the part;
//   - an operation that writes (a write, a CAS that succeeded or may have) whose value no operation
//     left in the part observes (no read sees it, no CAS compares it), provided the part has no
//     failed CAS: in a linearization of the whole, the stretch after that write and before the next
//     one holds its value, so nothing left was linearized there except writes, and dropping it
//     changes no outcome. (A failed CAS could have been linearized there and need the value to
//     differ, hence the proviso.)
// Dropping any other write could turn a linearizable history into a non-linearizable part (remove
// the write between "write x" and "CAS x->y failed"), so it is never done.
//
// The search for removals is delta debugging (Zeller): try to drop chunks of half the operations,
// then quarters, ... then single ones, keeping each drop whose result is still a proven violation.
// At the end no single allowed removal keeps it a violation (1-minimal), unless the budget ran out.
import { mayWrite, outcomeUnknown, type KvOp } from './history';
import { searchKey, type Budget } from './search';

export interface Minimized {
  ops: KvOp[];
  /** Every single allowed removal was tried and refused (false: the budget ran out first). */
  minimal: boolean;
}

/** Values this op observes (a read's value, a CAS's compared value). */
function observes(op: KvOp): string | null | undefined {
  if (op.kind === 'read') return outcomeUnknown(op) ? undefined : op.seen;
  if (op.kind === 'cas') return op.expect;
  return undefined;
}

function failedCas(op: KvOp): boolean {
  return op.kind === 'cas' && !outcomeUnknown(op) && !op.succeeded;
}

/** May `drop` be removed from `current` (see the rules above)? */
export function removable(current: readonly KvOp[], drop: ReadonlySet<KvOp>): boolean {
  const writers = [...drop].filter(mayWrite);
  if (writers.length === 0) return true;
  const kept = current.filter((op) => !drop.has(op));
  if (kept.some(failedCas)) return false;
  const observed = new Set(kept.map(observes));
  // Observers inside `drop` are dropped too, except a CAS that writes: it is both, and the order in
  // which two such could go is not worth finding; smaller chunks will try them one by one.
  for (const op of drop) if (mayWrite(op) && op.kind === 'cas') observed.add(op.expect);
  return writers.every((op) => !observed.has((op as { value: string }).value));
}

/** `ops` must be one key's history, proven not linearizable. */
export function minimizeViolation(ops: readonly KvOp[], budget: Budget): Minimized {
  let current = [...ops];
  let chunk = Math.ceil(current.length / 2);
  let clean = true;
  while (chunk >= 1) {
    let dropped = false;
    for (let start = 0; start < current.length; ) {
      if (budget.exhausted) return { ops: current, minimal: false };
      const drop = new Set(current.slice(start, start + chunk));
      if (drop.size === current.length || !removable(current, drop)) {
        start += chunk;
        continue;
      }
      const candidate = current.filter((op) => !drop.has(op));
      const r = searchKey(candidate, budget);
      if (r.verdict === 'violation') {
        current = candidate;
        dropped = true;
        continue;
      }
      if (r.verdict === 'unknown' && chunk === 1) clean = false;
      start += chunk;
    }
    chunk = dropped ? Math.min(chunk, Math.ceil(current.length / 2)) : Math.floor(chunk / 2);
  }
  return { ops: current, minimal: clean && !budget.exhausted };
}
