// The backend quota (etcd's --quota-backend-bytes, server/etcdserver/quota.go in 3.4).
//
// Two checks, as etcd:
//   * before proposing (Server.propose, on the member the client talks to): a request that costs
//     quota is refused with NoSpace if the backend size plus its cost would reach the quota, and
//     that member first raises a NOSPACE alarm through the log;
//   * when applying (Applier, on every member): while a NOSPACE alarm is active, every request that
//     costs quota is refused with NoSpace, whatever the size (etcd's applierV3Capped).
// Requests that cost nothing always pass: reads, deletes, read-only or delete-only txns,
// compaction, lease revoke and keepalive, alarms, membership. That is how an operator recovers.
//
// The size is Backend.allocatedBytes: see storage/backend/backend.ts for how it is measured.
import type { InternalRequestBody } from './codec';
import type { PutRequest, RequestOp, TxnRequest } from '../proto/types';

/** What etcd charges a put beyond its key and value (quota.go kvOverhead). */
export const KV_OVERHEAD_BYTES = 256;
/** What etcd charges a lease grant (quota.go leaseOverhead). */
export const LEASE_OVERHEAD_BYTES = 64;

function putCost(p: PutRequest): number {
  return KV_OVERHEAD_BYTES + p.key.length + p.value.length;
}

function opsCost(ops: readonly RequestOp[]): number {
  let n = 0;
  for (const op of ops) {
    if (op.request_put) n += putCost(op.request_put);
    // etcd 3.4 charges nothing for a nested txn (a gap: its puts would pass a full backend); here
    // the more expensive branch of a nested txn counts like any other put.
    else if (op.request_txn) n += txnCost(op.request_txn);
  }
  return n;
}

/** Only one branch runs: the more expensive one is charged. */
function txnCost(t: TxnRequest): number {
  return Math.max(opsCost(t.success ?? []), opsCost(t.failure ?? []));
}

/** Bytes a request is charged against the quota; 0 = it never consumes quota and always passes. */
export function quotaCostBytes(body: InternalRequestBody): number {
  if (body.put) return putCost(body.put);
  if (body.txn) return txnCost(body.txn);
  if (body.lease_grant) return LEASE_OVERHEAD_BYTES;
  return 0;
}
