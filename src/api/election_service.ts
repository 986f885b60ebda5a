// v3electionpb.Election (etcd's v3election server over clientv3/concurrency's Election), built on
// this member's KV, Lease and Watch machinery, every operation run as the caller (kv_as_caller.ts).
//
// An election named N is the keys under "N/": each candidate owns "N/<lease ID in hex>", put with
// its lease; the leader is the key with the lowest create revision. So:
//   * Campaign puts the candidate key if absent (or takes it over: same lease, same key), then waits
//     until no key under the prefix was created before it: each time on the deletion of the
//     last-created predecessor, through a watcher (no polling). It answers LeaderKey{name, key,
//     rev = the key's create revision, lease}. While it runs, it keeps the lease alive (etcd's
//     server runs it in a session whose keepalives last as long as the request). Lease 0: a new 60 s lease is granted (etcd's default
//     session TTL). A Campaign abandoned while it waits (client gone, deadline) resigns: its key is
//     deleted if it is still the one it created;
//   * Proclaim puts a new value if the key still has the LeaderKey's create revision, else
//     "election: not leader"; Resign deletes it under the same condition (and succeeds either way);
//   * Leader answers the first-created key under the prefix, else "election: no leader";
//   * Observe streams the leader's key-value: the current one, each new value it proclaims, and the
//     next leader after it is deleted (waiting for a first candidate if there is none).
// Errors are etcd's: the concurrency package's plain errors (code Unknown), and whatever the KV
// operations answer (a lease that does not exist: "etcdserver: requested lease not found").
import { EtcdError, Errors } from '../util/errors';
import type { LeaseRunner } from '../lease';
import type { LeaderForwarder } from './forward';
import type { Server } from '../server/server';
import { kvToPb, toLeaseId } from '../server/kv_ops';
import { EventType, NO_LEASE, WatchFlags, type Event, type LeaseId, type Revision, type WatchSink, type Watcher } from '../mvcc';
import type { KeyValuePb, ResponseHeader } from '../proto/types';
import type { ServerStreamCall, ServerStreamHandler, StreamListener, UnaryCall, UnaryHandler } from './call';
import type { WatchHub } from './watch_service';
import { KvAsCaller, abandonSignal, createRevisionIs, failUnlessAbandoned, innerStatus, firstCreated, op, prefixEnd, rangeOp } from './kv_as_caller';
import type { Logger } from '../util/log';

/** etcd's concurrency.defaultSessionTTL: the lease granted for a request with lease 0. */
export const SESSION_TTL_SEC = 60;
const SLASH = Buffer.from('/');

interface LeaderKey {
  name: Buffer;
  key: Buffer;
  rev: string | number;
  lease: string | number;
}
interface CampaignRequest {
  name: Buffer;
  lease: string | number;
  value: Buffer;
}
interface CampaignResponse {
  header: ResponseHeader;
  leader: LeaderKey;
}
interface ProclaimRequest {
  leader: LeaderKey | null;
  value: Buffer;
}
interface LeaderRequest {
  name: Buffer;
}
interface LeaderResponse {
  header: ResponseHeader;
  kv: KeyValuePb;
}
interface ResignRequest {
  leader: LeaderKey | null;
}
interface HeaderOnly {
  header: ResponseHeader;
}

/** The key a session's lease owns under `prefix` (etcd: fmt.Sprintf("%s%x", prefix, lease)). */
export function sessionKey(prefix: Buffer, lease: LeaseId): Buffer {
  return Buffer.concat([prefix, Buffer.from(lease.toString(16))]);
}

/** The lease of a request: its own, or a new session lease for 0. */
export async function sessionLease(kv: KvAsCaller, lease: string | number): Promise<LeaseId> {
  const id = toLeaseId(lease);
  return id !== NO_LEASE ? id : BigInt(await kv.grant(SESSION_TTL_SEC));
}

/** Shortest pause between two keepalives of a campaigning session (also after a failed one). */
const SESSION_KEEPALIVE_MS_MIN = 500;

/** Keeps one lease alive every TTL/3 until stop() (clientv3's keepalive period): a Campaign's
 *  session. A lease found expired or gone ends it. */
class SessionKeepAlive {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly renew: (id: LeaseId) => Promise<number>,
    private readonly id: LeaseId,
    private readonly log: Logger,
  ) {
    this.tick();
  }

  private tick(): void {
    this.timer = undefined;
    this.renew(this.id).then(
      (ttlSec) => {
        if (!this.stopped && ttlSec > 0) this.schedule(Math.max(SESSION_KEEPALIVE_MS_MIN, (ttlSec * 1000) / 3));
      },
      (err) => {
        this.log.debug('keepalive of a campaigning session failed; retrying', { lease: this.id.toString(16), error: String(err) });
        if (!this.stopped) this.schedule(SESSION_KEEPALIVE_MS_MIN);
      },
    );
  }

  private schedule(ms: number): void {
    this.timer = setTimeout(() => this.tick(), ms);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

export interface ElectionDeps {
  server: Server;
  hub: WatchHub;
  log: Logger;
  /** Keepalives of a campaigning session: served by the leader's lessor, relayed by followers. */
  leases: LeaseRunner;
  forwarder?: LeaderForwarder;
}

export function electionService(deps: ElectionDeps) {
  const { server, hub, log } = deps;
  /** One keepalive, as the Lease service serves it: the TTL granted again, 0 if gone. */
  const renew = async (id: LeaseId): Promise<number> => {
    if (!server.isLeader() && deps.forwarder) return deps.forwarder.renew(id.toString());
    const r = deps.leases.renew(id);
    if (r === Errors.LeaseNotFound) return 0;
    if (r instanceof EtcdError) throw r;
    return r;
  };

  /** Deletes the candidate key if it is still the one created at `rev` (Election.Resign). */
  const resign = async (kv: KvAsCaller, key: Buffer, rev: number): Promise<ResponseHeader> => {
    const t = await kv.txn({ compare: [createRevisionIs(key, rev)], success: [op.del(key)], failure: [] });
    return t.header;
  };

  const campaign = async (call: UnaryCall<CampaignRequest, CampaignResponse>): Promise<CampaignResponse> => {
    const req = call.request;
    const abandoned = abandonSignal(call);
    const kv = new KvAsCaller(server, hub, call);
    const lease = await sessionLease(kv, req.lease);
    const keepAlive = new SessionKeepAlive(renew, lease, log);
    try {
      return await campaignWithSession(call, kv, lease, abandoned);
    } finally {
      keepAlive.stop();
    }
  };

  const campaignWithSession = async (call: UnaryCall<CampaignRequest, CampaignResponse>, kv: KvAsCaller, lease: LeaseId, abandoned: AbortSignal): Promise<CampaignResponse> => {
    const req = call.request;
    const prefix = Buffer.concat([req.name, SLASH]);
    const key = sessionKey(prefix, lease);
    const t = await kv.txn({
      compare: [createRevisionIs(key, 0)],
      success: [op.put(key, req.value, lease.toString())],
      failure: [op.range(rangeOp(key))],
    });
    let rev = Number(t.header.revision);
    if (!t.succeeded) {
      // The session already campaigned (same lease): keep its place, and its value if unchanged.
      const mine = t.responses[0]!.response_range!.kvs[0]!;
      rev = Number(mine.create_revision);
      if (!mine.value.equals(req.value)) {
        const p = await kv.txn({ compare: [createRevisionIs(key, rev)], success: [op.put(key, req.value, lease.toString())], failure: [] });
        if (!p.succeeded) throw Errors.ElectionNotLeader;
      }
    }
    try {
      await kv.waitDeletes(prefix, rev - 1, abandoned);
    } catch (err) {
      // Abandoned while waiting: give up the place in line (etcd resigns with a fresh context).
      if (abandoned.aborted) {
        await resign(new KvAsCaller(server, hub, call), key, rev).catch((e) => log.warn('resigning an abandoned campaign failed', { key: key.toString(), error: String(e) }));
      }
      throw err;
    }
    return { header: t.header, leader: { name: req.name, key, rev, lease: lease.toString() } };
  };

  const Campaign: UnaryHandler<CampaignRequest, CampaignResponse> = (call) => {
    campaign(call).then((r) => call.respond(r), (err) => failUnlessAbandoned(call, err));
  };

  const Proclaim: UnaryHandler<ProclaimRequest, HeaderOnly> = (call) => {
    const l = call.request.leader;
    if (!l) return call.fail(Errors.MissingLeaderKey);
    const kv = new KvAsCaller(server, hub, call);
    kv.txn({ compare: [createRevisionIs(l.key, Number(l.rev))], success: [op.put(l.key, call.request.value, toLeaseId(l.lease).toString())], failure: [] }).then(
      (t) => (t.succeeded ? call.respond({ header: t.header }) : call.fail(Errors.ElectionNotLeader)),
      (err) => call.fail(innerStatus(err)),
    );
  };

  const Leader: UnaryHandler<LeaderRequest, LeaderResponse> = (call) => {
    const kv = new KvAsCaller(server, hub, call);
    kv.range(firstCreated(Buffer.concat([call.request.name, SLASH]))).then(
      (r) => (r.kvs.length === 0 ? call.fail(Errors.ElectionNoLeader) : call.respond({ header: r.header!, kv: r.kvs[0]! })),
      (err) => call.fail(innerStatus(err)),
    );
  };

  const Resign: UnaryHandler<ResignRequest, HeaderOnly> = (call) => {
    const l = call.request.leader;
    if (!l) return call.fail(Errors.MissingLeaderKey);
    resign(new KvAsCaller(server, hub, call), l.key, Number(l.rev)).then(
      (header) => call.respond({ header }),
      (err) => call.fail(innerStatus(err)),
    );
  };

  const Observe: ServerStreamHandler<LeaderRequest, LeaderResponse> = (call) => {
    const o = new Observer(server, hub, call);
    o.start();
    return o;
  };

  return { Campaign, Proclaim, Leader, Observe, Resign };
}

/**
 * One Observe stream (etcd's Election.observe): find the leader (or wait for the first PUT under
 * the prefix), send it, then send each PUT of its key until the key is deleted; repeat. One
 * watcher at a time, on the member's watchable store; back-pressured like a watch stream (while
 * the client does not read, the watcher falls behind and catches up from the history).
 */
class Observer implements WatchSink, StreamListener {
  private readonly prefix: Buffer;
  private readonly kv: KvAsCaller;
  private watcher: Watcher | undefined;
  /** Waiting for a first candidate (a PUT under the prefix) rather than on the leader's key. */
  private awaitingFirst = false;
  private done = false;
  private blocked = false;

  constructor(
    private readonly server: Server,
    private readonly hub: WatchHub,
    private readonly call: ServerStreamCall<LeaderRequest, LeaderResponse>,
  ) {
    this.prefix = Buffer.concat([call.request.name, SLASH]);
    this.kv = new KvAsCaller(server, hub, call);
  }

  get ready(): boolean {
    return !this.done && !this.blocked;
  }

  /** Reads the current leader; sends it and follows its key, or waits for a first candidate. */
  start(): void {
    this.kv.range(firstCreated(this.prefix)).then(
      (r) => {
        if (this.done) return;
        const rev = Number(r.header!.revision);
        const leader = r.kvs[0];
        if (leader) return this.follow(leader, r.header!, rev);
        this.awaitingFirst = true;
        this.watch(this.prefix, prefixEnd(this.prefix), rev + 1, WatchFlags.NODELETE);
      },
      (err) => this.fail(err),
    );
  }

  private follow(kv: KeyValuePb, header: ResponseHeader, rev: Revision): void {
    this.send({ header, kv });
    this.awaitingFirst = false;
    this.watch(kv.key, undefined, rev + 1, 0);
  }

  private watch(key: Buffer, end: Buffer | undefined, fromRev: Revision, flags: number): void {
    this.unwatch();
    this.watcher = this.hub.watchable.watch('observe', key, end, fromRev, flags, this);
  }

  private unwatch(): void {
    if (this.watcher) this.hub.watchable.cancel(this.watcher);
    this.watcher = undefined;
  }

  private send(resp: LeaderResponse): void {
    if (!this.done && !this.call.write(resp)) this.blocked = true;
  }

  private fail(err: unknown): void {
    if (this.done) return;
    this.close();
    this.call.fail(innerStatus(err));
  }

  deliver(w: Watcher, events: Event[], revision: Revision): void {
    if (w !== this.watcher || this.done) return;
    if (this.awaitingFirst) {
      // The first candidate: its header revision is its own put's (a batch may hold more).
      const kv = kvToPb(events[0]!.kv);
      return this.follow(kv, this.server.header(Number(kv.mod_revision)), Number(kv.mod_revision));
    }
    for (const e of events) {
      if (e.type === EventType.DELETE) {
        this.unwatch();
        return this.start();
      }
      this.send({ header: this.server.header(revision), kv: kvToPb(e.kv) });
    }
  }

  /** The history this stream needed is compacted: read the leader again (etcd's client would end
   *  the stream with ErrCompacted; reading again loses only intermediate values). */
  compacted(w: Watcher): void {
    if (w !== this.watcher || this.done) return;
    this.watcher = undefined;
    this.start();
  }

  drain(): void {
    this.blocked = false;
    this.hub.scheduleSync();
  }

  closed(): void {
    this.close();
  }

  private close(): void {
    this.done = true;
    this.unwatch();
  }
}
