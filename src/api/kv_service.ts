// etcdserverpb.KV: validates each request with etcd's errors, serves reads from the store and
// sends writes through the log (Server.propose), and stamps etcd's response header.
import { EtcdError, Errors } from '../util/errors';
import type { Server } from '../server/server';
import type { ApplyResult } from '../server/applier';
import { applyRange, applyReadOnlyTxn, fillTxnHeaders, isTxnReadOnly } from '../server/kv_ops';
import type {
  CompactionRequest,
  CompactionResponse,
  DeleteRangeRequest,
  DeleteRangeResponse,
  PutRequest,
  PutResponse,
  RangeRequest,
  RangeResponse,
  ResponseHeader,
  TxnRequest,
  TxnResponse,
} from '../proto/types';
import type { UnaryCall, UnaryHandler } from './call';
import { checkDelete, checkPut, checkRange, checkTxn } from './validate';
import { replyError } from './errors';
import { authorize, checks } from './auth_service';

export interface KvLimits {
  maxTxnOps: number;
}

/** An applied write's response (applier.ts builds it for the request's kind, without a header)
 *  with etcd's header at the write's revision. */
function applied<T extends { header?: ResponseHeader }>(server: Server, r: ApplyResult): T {
  return { header: server.header(r.revision), ...r.response } as T;
}

/** A Range from the local store, once it may be served (a function of its own: the serializable
 *  read, the hot path, makes no closure). */
function serveRange(server: Server, call: UnaryCall<RangeRequest, RangeResponse>): void {
  const who = authorize(server, call, checks.range, call.request);
  if (who instanceof EtcdError) return replyError(call, who);
  let resp: RangeResponse;
  try {
    resp = applyRange(server.store, call.request);
  } catch (err) {
    return replyError(call, err);
  }
  resp.header = server.header();
  call.respond(resp);
}

export function kvService(server: Server, limits: KvLimits) {
  const Range: UnaryHandler<RangeRequest, RangeResponse> = (call) => {
    const r = call.request;
    const bad = checkRange(r);
    if (bad) return replyError(call, bad);
    // Serializable reads are served from the local store as it is; linearizable ones first wait
    // for ReadIndex (this member's store has applied everything committed before the read).
    if (r.serializable) serveRange(server, call);
    else if (server.isLearner) replyError(call, Errors.NotSupportedForLearner);
    else server.linearizableRead().then(() => serveRange(server, call), (err) => replyError(call, err));
  };

  const Put: UnaryHandler<PutRequest, PutResponse> = (call) => {
    // A learner only replicates (etcd: "rpc not supported for learner").
    if (server.isLearner) return replyError(call, Errors.NotSupportedForLearner);
    const bad = checkPut(call.request);
    if (bad) return replyError(call, bad);
    const who = authorize(server, call, checks.put, call.request);
    if (who instanceof EtcdError) return replyError(call, who);
    server.propose({ put: call.request }, who).then(
      (r) => call.respond(applied<PutResponse>(server, r)),
      (err) => replyError(call, err),
    );
  };

  const DeleteRange: UnaryHandler<DeleteRangeRequest, DeleteRangeResponse> = (call) => {
    // A learner only replicates (etcd: "rpc not supported for learner").
    if (server.isLearner) return replyError(call, Errors.NotSupportedForLearner);
    const bad = checkDelete(call.request);
    if (bad) return replyError(call, bad);
    const who = authorize(server, call, checks.deleteRange, call.request);
    if (who instanceof EtcdError) return replyError(call, who);
    server.propose({ delete_range: call.request }, who).then(
      (r) => call.respond(applied<DeleteRangeResponse>(server, r)),
      (err) => replyError(call, err),
    );
  };

  const Txn: UnaryHandler<TxnRequest, TxnResponse> = (call) => {
    // A learner only replicates (etcd: "rpc not supported for learner").
    if (server.isLearner) return replyError(call, Errors.NotSupportedForLearner);
    const t = call.request;
    const bad = checkTxn(t, limits.maxTxnOps);
    if (bad) return replyError(call, bad);
    if (isTxnReadOnly(t)) {
      const serve = () => {
        const who = authorize(server, call, checks.txn, t);
        if (who instanceof EtcdError) return replyError(call, who);
        let resp: TxnResponse;
        try {
          resp = applyReadOnlyTxn(server.store, t);
        } catch (err) {
          return replyError(call, err);
        }
        fillTxnHeaders(resp, server.header());
        call.respond(resp);
      };
      // etcd serves a read-only txn as linearizable unless every range in it is serializable.
      return void server.linearizableRead().then(serve, (err) => replyError(call, err));
    }
    const who = authorize(server, call, checks.txn, t);
    if (who instanceof EtcdError) return replyError(call, who);
    server.propose({ txn: t }, who).then(
      (r) => {
        const resp = r.response as TxnResponse;
        fillTxnHeaders(resp, server.header(r.revision));
        call.respond(resp);
      },
      (err) => replyError(call, err),
    );
  };

  const Compact: UnaryHandler<CompactionRequest, CompactionResponse> = (call) => {
    if (server.isLearner) return replyError(call, Errors.NotSupportedForLearner);
    // etcd 3.4 lets any authenticated (or anonymous) caller compact; only a bad token is refused.
    const who = authorize(server, call, checks.none, undefined);
    if (who instanceof EtcdError) return replyError(call, who);
    server.propose({ compaction: call.request }, who).then(
      (r) => call.respond({ header: server.header(r.revision) }),
      (err) => replyError(call, err),
    );
  };

  return { Range, Put, DeleteRange, Txn, Compact };
}
