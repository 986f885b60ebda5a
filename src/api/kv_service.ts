// etcdserverpb.KV: validates each request with etcd's errors, serves reads from the store and
// sends writes through the log (Server.propose), and stamps etcd's response header.
import { EtcdError, Errors } from '../util/errors';
import type { Server } from '../server/server';
import type { ApplyResult } from '../server/applier';
import { applyRange, applyReadOnlyTxn, fillTxnHeaders, isTxnReadOnly, kvToPb, rangeEndOf, rangeOptions } from '../server/kv_ops';
import type { RangeJob } from '../mvcc';
import { assert } from '../util/assert';
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
import { rangeSliced, RANGE_KEYS_PER_STEP, RANGE_VALUES_PER_STEP, type PartSink, type RangeAnswerTarget } from './range_sliced';
import type { RangeAnswerBudget } from './range_budget';
import { planIsSmall, planTxn, txnSliced, type TxnAnswerTarget, type TxnPlan } from './txn_sliced';
import { encodeHeader } from './watch_encoding';
import { checkDelete, checkPut, checkRange, checkTxn } from './validate';
import { replyError } from './errors';
import { authorize, checks } from './auth_service';
import { LAT_TRACE, latStamp } from '../util/lat_trace';

export interface KvLimits {
  maxTxnOps: number;
  /** The member's budget of memory held by large range answers (--max-range-answer-bytes);
   *  none: unbounded. */
  rangeBudget?: RangeAnswerBudget;
}

/** An applied write's response (applier.ts builds it for the request's kind, without a header)
 *  with etcd's header at the write's revision. */
function applied<T extends { header?: ResponseHeader }>(server: Server, r: ApplyResult): T {
  return { header: server.header(r.revision), ...r.response } as T;
}

/** A Range from the local store, once it may be served (a function of its own: the serializable
 *  read, the hot path, makes no closure). A single key is read as it always was; a range runs as
 *  the store's sliced range job, answered in this turn when its walk fits one step and its answer
 *  a few values, and otherwise over later turns (range_sliced.ts). */
function serveRange(server: Server, call: UnaryCall<RangeRequest, RangeResponse>, budget: RangeAnswerBudget | undefined): void {
  const who = authorize(server, call, checks.range, call.request);
  if (who instanceof EtcdError) return replyError(call, who);
  const r = call.request;
  const end = rangeEndOf(r.range_end);
  if (end === undefined) return serveSingleKey(server, call);
  let job: RangeJob;
  try {
    job = server.store.rangeJob(r.key, end, rangeOptions(r));
  } catch (err) {
    return replyError(call, err);
  }
  if (job.scan(RANGE_KEYS_PER_STEP) === 'done' && (job.countOnly || job.kvs.length <= RANGE_VALUES_PER_STEP)) {
    return call.respond(smallRangeAnswer(job, server.header()));
  }
  let abandoned = false;
  call.onAbandoned(() => (abandoned = true));
  const target: RangeAnswerTarget = {
    header: (rev) => encodeHeader(server.header(rev)),
    begin: (bytes) => call.respondInParts(bytes) as unknown as PartSink,
  };
  rangeSliced(() => server.store, r, job, target, { abandoned: () => abandoned || call.cancelled, onAbandoned: (fn) => call.onAbandoned(fn), budget }).catch((err: unknown) => replyError(call, err));
}

/** A read-only txn with a large range: over later turns (txn_sliced.ts). */
function serveTxnSliced(server: Server, call: UnaryCall<TxnRequest, TxnResponse>, plan: TxnPlan, budget: RangeAnswerBudget | undefined): void {
  let abandoned = false;
  call.onAbandoned(() => (abandoned = true));
  const target: TxnAnswerTarget = {
    header: (rev, nested) => encodeHeader(nested ? ({ revision: server.header(rev).revision } as ResponseHeader) : server.header(rev)),
    begin: (bytes) => call.respondInParts(bytes) as unknown as PartSink,
  };
  txnSliced(() => server.store, call.request, plan, target, { abandoned: () => abandoned || call.cancelled, onAbandoned: (fn) => call.onAbandoned(fn), budget }).catch((err: unknown) => replyError(call, err));
}

function serveSingleKey(server: Server, call: UnaryCall<RangeRequest, RangeResponse>): void {
  let resp: RangeResponse;
  try {
    resp = applyRange(server.store, call.request);
  } catch (err) {
    return replyError(call, err);
  }
  resp.header = server.header();
  call.respond(resp);
}

/** The answer of a range job whose walk is done and whose answer holds a few values: read now. */
function smallRangeAnswer(job: RangeJob, header: ResponseHeader): RangeResponse {
  if (job.valuesNeededForSort) {
    const all = job.hydrateForSort(job.kvs.length || 1);
    assert(all === job.kvs.length, 'range: values moved within one turn');
  }
  job.finish();
  if (job.countOnly || job.kvs.length === 0) return { header, kvs: [], more: job.more, count: job.count };
  const kvs = job.readValues(0, job.kvs.length);
  assert(kvs !== 'stale', 'range: values moved within one turn');
  return { header, kvs: kvs.map(kvToPb), more: job.more, count: job.count };
}

export function kvService(server: Server, limits: KvLimits) {
  const Range: UnaryHandler<RangeRequest, RangeResponse> = (call) => {
    const r = call.request;
    const bad = checkRange(r);
    if (bad) return replyError(call, bad);
    // Serializable reads are served from the local store as it is; linearizable ones first wait
    // for ReadIndex (this member's store has applied everything committed before the read).
    if (r.serializable) serveRange(server, call, limits.rangeBudget);
    else if (server.isLearner) replyError(call, Errors.NotSupportedForLearner);
    else server.linearizableRead().then(() => serveRange(server, call, limits.rangeBudget), (err) => replyError(call, err));
  };

  const Put: UnaryHandler<PutRequest, PutResponse> = (call) => {
    if (LAT_TRACE) latStamp('put');
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
        let plan: TxnPlan;
        try {
          plan = planTxn(server.store, t);
          if (!planIsSmall(plan)) return serveTxnSliced(server, call, plan, limits.rangeBudget);
          // Small: the one-pass txn, in the same turn (the same revision as the plan's).
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
    // physical: etcd answers once the compaction has been applied to the backend (its physc).
    server
      .propose({ compaction: call.request }, who)
      .then(async (r) => {
        if (call.request.physical) await server.compactionsSettled();
        call.respond({ header: server.header(r.revision) });
      })
      .catch((err: unknown) => replyError(call, err));
  };

  return { Range, Put, DeleteRange, Txn, Compact };
}
