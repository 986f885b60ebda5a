// The KV, Lease and Watch operations the Election and Lock services are built from, run as the
// caller: each one passes the same auth gate as the caller's own KV request would (etcd's
// v3election/v3lock servers use an in-process client that carries the request's context, token
// included), and writes go through the log like a client's. What etcd's clientv3/concurrency
// package does with a client, this does with the member's own apply path and watchable store.
import { EtcdError, GrpcCode } from '../util/errors';
import type { Server } from '../server/server';
import { applyRange, applyReadOnlyTxn, fillTxnHeaders, isTxnReadOnly } from '../server/kv_ops';
import { EventType, WatchFlags, type Event, type WatchSink, type Watcher } from '../mvcc';
import type { Compare, KeyValuePb, RangeRequest, RangeResponse, RequestOp, ResponseHeader, TxnRequest, TxnResponse } from '../proto/types';
import { CompareResult, CompareTarget } from '../proto/types';
import type { CallBase, Status } from './call';
import type { WatchHub } from './watch_service';
import { authorize, checks } from './auth_service';
import { randomLeaseId } from './lease_service';
import { toStatus } from './errors';

const EMPTY = Buffer.alloc(0);
/** etcd's SortTarget.CREATE and SortOrder values (rpc.proto). */
const SORT_BY_CREATE = 2;
const SORT_ASCEND = 1;
const SORT_DESCEND = 2;

/** The end of the range of every key starting with `prefix` (etcd's clientv3.GetPrefixRangeEnd). */
export function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]); // every key >= prefix
}

export function rangeOp(key: Buffer, opts: Partial<RangeRequest> = {}): RangeRequest {
  return {
    key,
    range_end: EMPTY,
    limit: 0,
    revision: 0,
    sort_order: 0,
    sort_target: 0,
    serializable: false,
    keys_only: false,
    count_only: false,
    min_mod_revision: 0,
    max_mod_revision: 0,
    min_create_revision: 0,
    max_create_revision: 0,
    ...opts,
  };
}

/** The first-created key under `prefix` (clientv3.WithFirstCreate). */
export function firstCreated(prefix: Buffer): RangeRequest {
  return rangeOp(prefix, { range_end: prefixEnd(prefix), sort_target: SORT_BY_CREATE, sort_order: SORT_ASCEND, limit: 1 });
}

/** The last-created key under `prefix` created at or below `maxCreateRev` (WithLastCreate +
 *  WithMaxCreateRev). */
function lastCreatedUpTo(prefix: Buffer, maxCreateRev: number): RangeRequest {
  return rangeOp(prefix, { range_end: prefixEnd(prefix), sort_target: SORT_BY_CREATE, sort_order: SORT_DESCEND, limit: 1, max_create_revision: maxCreateRev });
}

export function createRevisionIs(key: Buffer, rev: number): Compare {
  return { result: CompareResult.EQUAL, target: CompareTarget.CREATE, key, create_revision: rev, range_end: EMPTY };
}

export const op = {
  range: (r: RangeRequest): RequestOp => ({ request_range: r }),
  put: (key: Buffer, value: Buffer, lease: string): RequestOp => ({ request_put: { key, value, lease, prev_kv: false, ignore_value: false, ignore_lease: false } }),
  del: (key: Buffer): RequestOp => ({ request_delete_range: { key, range_end: EMPTY, prev_kv: false } }),
};

/** Thrown (rejected with) when the call was abandoned while an operation waited. */
export class Abandoned extends Error {
  constructor() {
    super('the call was abandoned');
  }
}

/** One caller's operations. `call`: whose token (and certificate CN) the auth gate checks. */
export class KvAsCaller {
  constructor(
    private readonly server: Server,
    private readonly hub: WatchHub,
    private readonly call: CallBase,
  ) {}

  /** A linearizable Range (as a client's Get). */
  async range(r: RangeRequest): Promise<RangeResponse> {
    await this.server.linearizableRead();
    const who = authorize(this.server, this.call, checks.range, r);
    if (who instanceof EtcdError) throw who;
    const resp = applyRange(this.server.store, r);
    resp.header = this.server.header();
    return resp;
  }

  /** A Txn (read-only ones linearizable, as etcd serves them); the response with its header. */
  async txn(t: TxnRequest): Promise<TxnResponse & { header: ResponseHeader }> {
    if (isTxnReadOnly(t)) {
      await this.server.linearizableRead();
      const who = authorize(this.server, this.call, checks.txn, t);
      if (who instanceof EtcdError) throw who;
      const resp = applyReadOnlyTxn(this.server.store, t);
      fillTxnHeaders(resp, this.server.header());
      return resp as TxnResponse & { header: ResponseHeader };
    }
    const who = authorize(this.server, this.call, checks.txn, t);
    if (who instanceof EtcdError) throw who;
    const r = await this.server.propose({ txn: t }, who);
    const resp = r.response as TxnResponse;
    fillTxnHeaders(resp, this.server.header(r.revision));
    return resp as TxnResponse & { header: ResponseHeader };
  }

  async deleteKey(key: Buffer): Promise<ResponseHeader> {
    const req = { key, range_end: EMPTY, prev_kv: false };
    const who = authorize(this.server, this.call, checks.deleteRange, req);
    if (who instanceof EtcdError) throw who;
    const r = await this.server.propose({ delete_range: req }, who);
    return this.server.header(r.revision);
  }

  /** A new lease of `ttlSec` with a server-chosen ID (a session's own lease: etcd's NewSession
   *  without WithLease). Returns the ID as a decimal string. */
  async grant(ttlSec: number): Promise<string> {
    const who = authorize(this.server, this.call, checks.none, undefined);
    if (who instanceof EtcdError) throw who;
    const r = await this.server.propose({ lease_grant: { TTL: ttlSec, ID: randomLeaseId().toString() } }, who);
    return (r.response as { ID: string }).ID;
  }

  /**
   * etcd's waitDeletes: waits until no key under `prefix` has a create revision at or below
   * `maxCreateRev`, each time on the deletion of the last-created one (a watch, not polling).
   * Returns the header of the read that found none. The loop ends: keys created later have higher
   * create revisions, so the set waited on only shrinks, one deletion per turn.
   */
  async waitDeletes(prefix: Buffer, maxCreateRev: number, abandoned: AbortSignal): Promise<ResponseHeader> {
    for (;;) {
      if (abandoned.aborted) throw new Abandoned();
      const resp = await this.range(lastCreatedUpTo(prefix, maxCreateRev));
      if (resp.kvs.length === 0) return resp.header!;
      await waitDelete(this.hub, resp.kvs[0]!.key, Number(resp.header!.revision) + 1, abandoned);
    }
  }
}

/** Waits for `key`'s deletion at or after revision `fromRev` (etcd's waitDelete). Also resolves if
 *  the history it needs was compacted away: the caller then reads again instead of failing. */
export function waitDelete(hub: WatchHub, key: Buffer, fromRev: number, abandoned: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let w: Watcher | undefined;
    const done = (err?: Error) => {
      if (w) hub.watchable.cancel(w);
      w = undefined;
      abandoned.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve();
    };
    const onAbort = () => done(new Abandoned());
    if (abandoned.aborted) return onAbort();
    abandoned.addEventListener('abort', onAbort, { once: true });
    const sink: WatchSink = {
      ready: true,
      deliver: (_w, events: Event[]) => {
        if (events.some((e) => e.type === EventType.DELETE)) done();
      },
      compacted: () => done(),
    };
    w = hub.watchable.watch('wait-delete', key, undefined, fromRev, WatchFlags.NOPUT, sink);
  });
}

/** The AbortSignal of a call: aborted when the call is abandoned (client gone, deadline). */
export function abandonSignal(call: CallBase): AbortSignal {
  const ac = new AbortController();
  call.onAbandoned(() => ac.abort());
  return ac.signal;
}

/** The status an Election or Lock call fails with. etcd's servers reach KV through an in-process
 *  client that turns every status into a plain error, so the caller sees code Unknown with the
 *  message ("etcdserver: requested lease not found", code 2, checked against etcd 3.4). */
export function innerStatus(err: unknown): Status {
  const st = toStatus(err);
  if (!(err instanceof EtcdError) || st.code === GrpcCode.UNKNOWN) return st;
  return new EtcdError(GrpcCode.UNKNOWN, st.message);
}

/** Answers `call` with the error `err`, unless it was abandoned (then nobody listens). */
export function failUnlessAbandoned(call: CallBase, err: unknown): void {
  if (err instanceof Abandoned) return;
  call.fail(innerStatus(err));
}

export type { KeyValuePb };
