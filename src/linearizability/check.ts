// Checks a whole history: each key on its own (linearizability is local), within one budget, and on
// a violation shrinks that key's history to a small sub-history that still proves it.
//
// The verdict is 'violation' as soon as one key's history is proven non-linearizable (the whole then
// is not), 'linearizable' only if every key's is proven linearizable, and otherwise 'unknown' with
// the reason the budget ran out.
import { describeOp, partitionByKey, type KvOp } from './history';
import { minimizeViolation } from './minimize';
import { makeBudget, searchKey, type Verdict } from './search';

export interface CheckOptions {
  /** Steps for the whole check (each step: one call tried or one choice undone). */
  stepsMax?: number;
  /** Wall-clock bound for the whole check. */
  timeMs?: number;
  /** Bytes of memo one key's search may hold. */
  memoBytesMax?: number;
  /** The same bounds again for shrinking a violation (it re-runs the search many times). */
  minimizeStepsMax?: number;
  minimizeTimeMs?: number;
  /** Clock for the time bounds (milliseconds); performance.now by default. */
  now?: () => number;
}

export interface KeyReport {
  key: string;
  ops: number;
  verdict: Verdict;
  steps: number;
}

export interface CheckResult {
  verdict: Verdict;
  keys: KeyReport[];
  /** Why the verdict is 'unknown'. */
  unknownReason?: string;
  steps: number;
  /** On a violation: the key, its whole history's size, and the shrunk sub-history (in call order). */
  violation?: { key: string; ops: number; subHistory: KvOp[]; minimal: boolean };
}

export function checkHistory(history: readonly KvOp[], o: CheckOptions = {}): CheckResult {
  const budget = makeBudget({ stepsMax: o.stepsMax, timeMs: o.timeMs, memoBytesMax: o.memoBytesMax, now: o.now });
  const keys: KeyReport[] = [];
  let steps = 0;
  let unknownReason: string | undefined;
  for (const [key, ops] of partitionByKey(history)) {
    const r = searchKey(ops, budget);
    steps += r.steps;
    keys.push({ key, ops: ops.length, verdict: r.verdict, steps: r.steps });
    if (r.verdict === 'unknown') {
      unknownReason ??= `key ${JSON.stringify(key)} (${ops.length} operations): ${budget.exhausted ?? 'bound reached'}`;
      // The budget is shared: once it is gone, the other keys cannot be decided either; keep
      // looking only if this key alone hit the memo bound.
      if (budget.stepsLeft <= 0 || budget.now() > budget.deadlineMs) break;
      budget.exhausted = undefined;
      continue;
    }
    if (r.verdict === 'violation') {
      const shrink = makeBudget({ stepsMax: o.minimizeStepsMax ?? 50_000_000, timeMs: o.minimizeTimeMs, memoBytesMax: o.memoBytesMax, now: o.now });
      const m = minimizeViolation(ops, shrink);
      return { verdict: 'violation', keys, steps, violation: { key, ops: ops.length, subHistory: m.ops, minimal: m.minimal } };
    }
  }
  if (unknownReason !== undefined) return { verdict: 'unknown', keys, steps, unknownReason };
  return { verdict: 'linearizable', keys, steps };
}

/** The sub-history of a violation as lines of text, times relative to `originMs`. */
export function describeViolation(v: NonNullable<CheckResult['violation']>, originMs: number): string[] {
  const head = `key ${JSON.stringify(v.key)}: ${v.subHistory.length} of its ${v.ops} operations are not linearizable` + (v.minimal ? ' (no single one can be left out)' : ' (shrinking stopped at its bound; may not be minimal)');
  return [head, ...v.subHistory.map((op) => '  ' + describeOp(op, originMs))];
}
