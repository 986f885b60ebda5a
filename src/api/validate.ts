// Request checks done before a request reaches the log, with etcd's errors (etcd
// api/v3rpc/key.go): empty keys, invalid sort options, put flags, txn size and duplicate keys.
import { EtcdError, Errors } from '../util/errors';
import type { DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest } from '../proto/types';
import { toNumber } from '../server/kv_ops';

const SORT_ORDERS = new Set([0, 1, 2]);
const SORT_TARGETS = new Set([0, 1, 2, 3, 4]);

export function checkRange(r: RangeRequest): EtcdError | undefined {
  if (r.key.length === 0) return Errors.EmptyKey;
  if (!SORT_ORDERS.has(r.sort_order) || !SORT_TARGETS.has(r.sort_target)) return Errors.InvalidSortOption;
  return undefined;
}

export function checkPut(p: PutRequest): EtcdError | undefined {
  if (p.key.length === 0) return Errors.EmptyKey;
  if (p.ignore_value && p.value.length !== 0) return Errors.ValueProvided;
  if (p.ignore_lease && toNumber(p.lease) !== 0) return Errors.LeaseProvided;
  return undefined;
}

export function checkDelete(d: DeleteRangeRequest): EtcdError | undefined {
  if (d.key.length === 0) return Errors.EmptyKey;
  return undefined;
}

export function checkTxn(t: TxnRequest, maxTxnOps: number): EtcdError | undefined {
  const err = checkTxnOps(t, maxTxnOps);
  if (err) return err;
  const a = checkIntervals(t.success);
  if (a instanceof EtcdError) return a;
  const b = checkIntervals(t.failure);
  if (b instanceof EtcdError) return b;
  return undefined;
}

function checkTxnOps(t: TxnRequest, maxTxnOps: number): EtcdError | undefined {
  if (t.compare.length > maxTxnOps || t.success.length > maxTxnOps || t.failure.length > maxTxnOps) return Errors.TooManyOps;
  for (const c of t.compare) if (c.key.length === 0) return Errors.EmptyKey;
  for (const op of t.success) {
    const err = checkOp(op, maxTxnOps - t.success.length);
    if (err) return err;
  }
  for (const op of t.failure) {
    const err = checkOp(op, maxTxnOps - t.failure.length);
    if (err) return err;
  }
  return undefined;
}

function checkOp(op: RequestOp, maxTxnOps: number): EtcdError | undefined {
  if (op.request_range) return checkRange(op.request_range);
  if (op.request_put) return checkPut(op.request_put);
  if (op.request_delete_range) return checkDelete(op.request_delete_range);
  if (op.request_txn) return checkTxnOps(op.request_txn, maxTxnOps);
  return undefined;
}

/** A half-open key interval; `end` undefined = the single key, empty = to the end of key space. */
interface Interval {
  start: Buffer;
  end: Buffer | undefined;
}

function containsKey(iv: Interval, key: Buffer): boolean {
  if (iv.end === undefined) return iv.start.equals(key);
  if (Buffer.compare(key, iv.start) < 0) return false;
  return iv.end.length === 0 || Buffer.compare(key, iv.end) < 0;
}

function deleteInterval(d: DeleteRangeRequest): Interval {
  const end = d.range_end;
  if (!end || end.length === 0) return { start: d.key, end: undefined };
  // "\0" as range_end means every key >= key.
  if (end.length === 1 && end[0] === 0) return { start: d.key, end: Buffer.alloc(0) };
  return { start: d.key, end };
}

interface Writes {
  puts: Set<string>;
  dels: Interval[];
}

/** etcd's rule: a txn may not write the same key twice on any one path (put+put, or a put inside
 *  a deleted range); the success and failure branches of a nested txn exclude each other. */
function checkIntervals(ops: RequestOp[]): Writes | EtcdError {
  const dels: Interval[] = [];
  for (const op of ops) if (op.request_delete_range) dels.push(deleteInterval(op.request_delete_range));
  const deleted = (k: Buffer) => dels.some((iv) => containsKey(iv, k));
  const puts = new Set<string>();
  for (const op of ops) {
    if (!op.request_txn) continue;
    const then = checkIntervals(op.request_txn.success);
    if (then instanceof EtcdError) return then;
    const otherwise = checkIntervals(op.request_txn.failure);
    if (otherwise instanceof EtcdError) return otherwise;
    for (const k of then.puts) {
      if (puts.has(k) || deleted(Buffer.from(k, 'latin1'))) return Errors.DuplicateKey;
      puts.add(k);
    }
    for (const k of otherwise.puts) {
      if (puts.has(k) && !then.puts.has(k)) return Errors.DuplicateKey;
      if (deleted(Buffer.from(k, 'latin1'))) return Errors.DuplicateKey;
      puts.add(k);
    }
    dels.push(...then.dels, ...otherwise.dels);
  }
  for (const op of ops) {
    if (!op.request_put) continue;
    const k = op.request_put.key.toString('latin1');
    if (puts.has(k) || deleted(op.request_put.key)) return Errors.DuplicateKey;
    puts.add(k);
  }
  return { puts, dels };
}
