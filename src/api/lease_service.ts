// etcdserverpb.Lease (etcd's v3rpc/lease.go). Grant and revoke go through the log; keepalives are
// served by the leader's lessor without a log entry; TimeToLive and Leases read the lessor.
//
// etcd's client-visible details kept here:
//   * ID 0 in a grant: the server picks a random positive int64 (here, in the proposer: the log
//     entry always carries the ID, so applying it is deterministic);
//   * TTL above 9,000,000,000 s: ErrGRPCLeaseTTLTooLarge; TTLs below the minimum are raised;
//   * keepalive for an unknown or expired lease: a response with TTL 0, not an error;
//   * TimeToLive of an unknown lease: TTL -1, not an error.
import { randomBytes } from 'node:crypto';
import { EtcdError, Errors } from '../util/errors';
import type { Server } from '../server/server';
import { toLeaseId, toNumber } from '../server/kv_ops';
import { NO_LEASE, type LeaseId } from '../mvcc';
import { LEASE_TTL_SEC_MAX, type LeaseRunner } from '../lease';
import type {
  HeaderResponse,
  LeaseGrantRequest,
  LeaseGrantResponse,
  LeaseIdRequest,
  LeaseKeepAliveResponse,
  LeaseLeasesResponse,
  LeaseTimeToLiveRequest,
  LeaseTimeToLiveResponse,
} from '../proto/types';
import { replyError, toStatus } from './errors';
import type { BidiHandler, UnaryHandler } from './call';
import type { LeaderForwarder } from './forward';
import { authorize, checks } from './auth_service';

/** Keepalives one stream may have relayed to the leader and not answered yet; past it the
 *  stream's requests are held (not read) until answers come back, so a client cannot queue
 *  unbounded relays on a follower. */
export const RELAYED_PER_STREAM_MAX = 1000;

/** A random positive int64 (etcd's lease IDs are never 0 or negative when server-chosen). */
export function randomLeaseId(): LeaseId {
  for (;;) {
    const id = randomBytes(8).readBigUInt64BE() & 0x7fffffffffffffffn;
    if (id !== NO_LEASE) return id;
  }
}

export function leaseService(server: Server, runner: LeaseRunner, forwarder?: LeaderForwarder) {
  const lessor = runner.lessor;

  const LeaseGrant: UnaryHandler<LeaseGrantRequest, LeaseGrantResponse> = (call) => {
    const ttl = toNumber(call.request.TTL);
    if (ttl > LEASE_TTL_SEC_MAX) return replyError(call, Errors.LeaseTTLTooLarge);
    let id = toLeaseId(call.request.ID);
    if (id === NO_LEASE) id = randomLeaseId();
    // etcd 3.4 checks no permission for a grant; only a bad token is refused.
    const who = authorize(server, call, checks.none, undefined);
    if (who instanceof EtcdError) return replyError(call, who);
    server.propose({ lease_grant: { TTL: ttl, ID: id.toString() } }, who).then(
      (r) => {
        const g = r.response as { ID: string; TTL: number };
        call.respond({ header: server.header(r.revision), ID: g.ID, TTL: g.TTL, error: '' });
      },
      (err) => replyError(call, err),
    );
  };

  const LeaseRevoke: UnaryHandler<LeaseIdRequest, HeaderResponse> = (call) => {
    // Revoking deletes the attached keys: WRITE on each of them (checked again at apply).
    const who = authorize(server, call, checks.leaseRevoke, call.request);
    if (who instanceof EtcdError) return replyError(call, who);
    server.propose({ lease_revoke: { ID: toLeaseId(call.request.ID).toString() } }, who).then(
      (r) => call.respond({ header: server.header(r.revision) }),
      (err) => replyError(call, err),
    );
  };

  const LeaseTimeToLive: UnaryHandler<LeaseTimeToLiveRequest, LeaseTimeToLiveResponse> = (call) => {
    const id = toLeaseId(call.request.ID);
    // With keys, only a caller who may read every key of the lease (etcd's fix of
    // CVE-2023-32082); without, etcd checks nothing, not even the token.
    if (call.request.keys) {
      const who = authorize(server, call, checks.leaseTimeToLive, call.request);
      if (who instanceof EtcdError) return replyError(call, who);
    }
    if (!server.isLeader()) {
      // Remaining TTLs live on the leader's clock: ask it, as etcd followers do. The keys are
      // this member's (the attachments are replicated state): the leader is asked without them,
      // so it need not see the caller's credentials, which were checked here.
      if (!forwarder) return replyError(call, Errors.NotLeader);
      forwarder.unary<LeaseTimeToLiveResponse>('etcdserverpb.Lease', 'LeaseTimeToLive', { ID: call.request.ID, keys: false }).then(
        (res) => {
          if (call.request.keys) res.keys = lessor.timeToLive(id, true)?.keys ?? [];
          call.respond(res);
        },
        (err) => replyError(call, err),
      );
      return;
    }
    const t = lessor.timeToLive(id, call.request.keys);
    if (!t) return call.respond({ header: server.header(), ID: id.toString(), TTL: -1, grantedTTL: 0, keys: [] });
    call.respond({ header: server.header(), ID: id.toString(), TTL: t.ttlSec, grantedTTL: t.grantedTtlSec, keys: t.keys });
  };

  const LeaseLeases: UnaryHandler<object, LeaseLeasesResponse> = (call) => {
    call.respond({ header: server.header(), leases: lessor.leaseIds().map((id) => ({ ID: id.toString() })) });
  };

  /** One keepalive stream: each request is answered with the lease's TTL, in order. */
  const LeaseKeepAlive: BidiHandler<LeaseIdRequest, LeaseKeepAliveResponse> = (call) => {
    let ended = false;
    let halfClosed = false;
    /** Keepalives relayed to the leader and not answered yet: the stream ends after them. */
    let relayed = 0;
    const maybeEnd = () => {
      if (!halfClosed || relayed > 0 || ended) return;
      ended = true;
      call.end();
    };
    return {
      message: (req) => {
        if (ended) return;
        const id = toLeaseId(req.ID);
        if (!server.isLeader() && forwarder) {
          // Keepalives are served by the leader: relay this one and answer with its TTL.
          if (++relayed === RELAYED_PER_STREAM_MAX) call.holdRequests?.();
          const answered = () => {
            if (relayed-- === RELAYED_PER_STREAM_MAX) call.releaseRequests?.();
          };
          forwarder.renew(id.toString()).then(
            (ttl) => {
              answered();
              if (!ended) call.write({ header: server.header(), ID: id.toString(), TTL: ttl });
              maybeEnd();
            },
            (err) => {
              answered();
              if (ended) return;
              ended = true;
              call.fail(toStatus(err));
            },
          );
          return;
        }
        const r = runner.renew(id);
        if (r instanceof EtcdError && r !== Errors.LeaseNotFound) {
          ended = true;
          call.fail(r);
          return;
        }
        const ttl = r instanceof EtcdError ? 0 : r;
        call.write({ header: server.header(), ID: id.toString(), TTL: ttl });
      },
      halfClosed: () => {
        halfClosed = true;
        maybeEnd();
      },
      closed: () => {
        ended = true;
      },
    };
  };

  return { LeaseGrant, LeaseRevoke, LeaseTimeToLive, LeaseLeases, LeaseKeepAlive };
}
