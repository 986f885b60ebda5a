// etcd's client-visible errors: a gRPC status code and an exact message. Go's clientv3 maps errors
// back to typed values by comparing the message string, so both must match etcd byte for byte
// (etcd api/v3rpc/rpctypes/error.go).

/** gRPC status codes (numeric, as on the wire). */
export const GrpcCode = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;
export type GrpcCode = (typeof GrpcCode)[keyof typeof GrpcCode];

/** An error a client may see: carries its gRPC code and etcd's message. */
export class EtcdError extends Error {
  override name = 'EtcdError';
  constructor(
    readonly code: GrpcCode,
    message: string,
  ) {
    super(message);
  }
  /** Shape understood by @grpc/grpc-js callbacks and stream.destroy(). */
  toGrpc(): { code: number; details: string; message: string } {
    return { code: this.code, details: this.message, message: this.message };
  }
}

function def(code: GrpcCode, message: string): EtcdError {
  return new EtcdError(code, message);
}

const C = GrpcCode;

// The errors are shared immutable values: throw them as they are (stack traces of user errors are
// noise, and building one per request costs time on the hot path).
export const Errors = {
  EmptyKey: def(C.INVALID_ARGUMENT, 'etcdserver: key is not provided'),
  KeyNotFound: def(C.INVALID_ARGUMENT, 'etcdserver: key not found'),
  ValueProvided: def(C.INVALID_ARGUMENT, 'etcdserver: value is provided'),
  LeaseProvided: def(C.INVALID_ARGUMENT, 'etcdserver: lease is provided'),
  TooManyOps: def(C.INVALID_ARGUMENT, 'etcdserver: too many operations in txn request'),
  DuplicateKey: def(C.INVALID_ARGUMENT, 'etcdserver: duplicate key given in txn request'),
  InvalidSortOption: def(C.INVALID_ARGUMENT, 'etcdserver: invalid sort option'),
  Compacted: def(C.OUT_OF_RANGE, 'etcdserver: mvcc: required revision has been compacted'),
  FutureRev: def(C.OUT_OF_RANGE, 'etcdserver: mvcc: required revision is a future revision'),
  NoSpace: def(C.RESOURCE_EXHAUSTED, 'etcdserver: mvcc: database space exceeded'),
  LeaseNotFound: def(C.NOT_FOUND, 'etcdserver: requested lease not found'),
  LeaseExist: def(C.FAILED_PRECONDITION, 'etcdserver: lease already exists'),
  LeaseTTLTooLarge: def(C.OUT_OF_RANGE, 'etcdserver: too large lease TTL'),
  WatchCanceled: def(C.CANCELLED, 'etcdserver: watch canceled'),
  MemberExist: def(C.FAILED_PRECONDITION, 'etcdserver: member ID already exist'),
  PeerURLExist: def(C.FAILED_PRECONDITION, 'etcdserver: Peer URLs already exists'),
  MemberNotEnoughStarted: def(C.FAILED_PRECONDITION, 'etcdserver: re-configuration failed due to not enough started members'),
  MemberBadURLs: def(C.INVALID_ARGUMENT, 'etcdserver: given member URLs are invalid'),
  MemberNotFound: def(C.NOT_FOUND, 'etcdserver: member not found'),
  MemberNotLearner: def(C.FAILED_PRECONDITION, 'etcdserver: can only promote a learner member'),
  LearnerNotReady: def(C.FAILED_PRECONDITION, 'etcdserver: can only promote a learner member which is in sync with leader'),
  TooManyLearners: def(C.FAILED_PRECONDITION, 'etcdserver: too many learner members in cluster'),
  RequestTooLarge: def(C.INVALID_ARGUMENT, 'etcdserver: request is too large'),
  TooManyRequests: def(C.RESOURCE_EXHAUSTED, 'etcdserver: too many requests'),
  PermissionDenied: def(C.PERMISSION_DENIED, 'etcdserver: permission denied'),
  InvalidAuthToken: def(C.UNAUTHENTICATED, 'etcdserver: invalid auth token'),
  AuthNotEnabled: def(C.FAILED_PRECONDITION, 'etcdserver: authentication is not enabled'),
  NoLeader: def(C.UNAVAILABLE, 'etcdserver: no leader'),
  NotLeader: def(C.FAILED_PRECONDITION, 'etcdserver: not leader'),
  LeaderChanged: def(C.UNAVAILABLE, 'etcdserver: leader changed'),
  NotCapable: def(C.FAILED_PRECONDITION, 'etcdserver: not capable'),
  Stopped: def(C.UNAVAILABLE, 'etcdserver: server stopped'),
  Timeout: def(C.UNAVAILABLE, 'etcdserver: request timed out'),
  Unhealthy: def(C.UNAVAILABLE, 'etcdserver: unhealthy cluster'),
  Corrupt: def(C.DATA_LOSS, 'etcdserver: corrupt cluster'),
  NotSupportedForLearner: def(C.FAILED_PRECONDITION, 'etcdserver: rpc not supported for learner'),
  BadLeaderTransferee: def(C.FAILED_PRECONDITION, 'etcdserver: bad leader transferee'),
  Canceled: def(C.CANCELLED, 'etcdserver: request canceled'),
  DeadlineExceeded: def(C.DEADLINE_EXCEEDED, 'etcdserver: context deadline exceeded'),
  // The concurrency package's errors (clientv3/concurrency), which etcd's Election and Lock
  // servers return as they are: plain Go errors, so gRPC code Unknown.
  ElectionNotLeader: def(C.UNKNOWN, 'election: not leader'),
  ElectionNoLeader: def(C.UNKNOWN, 'election: no leader'),
  // etcd 3.5's Mutex.Lock answers this when its key was gone by the time it was its turn (its
  // lease expired while it waited); 3.4 returned the lock anyway.
  MutexSessionExpired: def(C.UNKNOWN, 'mutex: session is expired'),
  MissingLeaderKey: def(C.UNKNOWN, '"leader" field must be provided'),
} as const;

export function unimplemented(method: string, why = 'not implemented yet'): EtcdError {
  return new EtcdError(C.UNIMPLEMENTED, `quorumkv: ${method} is ${why}`);
}
