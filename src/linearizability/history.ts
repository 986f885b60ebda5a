// A recorded history of key-value operations, as a client saw them: each operation with the time it
// was called and the time its answer arrived, and what the answer said. This is the input of the
// linearizability checker (check.ts), written for the register model of model.ts: etcd's Range
// (read), Put (write) and a Txn that compares a key's value and puts a new one (CAS).
//
// Times are milliseconds on one monotonic clock (the recording process's). An operation whose
// outcome is unknown — it timed out, or failed in a way that does not say whether it was applied —
// has `returnMs = Infinity`: it may take effect at any point after its call, or never. Its result
// fields (`seen`, `succeeded`) are then meaningless and ignored.

interface OpTimes {
  /** Which client issued it (for the report only). */
  client: number;
  key: string;
  callMs: number;
  /** When the answer arrived; Infinity when the outcome is unknown. */
  returnMs: number;
}

export type ReadOp = OpTimes & { kind: 'read'; /** The value read; null: the key did not exist. */ seen: string | null };
export type WriteOp = OpTimes & { kind: 'write'; value: string };
/** Txn{ compare value(key) == expect; success: put(key, value) }: `succeeded` is the Txn's answer.
 *  As in etcd, a value compare on a missing key fails. */
export type CasOp = OpTimes & { kind: 'cas'; expect: string; value: string; succeeded: boolean };
export type KvOp = ReadOp | WriteOp | CasOp;

export function outcomeUnknown(op: KvOp): boolean {
  return op.returnMs === Infinity;
}

/** Does this operation change the register when it takes effect (a write, or a CAS that
 *  succeeded or may have)? */
export function mayWrite(op: KvOp): boolean {
  if (op.kind === 'write') return true;
  if (op.kind === 'cas') return op.succeeded || outcomeUnknown(op);
  return false;
}

/** The operations of each key, in call order (linearizability is local: a history is
 *  linearizable iff each key's sub-history is; Herlihy & Wing 1990, theorem 1). */
export function partitionByKey(ops: readonly KvOp[]): Map<string, KvOp[]> {
  const byKey = new Map<string, KvOp[]>();
  for (const op of ops) {
    let list = byKey.get(op.key);
    if (!list) byKey.set(op.key, (list = []));
    list.push(op);
  }
  for (const list of byKey.values()) list.sort((a, b) => a.callMs - b.callMs);
  return byKey;
}

function quote(v: string | null): string {
  return v === null ? '(absent)' : JSON.stringify(v);
}

/** One line per operation, times relative to `originMs`:
 *  `client 3  cas    "k" "3-7" -> "3-8" = failed   [+1201.3 ms, +1210.9 ms]`. */
export function describeOp(op: KvOp, originMs: number): string {
  const t = (ms: number) => (ms === Infinity ? 'unknown outcome' : `+${(ms - originMs).toFixed(1)} ms`);
  const unknown = outcomeUnknown(op);
  let what: string;
  if (op.kind === 'read') what = `read  ${JSON.stringify(op.key)} = ${unknown ? '?' : quote(op.seen)}`;
  else if (op.kind === 'write') what = `write ${JSON.stringify(op.key)} := ${quote(op.value)}`;
  else what = `cas   ${JSON.stringify(op.key)} ${quote(op.expect)} -> ${quote(op.value)} = ${unknown ? '?' : op.succeeded ? 'succeeded' : 'failed'}`;
  return `client ${String(op.client).padEnd(3)} ${what.padEnd(48)} [${t(op.callMs)}, ${t(op.returnMs)}]`;
}
