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
import type * as grpc from '@grpc/grpc-js';
import { EtcdError, Errors } from '../util/errors';
import type { Server } from '../server/server';
import { toLeaseId, toNumber } from '../server/kv_ops';
import { NO_LEASE, type LeaseId } from '../mvcc';
import { LEASE_TTL_SEC_MAX, type LeaseRunner } from '../lease';
import type { Int64 } from '../proto/types';
import { replyError, toStatus } from './errors';
import type { Handlers } from './services';
import type { LeaderForwarder } from './forward';
import { authorize, checks } from './auth_service';

type Unary<Req> = (call: grpc.ServerUnaryCall<Req, unknown>, callback: grpc.sendUnaryData<unknown>) => void;
type KeepAliveCall = grpc.ServerDuplexStream<{ ID: Int64 }, unknown>;

/** A random positive int64 (etcd's lease IDs are never 0 or negative when server-chosen). */
export function randomLeaseId(): LeaseId {
  for (;;) {
    const id = randomBytes(8).readBigUInt64BE() & 0x7fffffffffffffffn;
    if (id !== NO_LEASE) return id;
  }
}

export function leaseService(server: Server, runner: LeaseRunner, forwarder?: LeaderForwarder): Handlers {
  const lessor = runner.lessor;

  const LeaseGrant: Unary<{ TTL: Int64; ID: Int64 }> = (call, cb) => {
    const ttl = toNumber(call.request.TTL);
    if (ttl > LEASE_TTL_SEC_MAX) return replyError(cb, Errors.LeaseTTLTooLarge);
    let id = toLeaseId(call.request.ID);
    if (id === NO_LEASE) id = randomLeaseId();
    // etcd 3.4 checks no permission for a grant; only a bad token is refused.
    const who = authorize(server, call, checks.none, undefined);
    if (who instanceof EtcdError) return replyError(cb, who);
    server.propose({ lease_grant: { TTL: ttl, ID: id.toString() } }, who).then(
      (r) => {
        const g = r.response as { ID: string; TTL: number };
        cb(null, { header: server.header(r.revision), ID: g.ID, TTL: g.TTL, error: '' });
      },
      (err) => replyError(cb, err),
    );
  };

  const LeaseRevoke: Unary<{ ID: Int64 }> = (call, cb) => {
    // Revoking deletes the attached keys: WRITE on each of them (checked again at apply).
    const who = authorize(server, call, checks.leaseRevoke, call.request);
    if (who instanceof EtcdError) return replyError(cb, who);
    server.propose({ lease_revoke: { ID: toLeaseId(call.request.ID).toString() } }, who).then(
      (r) => cb(null, { header: server.header(r.revision) }),
      (err) => replyError(cb, err),
    );
  };

  const LeaseTimeToLive: Unary<{ ID: Int64; keys: boolean }> = (call, cb) => {
    const id = toLeaseId(call.request.ID);
    if (!server.isLeader()) {
      // Remaining TTLs live on the leader's clock: ask it, as etcd followers do.
      if (!forwarder) return replyError(cb, Errors.NotLeader);
      forwarder.unary('etcdserverpb.Lease', 'LeaseTimeToLive', call.request).then((res) => cb(null, res), (err) => replyError(cb, err));
      return;
    }
    const t = lessor.timeToLive(id, call.request.keys);
    if (!t) return cb(null, { header: server.header(), ID: id.toString(), TTL: -1, grantedTTL: 0, keys: [] });
    cb(null, { header: server.header(), ID: id.toString(), TTL: t.ttlSec, grantedTTL: t.grantedTtlSec, keys: t.keys });
  };

  const LeaseLeases: Unary<object> = (_call, cb) => {
    cb(null, { header: server.header(), leases: lessor.leaseIds().map((id) => ({ ID: id.toString() })) });
  };

  const LeaseKeepAlive = (call: KeepAliveCall): void => {
    let ended = false;
    let halfClosed = false;
    /** Keepalives relayed to the leader and not answered yet: the stream ends after them. */
    let relayed = 0;
    const end = () => {
      if (ended) return;
      ended = true;
      call.end();
    };
    const maybeEnd = () => {
      if (halfClosed && relayed === 0) end();
    };
    call.on('data', (req: { ID: Int64 }) => {
      if (ended) return;
      const id = toLeaseId(req.ID);
      if (!server.isLeader() && forwarder) {
        // Keepalives are served by the leader: relay this one and answer with its TTL.
        relayed++;
        forwarder.renew(id.toString()).then(
          (ttl) => {
            relayed--;
            if (!ended) call.write({ header: server.header(), ID: id.toString(), TTL: ttl });
            maybeEnd();
          },
          (err) => {
            relayed--;
            if (ended) return;
            ended = true;
            call.emit('error', toStatus(err));
          },
        );
        return;
      }
      const r = runner.renew(id);
      if (r instanceof EtcdError && r !== Errors.LeaseNotFound) {
        ended = true;
        call.emit('error', toStatus(r));
        return;
      }
      const ttl = r instanceof EtcdError ? 0 : r;
      call.write({ header: server.header(), ID: id.toString(), TTL: ttl });
    });
    call.on('end', () => {
      halfClosed = true;
      maybeEnd();
    });
    call.on('error', () => (ended = true));
    call.on('cancelled', () => (ended = true));
  };

  return { LeaseGrant, LeaseRevoke, LeaseTimeToLive, LeaseLeases, LeaseKeepAlive } as Handlers;
}
