// Invariant checks. A failed assertion is a bug in quorumkv, never a user error: it throws an
// AssertionError that is not caught by request handlers, so the process crashes loudly instead of
// limping on with corrupted state (Raft survives a crashed member; it does not survive a lying one).
// User input gets a typed EtcdError (src/util/errors.ts) instead.

export class AssertionError extends Error {
  override name = 'AssertionError';
}

export function assert(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new AssertionError(`assertion failed: ${msg}`);
}

export function unreachable(x: never, msg = 'unreachable'): never {
  throw new AssertionError(`${msg}: ${String(x)}`);
}
