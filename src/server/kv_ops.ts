// The KV operations of etcd's apply path, on top of the MVCC store: Range, Put, DeleteRange and
// Txn as etcd executes them (etcdserver/apply.go), producing etcd's response messages. Pure and
// synchronous: the same requests against the same state give the same results on every member.
import { EtcdError, Errors } from '../util/errors';
import type { Bytes, BytesLike, KeyValue, LeaseId, RangeOptions, RangeResult, WriteTxn } from '../mvcc';
import { bufferOf, bytesOf, compareBytes, EMPTY_BYTES, NO_LEASE } from '../mvcc';
import type {
  Compare,
  DeleteRangeRequest,
  DeleteRangeResponse,
  Int64,
  KeyValuePb,
  PutRequest,
  PutResponse,
  RangeRequest,
  RangeResponse,
  RequestOp,
  ResponseHeader,
  ResponseOp,
  TxnRequest,
  TxnResponse,
} from '../proto/types';
import { CompareResult, CompareTarget } from '../proto/types';

/** What Range needs: the store itself (reads outside the log) or an open write txn. */
export interface KvReader {
  readonly currentRevision: number;
  readonly compactRevision: number;
  range(key: Buffer, rangeEnd: Buffer | undefined, opts?: RangeOptions): RangeResult;
}

/** The lease side of a write: whether a lease exists, and keeping each lease's key set in step
 *  with the keys attached to it. The lessor implements it; a store without leases uses NO_LEASES. */
export interface LeaseAttachments {
  exists(id: LeaseId): boolean;
  attach(id: LeaseId, key: BytesLike): void;
  detach(id: LeaseId, key: BytesLike): void;
}

export const NO_LEASES: LeaseAttachments = {
  exists: () => false,
  attach: () => undefined,
  detach: () => undefined,
};

/**
 * An int64 from a request (a revision, version, TTL, limit) as a number, saturated at
 * ±(2^53 - 1). Every revision, version and TTL this member holds is a safe integer (the store
 * asserts it), so comparing one with a saturated client value comes out as with the exact int64,
 * and the range checks after it (future revision, too large TTL) answer with etcd's errors. A
 * client's 2^63 - 1 must never reach an assertion as a rounded, unsafe number.
 */
export function toNumber(v: Int64 | null | undefined): number {
  if (v === null || v === undefined) return 0;
  const n = typeof v === 'number' ? v : Number(v);
  if (Number.isSafeInteger(n)) return n;
  if (Number.isNaN(n)) return 0; // not produced by the protobuf decoder (decimal strings only)
  return n > 0 ? Number.MAX_SAFE_INTEGER : -Number.MAX_SAFE_INTEGER;
}

export function toLeaseId(v: Int64 | null | undefined): LeaseId {
  if (v === null || v === undefined || v === 0 || v === '0') return NO_LEASE;
  return BigInt(v);
}

export function leaseToPb(id: LeaseId): Int64 {
  return id === NO_LEASE ? 0 : id.toString();
}

export function kvToPb(kv: KeyValue): KeyValuePb {
  return {
    key: bufferOf(kv.key),
    create_revision: kv.createRevision,
    mod_revision: kv.modRevision,
    version: kv.version,
    value: bufferOf(kv.value),
    lease: leaseToPb(kv.lease),
  };
}

export function rangeEndOf(b: Buffer | null | undefined): Buffer | undefined {
  return b && b.length > 0 ? b : undefined;
}

/** etcd: a sort target other than KEY with no order means ascending. */
export function rangeOptions(r: RangeRequest): RangeOptions {
  const rev = toNumber(r.revision);
  const limit = toNumber(r.limit);
  let sortOrder = r.sort_order;
  if (r.sort_target !== 0 && sortOrder === 0) sortOrder = 1;
  return {
    revision: rev > 0 ? rev : 0,
    limit: limit > 0 ? limit : 0,
    sortOrder,
    sortTarget: r.sort_target,
    keysOnly: r.keys_only,
    countOnly: r.count_only,
    minModRevision: toNumber(r.min_mod_revision),
    maxModRevision: toNumber(r.max_mod_revision),
    minCreateRevision: toNumber(r.min_create_revision),
    maxCreateRevision: toNumber(r.max_create_revision),
  };
}

/** Throws the store's typed errors (compacted, future revision). */
export function applyRange(reader: KvReader, r: RangeRequest): RangeResponse {
  const res = reader.range(r.key, rangeEndOf(r.range_end), rangeOptions(r));
  return { kvs: res.kvs.map(kvToPb), more: res.more, count: res.count };
}

/** The revision a range would read, checked without reading (for txn pre-checks). */
export function checkRangeRevision(reader: KvReader, r: RangeRequest, pendingWrite: boolean): EtcdError | undefined {
  const rev = toNumber(r.revision);
  // etcd's checkRangeRequest: only 0 means "current"; a negative revision is below the first.
  if (rev === 0) return undefined;
  const current = reader.currentRevision + (pendingWrite ? 1 : 0);
  if (rev > current) return Errors.FutureRev;
  if (rev < reader.compactRevision) return Errors.Compacted;
  return undefined;
}

/** The key's live version as of `txn`; with `withValue` false its value is left out (empty): a
 *  spilled value is then not read back from the spill file (a synchronous read on the apply path,
 *  two for a 4 KiB value), since only prev_kv and ignore_value need the bytes. */
function currentValue(txn: WriteTxn, key: BytesLike, withValue: boolean): KeyValue | undefined {
  return txn.get(key, withValue);
}

function checkPut(txn: WriteTxn, p: PutRequest, leases: LeaseAttachments): EtcdError | undefined {
  if (p.ignore_value || p.ignore_lease) {
    if (!currentValue(txn, p.key, false)) return Errors.KeyNotFound;
  }
  const lease = toLeaseId(p.lease);
  if (lease !== NO_LEASE && !leases.exists(lease)) return Errors.LeaseNotFound;
  return undefined;
}

/** A standalone Put: checked (ignore_value on a missing key, unknown lease) before it writes. */
export function applyCheckedPut(txn: WriteTxn, p: PutRequest, leases: LeaseAttachments): PutResponse | EtcdError {
  return checkPut(txn, p, leases) ?? applyPut(txn, p, leases);
}

export function applyPut(txn: WriteTxn, p: PutRequest, leases: LeaseAttachments): PutResponse {
  const key = bytesOf(p.key); // once: the store, the lease and the lookup share this string
  // The previous version's lease is needed always (detach), its value only for these two.
  const prev = currentValue(txn, key, p.prev_kv || p.ignore_value);
  const value = p.ignore_value ? prev!.value : p.value;
  const lease = p.ignore_lease ? prev!.lease : toLeaseId(p.lease);
  const { kv } = txn.put(key, value, lease);
  if (prev && prev.lease !== NO_LEASE && prev.lease !== lease) leases.detach(prev.lease, kv.key);
  if (lease !== NO_LEASE) leases.attach(lease, kv.key);
  return { prev_kv: p.prev_kv && prev ? kvToPb(prev) : null };
}

export function applyDeleteRange(txn: WriteTxn, d: DeleteRangeRequest, leases: LeaseAttachments): DeleteRangeResponse {
  if (d.prev_kv) {
    const { deleted } = txn.deleteRange(d.key, rangeEndOf(d.range_end));
    for (const kv of deleted) if (kv.lease !== NO_LEASE) leases.detach(kv.lease, kv.key);
    return { deleted: deleted.length, prev_kvs: deleted.map(kvToPb) };
  }
  const { deleted } = txn.deleteRange(d.key, rangeEndOf(d.range_end), false);
  for (const kv of deleted) if (kv.lease !== NO_LEASE) leases.detach(kv.lease, kv.key);
  return { deleted: deleted.length, prev_kvs: [] };
}

// ---- Txn -----------------------------------------------------------------------------------

function compareInts(a: number | bigint, b: number | bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** `value` is c.value in the store's representation (converted once per compare, not per key). */
function compareOne(c: Compare, value: Bytes, kv: KeyValue | undefined): boolean {
  let cmp: number;
  switch (c.target) {
    case CompareTarget.VALUE:
      // A missing key has no value to compare: the comparison fails, whatever the operator.
      if (!kv) return false;
      cmp = compareBytes(kv.value, value);
      break;
    case CompareTarget.VERSION:
      cmp = compareInts(kv?.version ?? 0, toNumber(c.version));
      break;
    case CompareTarget.CREATE:
      cmp = compareInts(kv?.createRevision ?? 0, toNumber(c.create_revision));
      break;
    case CompareTarget.MOD:
      cmp = compareInts(kv?.modRevision ?? 0, toNumber(c.mod_revision));
      break;
    case CompareTarget.LEASE:
      cmp = compareInts(kv?.lease ?? NO_LEASE, toLeaseId(c.lease));
      break;
    default:
      return false;
  }
  switch (c.result) {
    case CompareResult.EQUAL:
      return cmp === 0;
    case CompareResult.NOT_EQUAL:
      return cmp !== 0;
    case CompareResult.GREATER:
      return cmp > 0;
    case CompareResult.LESS:
      return cmp < 0;
    default:
      return false;
  }
}

/** A compare over a range holds when it holds for every key in it; over no keys it is judged
 *  against an absent key (so "version = 0" is true and any VALUE compare is false), as etcd. */
function evalCompare(reader: KvReader, c: Compare): boolean {
  const res = reader.range(c.key, rangeEndOf(c.range_end), {});
  const value = c.target === CompareTarget.VALUE && c.value ? bytesOf(c.value) : EMPTY_BYTES;
  if (res.kvs.length === 0) return compareOne(c, value, undefined);
  for (const kv of res.kvs) if (!compareOne(c, value, kv)) return false;
  return true;
}

export function evalCompares(reader: KvReader, t: TxnRequest): boolean {
  for (const c of t.compare) if (!evalCompare(reader, c)) return false;
  return true;
}

/** True if no op (recursively) writes: such a txn is served like a range, outside the log. */
export function isTxnReadOnly(t: TxnRequest): boolean {
  const ro = (ops: RequestOp[]) =>
    ops.every((op) => (op.request_txn ? isTxnReadOnly(op.request_txn) : !op.request_put && !op.request_delete_range));
  return ro(t.success) && ro(t.failure);
}

/** etcd decides every compare of a txn, nested ones included, against the state before the txn
 *  writes anything: the "path" is those outcomes in pre-order. */
function txnPath(reader: KvReader, t: TxnRequest, path: boolean[] = []): boolean[] {
  const succeeded = evalCompares(reader, t);
  path.push(succeeded);
  for (const op of succeeded ? t.success : t.failure) if (op.request_txn) txnPath(reader, op.request_txn, path);
  return path;
}

/** Checks the ops on the path before anything is written, so that a txn either applies
 *  completely or not at all (the store has no rollback). */
function checkTxnPath(txn: WriteTxn, t: TxnRequest, path: boolean[], at: { i: number }, leases: LeaseAttachments): EtcdError | undefined {
  const ops = path[at.i++] ? t.success : t.failure;
  for (const op of ops) {
    let err: EtcdError | undefined;
    if (op.request_range) err = checkRangeRevision(txn, op.request_range, true);
    else if (op.request_put) err = checkPut(txn, op.request_put, leases);
    else if (op.request_txn) err = checkTxnPath(txn, op.request_txn, path, at, leases);
    if (err) return err;
  }
  return undefined;
}

function runTxn(txn: WriteTxn, t: TxnRequest, path: boolean[], at: { i: number }, leases: LeaseAttachments): TxnResponse {
  const succeeded = path[at.i++]!;
  const responses: ResponseOp[] = [];
  for (const op of succeeded ? t.success : t.failure) {
    if (op.request_range) responses.push({ response_range: applyRange(txn, op.request_range) });
    else if (op.request_put) responses.push({ response_put: applyPut(txn, op.request_put, leases) });
    else if (op.request_delete_range) responses.push({ response_delete_range: applyDeleteRange(txn, op.request_delete_range, leases) });
    else if (op.request_txn) responses.push({ response_txn: runTxn(txn, op.request_txn, path, at, leases) });
  }
  return { succeeded, responses };
}

/** Applies a txn inside an open write txn. Returns an error (and writes nothing) when an op on
 *  the taken path would fail. */
export function applyTxn(txn: WriteTxn, t: TxnRequest, leases: LeaseAttachments): TxnResponse | EtcdError {
  const path = txnPath(txn, t);
  const err = checkTxnPath(txn, t, path, { i: 0 }, leases);
  if (err) return err;
  return runTxn(txn, t, path, { i: 0 }, leases);
}

/** A read-only txn, served from the store without the log. Throws compacted/future errors. */
export function applyReadOnlyTxn(reader: KvReader, t: TxnRequest): TxnResponse {
  const succeeded = evalCompares(reader, t);
  const responses: ResponseOp[] = [];
  for (const op of succeeded ? t.success : t.failure) {
    if (op.request_range) {
      // etcd checks a txn's ranges with checkRangeRequest (a negative revision is compacted).
      const err = checkRangeRevision(reader, op.request_range, false);
      if (err) throw err;
      responses.push({ response_range: applyRange(reader, op.request_range) });
    } else if (op.request_txn) responses.push({ response_txn: applyReadOnlyTxn(reader, op.request_txn) });
  }
  return { succeeded, responses };
}

/** Stamps the txn's header, and on every nested response the revision alone, as etcd does. */
export function fillTxnHeaders(resp: TxnResponse, header: ResponseHeader, inner: ResponseHeader = { revision: header.revision } as ResponseHeader): void {
  resp.header = header;
  for (const r of resp.responses) {
    if (r.response_range) r.response_range.header = inner;
    else if (r.response_put) r.response_put.header = inner;
    else if (r.response_delete_range) r.response_delete_range.header = inner;
    else if (r.response_txn) fillTxnHeaders(r.response_txn, inner, inner);
  }
}
