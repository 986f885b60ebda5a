// v3lockpb.Lock (etcd's v3lock server over clientv3/concurrency's Mutex): an election without
// values. Lock puts "<name>/<lease ID in hex>" with the lease (lease 0: a new 60 s session lease)
// and waits, through watchers on the deletion of each predecessor, until its key has the lowest
// create revision under "<name>/"; it answers that key, which Unlock deletes. A Lock abandoned while
// it waits (client gone, deadline) deletes its key, as etcd's Mutex does. If the key is gone once
// it is its turn (its lease expired while it waited), Lock fails with "mutex: session is expired"
// (etcd 3.5's Mutex; 3.4 answered with the dead key). Every operation runs as the caller.
import { Errors } from '../util/errors';
import type { Server } from '../server/server';
import type { ResponseHeader } from '../proto/types';
import type { UnaryCall, UnaryHandler } from './call';
import type { WatchHub } from './watch_service';
import { KvAsCaller, abandonSignal, createRevisionIs, failUnlessAbandoned, innerStatus, firstCreated, op, rangeOp } from './kv_as_caller';
import { sessionKey, sessionLease } from './election_service';
import type { Logger } from '../util/log';

const SLASH = Buffer.from('/');
const EMPTY = Buffer.alloc(0);

interface LockRequest {
  name: Buffer;
  lease: string | number;
}
interface LockResponse {
  header: ResponseHeader;
  key: Buffer;
}
interface UnlockRequest {
  key: Buffer;
}

export function lockService(server: Server, hub: WatchHub, log: Logger) {
  const lock = async (call: UnaryCall<LockRequest, LockResponse>): Promise<LockResponse> => {
    const abandoned = abandonSignal(call);
    const kv = new KvAsCaller(server, hub, call);
    const lease = await sessionLease(kv, call.request.lease);
    const prefix = Buffer.concat([call.request.name, SLASH]);
    const key = sessionKey(prefix, lease);
    const owner = op.range(firstCreated(prefix));
    const t = await kv.txn({
      compare: [createRevisionIs(key, 0)],
      success: [op.put(key, EMPTY, lease.toString()), owner],
      failure: [op.range(rangeOp(key)), owner],
    });
    const myRev = t.succeeded ? Number(t.header.revision) : Number(t.responses[0]!.response_range!.kvs[0]!.create_revision);
    const first = t.responses[1]!.response_range!.kvs[0];
    if (!first || Number(first.create_revision) === myRev) return { header: t.header, key };
    let header: ResponseHeader;
    try {
      header = await kv.waitDeletes(prefix, myRev - 1, abandoned);
    } catch (err) {
      if (abandoned.aborted) {
        await new KvAsCaller(server, hub, call).deleteKey(key).catch((e) => log.warn('releasing an abandoned lock request failed', { key: key.toString(), error: String(e) }));
      }
      throw err;
    }
    const mine = await kv.range(rangeOp(key));
    if (mine.kvs.length === 0 || Number(mine.kvs[0]!.create_revision) !== myRev) throw Errors.MutexSessionExpired;
    return { header, key };
  };

  const Lock: UnaryHandler<LockRequest, LockResponse> = (call) => {
    lock(call).then((r) => call.respond(r), (err) => failUnlessAbandoned(call, err));
  };

  const Unlock: UnaryHandler<UnlockRequest, { header: ResponseHeader }> = (call) => {
    new KvAsCaller(server, hub, call).deleteKey(call.request.key).then(
      (header) => call.respond({ header }),
      (err) => call.fail(innerStatus(err)),
    );
  };

  return { Lock, Unlock };
}
