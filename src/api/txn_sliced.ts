// A read-only Txn whose ranges are too large for one event-loop turn, served as a Range is
// (range_sliced.ts): its compares are decided and a range job made for every range on the taken
// path (nested txns included) in one turn, so all of them read at one revision, as etcd's txn
// does; then the jobs are walked and measured in slices, the answer's cost taken from the member's
// budget, and the TxnResponse written in parts as the client reads it. A job going stale before
// the first byte is sent starts the whole txn over (a new revision for all its ranges).
//
// The cost of a txn's answer is its whole size: the JSON gateway converts each ResponseOp whole
// (json_parts.ts), so one range of a txn may be held there at once.
//
// TxnResponse: 1 header, 2 succeeded, 3 responses (ResponseOp: 1 response_range, 4 response_txn);
// every nested response's header carries the revision alone (kv_ops.ts fillTxnHeaders).
import type { MvccStore, RangeJob } from '../mvcc';
import { assert } from '../util/assert';
import { checkRangeRevision, evalCompares, rangeEndOf, rangeOptions } from '../server/kv_ops';
import type { TxnRequest } from '../proto/types';
import { varintBytes, writeVarint } from '../proto/varint';
import {
  admit,
  prepareAnswer,
  put,
  rangeResponseFrame,
  responseTooLarge,
  streamKvs,
  withRestarts,
  Slicer,
  Stale,
  RANGE_KEYS_PER_STEP,
  RANGE_READ_STALL_MS_MAX,
  RANGE_RESPONSE_BYTES_MAX,
  RANGE_VALUES_PER_STEP,
  RANGE_VERSION_HOLD_BYTES,
  type PartSink,
  type SlicedRangeOptions,
} from './range_sliced';

/** The taken path of a read-only txn: its outcome, and per op a range job or a nested txn. */
export interface TxnPlan {
  readonly succeeded: boolean;
  readonly ops: readonly (RangeJob | TxnPlan)[];
  /** The store's revision when the plan was made: every header's. */
  readonly revision: number;
}

/** Decides the compares and makes the range jobs of `t` on the store as it is now. Throws the
 *  store's read errors (Compacted, FutureRev) as the one-pass txn does. */
export function planTxn(st: MvccStore, t: TxnRequest): TxnPlan {
  const revision = st.currentRevision;
  const succeeded = evalCompares(st, t);
  const ops: (RangeJob | TxnPlan)[] = [];
  for (const op of succeeded ? t.success : t.failure) {
    if (op.request_range) {
      const r = op.request_range;
      const err = checkRangeRevision(st, r, false);
      if (err) throw err;
      ops.push(st.rangeJob(r.key, rangeEndOf(r.range_end), rangeOptions(r)));
    } else if (op.request_txn) ops.push(planTxn(st, op.request_txn));
  }
  return { succeeded, ops, revision };
}

function isPlan(op: RangeJob | TxnPlan): op is TxnPlan {
  return 'ops' in op;
}

/** True when every range of the plan fits one turn (walked in one step, a few values): the txn
 *  is then answered in this turn by the one-pass code. Runs the jobs' first steps. */
export function planIsSmall(plan: TxnPlan): boolean {
  return plan.ops.every((op) => (isPlan(op) ? planIsSmall(op) : op.scan(RANGE_KEYS_PER_STEP) === 'done' && (op.countOnly || op.kvs.length <= RANGE_VALUES_PER_STEP)));
}

/** Where the answer goes: the call's writer, once the size is known; `header` encodes the
 *  txn's header (cluster, member, term) and the nested ones (revision alone). */
export interface TxnAnswerTarget {
  header(revision: number, nested: boolean): Uint8Array;
  begin(messageBytes: number): PartSink;
}

/** The answer's bytes, in order: framing bytes, or the encoded versions of a job (kvsBytes). */
type Piece = Buffer | { job: RangeJob; bytes: number };

/** Serves `t` (its plan made, and maybe its jobs' first steps run, in the turn the read became
 *  possible) to `target`. Throws as rangeSliced does; returns quietly when abandoned. */
export async function txnSliced(store: () => MvccStore, t: TxnRequest, first: TxnPlan, target: TxnAnswerTarget, o: SlicedRangeOptions = {}): Promise<void> {
  const bytesMax = o.responseBytesMax ?? RANGE_RESPONSE_BYTES_MAX;
  const stallMs = o.readStallMs ?? RANGE_READ_STALL_MS_MAX;
  let plan: TxnPlan | undefined = first;
  await withRestarts(o, 'txn', async (slicer, held) => {
    plan ??= planTxn(store(), t);
    const pieces: Piece[] = [];
    const stats = { versions: 0 };
    const bytes = await txnPieces(plan, false, target, slicer, pieces, stats);
    if (held.release === undefined && o.budget !== undefined) {
      held.release = await admit(o.budget, bytes + stats.versions * RANGE_VERSION_HOLD_BYTES, slicer);
      if (anyStale(plan)) throw new Stale();
    }
    if (bytes > bytesMax) throw responseTooLarge(bytes, bytesMax);
    const sink = target.begin(bytes);
    for (const p of pieces) {
      const more = Buffer.isBuffer(p) ? await put(sink, p, stallMs) : await streamKvs(p.job, sink, slicer, stallMs);
      if (!more) return;
    }
    sink.end();
  }, () => (plan = undefined));
}

function anyStale(plan: TxnPlan): boolean {
  return plan.ops.some((op) => (isPlan(op) ? anyStale(op) : op.stale));
}

/** Prepares the plan's jobs (walk, sort, measure) and appends the TxnResponse's pieces (a nested
 *  one's body when `nested`); returns its bytes. */
async function txnPieces(plan: TxnPlan, nested: boolean, target: TxnAnswerTarget, slicer: Slicer, out: Piece[], stats: { versions: number }): Promise<number> {
  const head = Buffer.allocUnsafe(0);
  const headAt = out.push(head) - 1;
  let bytes = 0;
  for (const op of plan.ops) {
    const opHeadAt = out.push(head) - 1;
    let opBytes: number;
    let field: number;
    if (isPlan(op)) {
      field = 4;
      opBytes = await txnPieces(op, true, target, slicer, out, stats);
    } else {
      field = 1;
      const kvsBytes = await prepareAnswer(op, slicer, { release: undefined }, undefined);
      stats.versions += op.kvs.length;
      const { before, after } = rangeResponseFrame(target.header(plan.revision, true), op.more, op.count);
      out.push(before, { job: op, bytes: kvsBytes }, after);
      opBytes = before.length + kvsBytes + after.length;
    }
    // ResponseOp{field: <opBytes>} as TxnResponse.responses (3).
    const inner = 1 + varintBytes(opBytes);
    const frame = Buffer.allocUnsafe(1 + varintBytes(inner + opBytes) + inner);
    frame[0] = (3 << 3) | 2;
    let off = writeVarint(frame, 1, inner + opBytes);
    frame[off++] = (field << 3) | 2;
    off = writeVarint(frame, off, opBytes);
    assert(off === frame.length, 'txn: ResponseOp frame size');
    out[opHeadAt] = frame;
    bytes += frame.length + opBytes;
  }
  // header (1) and succeeded (2, omitted when false) before the responses.
  const header = target.header(plan.revision, nested);
  const first = Buffer.allocUnsafe(1 + varintBytes(header.length) + header.length + (plan.succeeded ? 2 : 0));
  first[0] = (1 << 3) | 2;
  let off = writeVarint(first, 1, header.length);
  first.set(header, off);
  off += header.length;
  if (plan.succeeded) {
    first[off++] = (2 << 3) | 0;
    first[off++] = 1;
  }
  assert(off === first.length, 'txn: header frame size');
  out[headAt] = first;
  return bytes + first.length;
}
