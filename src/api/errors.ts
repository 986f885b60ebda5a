// Turning errors into the statuses calls end with (call.ts). An EtcdError carries etcd's code and
// message and is a Status as it is. An AssertionError is a broken invariant: it is thrown on, never
// answered (util/assert.ts), so the member crashes and restarts from its WAL. Anything else is a
// bug short of that: the client gets INTERNAL, and the status carries the exception as its cause,
// which the transport serving the call logs with the method (src/grpcserver/server.ts
// onInternalError, src/http/gateway.ts): never silently, never a stack sent to a client.
import { rethrowIfAssertion } from '../util/assert';
import { EtcdError, GrpcCode } from '../util/errors';
import type { CallBase, Status } from './call';

/** An unexpected failure: INTERNAL with `what` and the exception's message; the exception is kept
 *  as the cause, for the log. */
export function internalStatus(what: string, err: unknown): Status {
  rethrowIfAssertion(err);
  return { code: GrpcCode.INTERNAL, message: `${what}: ${err instanceof Error ? err.message : String(err)}`, cause: err };
}

/** The status to answer `err` with (throws an AssertionError on). */
export function toStatus(err: unknown): Status {
  if (err instanceof EtcdError) return err;
  return internalStatus('quorumkv: internal error', err);
}

/** Ends `call` with the status of `err` (throws an AssertionError on). */
export function replyError(call: CallBase, err: unknown): void {
  call.fail(toStatus(err));
}
