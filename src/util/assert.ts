// Invariant checks. A failed assertion is a bug in quorumkv, never a user error: it throws an
// AssertionError that no request path turns into a status. Every catch site that serves requests
// (api/errors.ts toStatus, the gRPC server, the JSON gateway) passes it on with
// rethrowIfAssertion, so the process crashes loudly with the stack instead of limping on with
// corrupted state (Raft survives a crashed member, and the WAL makes its restart safe; it does not
// survive a lying one). User input gets a typed EtcdError (src/util/errors.ts) instead.

export class AssertionError extends Error {
  override name = 'AssertionError';
}

export function assert(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new AssertionError(`assertion failed: ${msg}`);
}

export function unreachable(x: never, msg = 'unreachable'): never {
  throw new AssertionError(`${msg}: ${String(x)}`);
}

/** For catch sites that turn exceptions into answers: an AssertionError is thrown on, so that it
 *  crashes the member (from a promise callback: as an unhandled rejection, which ends the process). */
export function rethrowIfAssertion(err: unknown): void {
  if (err instanceof AssertionError) throw err;
}
