// etcdserverpb.KV: validates each request with etcd's errors, serves reads from the store and
// sends writes through the log (Server.propose), and stamps etcd's response header.
import type * as grpc from '@grpc/grpc-js';
import { EtcdError, Errors } from '../util/errors';
import type { Server } from '../server/server';
import { applyRange, applyReadOnlyTxn, fillTxnHeaders, isTxnReadOnly } from '../server/kv_ops';
import type {
  CompactionRequest,
  DeleteRangeRequest,
  PutRequest,
  RangeRequest,
  TxnRequest,
  TxnResponse,
} from '../proto/types';
import { checkDelete, checkPut, checkRange, checkTxn } from './validate';
import { replyError } from './errors';
import { authorize, checks } from './auth_service';

type Unary<Req> = (call: grpc.ServerUnaryCall<Req, unknown>, callback: grpc.sendUnaryData<unknown>) => void;

export interface KvLimits {
  maxTxnOps: number;
}

export function kvService(server: Server, limits: KvLimits): Record<string, Unary<never>> {
  const Range: Unary<RangeRequest> = (call, cb) => {
    const r = call.request;
    const bad = checkRange(r);
    if (bad) return replyError(cb, bad);
    const serve = () => {
      const who = authorize(server, call, checks.range, r);
      if (who instanceof EtcdError) return replyError(cb, who);
      try {
        const resp = applyRange(server.store, r);
        cb(null, { header: server.header(), ...resp });
      } catch (err) {
        replyError(cb, err);
      }
    };
    // Serializable reads are served from the local store as it is; linearizable ones first wait
    // for ReadIndex (this member's store has applied everything committed before the read).
    if (r.serializable) serve();
    else if (server.isLearner) replyError(cb, Errors.NotSupportedForLearner);
    else server.linearizableRead().then(serve, (err) => replyError(cb, err));
  };

  const Put: Unary<PutRequest> = (call, cb) => {
    // A learner only replicates (etcd: "rpc not supported for learner").
    if (server.isLearner) return replyError(cb, Errors.NotSupportedForLearner);
    const bad = checkPut(call.request);
    if (bad) return replyError(cb, bad);
    const who = authorize(server, call, checks.put, call.request);
    if (who instanceof EtcdError) return replyError(cb, who);
    server.propose({ put: call.request }, who).then(
      (r) => cb(null, { header: server.header(r.revision), ...r.response }),
      (err) => replyError(cb, err),
    );
  };

  const DeleteRange: Unary<DeleteRangeRequest> = (call, cb) => {
    // A learner only replicates (etcd: "rpc not supported for learner").
    if (server.isLearner) return replyError(cb, Errors.NotSupportedForLearner);
    const bad = checkDelete(call.request);
    if (bad) return replyError(cb, bad);
    const who = authorize(server, call, checks.deleteRange, call.request);
    if (who instanceof EtcdError) return replyError(cb, who);
    server.propose({ delete_range: call.request }, who).then(
      (r) => cb(null, { header: server.header(r.revision), ...r.response }),
      (err) => replyError(cb, err),
    );
  };

  const Txn: Unary<TxnRequest> = (call, cb) => {
    // A learner only replicates (etcd: "rpc not supported for learner").
    if (server.isLearner) return replyError(cb, Errors.NotSupportedForLearner);
    const t = call.request;
    const bad = checkTxn(t, limits.maxTxnOps);
    if (bad) return replyError(cb, bad);
    if (isTxnReadOnly(t)) {
      const serve = () => {
        const who = authorize(server, call, checks.txn, t);
        if (who instanceof EtcdError) return replyError(cb, who);
        try {
          const resp = applyReadOnlyTxn(server.store, t);
          fillTxnHeaders(resp, server.header());
          cb(null, resp);
        } catch (err) {
          replyError(cb, err);
        }
      };
      // etcd serves a read-only txn as linearizable unless every range in it is serializable.
      return void server.linearizableRead().then(serve, (err) => replyError(cb, err));
    }
    const who = authorize(server, call, checks.txn, t);
    if (who instanceof EtcdError) return replyError(cb, who);
    server.propose({ txn: t }, who).then(
      (r) => {
        const resp = r.response as TxnResponse;
        fillTxnHeaders(resp, server.header(r.revision));
        cb(null, resp);
      },
      (err) => replyError(cb, err),
    );
  };

  const Compact: Unary<CompactionRequest> = (call, cb) => {
    if (server.isLearner) return replyError(cb, Errors.NotSupportedForLearner);
    // etcd 3.4 lets any authenticated (or anonymous) caller compact; only a bad token is refused.
    const who = authorize(server, call, checks.none, undefined);
    if (who instanceof EtcdError) return replyError(cb, who);
    server.propose({ compaction: call.request }, who).then(
      (r) => cb(null, { header: server.header(r.revision) }),
      (err) => replyError(cb, err),
    );
  };

  return { Range, Put, DeleteRange, Txn, Compact } as Record<string, Unary<never>>;
}

export { EtcdError };
