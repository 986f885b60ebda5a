// etcd 3.4's JSON gateway routes (the google.api.http bindings of its rpc.proto, v3election.proto
// and v3lock.proto): every one is a POST with the request message as the JSON body.

export interface Route {
  /** Fully qualified gRPC service, e.g. "etcdserverpb.KV". */
  readonly service: string;
  readonly method: string;
  /** For client-streaming methods: whether the end of the HTTP request body ends the call. The
   *  lease keepalive stream does (etcd's server returns on the client's half-close); a watch
   *  stream stays open until the HTTP client goes away, as with etcd's gateway. */
  readonly endsOnHalfClose?: boolean;
}

const r = (service: string, method: string, endsOnHalfClose?: boolean): Route => ({ service, method, endsOnHalfClose });
const KV = 'etcdserverpb.KV';
const LEASE = 'etcdserverpb.Lease';
const CLUSTER = 'etcdserverpb.Cluster';
const MAINT = 'etcdserverpb.Maintenance';
const AUTH = 'etcdserverpb.Auth';
const ELECTION = 'v3electionpb.Election';
const LOCK = 'v3lockpb.Lock';

export const GATEWAY_ROUTES: ReadonlyMap<string, Route> = new Map([
  ['/v3/kv/range', r(KV, 'Range')],
  ['/v3/kv/put', r(KV, 'Put')],
  ['/v3/kv/deleterange', r(KV, 'DeleteRange')],
  ['/v3/kv/txn', r(KV, 'Txn')],
  ['/v3/kv/compaction', r(KV, 'Compact')],
  ['/v3/watch', r('etcdserverpb.Watch', 'Watch', false)],
  ['/v3/lease/grant', r(LEASE, 'LeaseGrant')],
  ['/v3/lease/revoke', r(LEASE, 'LeaseRevoke')],
  ['/v3/kv/lease/revoke', r(LEASE, 'LeaseRevoke')],
  ['/v3/lease/keepalive', r(LEASE, 'LeaseKeepAlive', true)],
  ['/v3/lease/timetolive', r(LEASE, 'LeaseTimeToLive')],
  ['/v3/kv/lease/timetolive', r(LEASE, 'LeaseTimeToLive')],
  ['/v3/lease/leases', r(LEASE, 'LeaseLeases')],
  ['/v3/kv/lease/leases', r(LEASE, 'LeaseLeases')],
  ['/v3/cluster/member/add', r(CLUSTER, 'MemberAdd')],
  ['/v3/cluster/member/remove', r(CLUSTER, 'MemberRemove')],
  ['/v3/cluster/member/update', r(CLUSTER, 'MemberUpdate')],
  ['/v3/cluster/member/list', r(CLUSTER, 'MemberList')],
  ['/v3/cluster/member/promote', r(CLUSTER, 'MemberPromote')],
  ['/v3/maintenance/alarm', r(MAINT, 'Alarm')],
  ['/v3/maintenance/status', r(MAINT, 'Status')],
  ['/v3/maintenance/defragment', r(MAINT, 'Defragment')],
  ['/v3/maintenance/hash', r(MAINT, 'Hash')],
  ['/v3/maintenance/hashkv', r(MAINT, 'HashKV')],
  ['/v3/maintenance/snapshot', r(MAINT, 'Snapshot')],
  ['/v3/maintenance/transfer-leadership', r(MAINT, 'MoveLeader')],
  ['/v3/auth/enable', r(AUTH, 'AuthEnable')],
  ['/v3/auth/disable', r(AUTH, 'AuthDisable')],
  ['/v3/auth/authenticate', r(AUTH, 'Authenticate')],
  ['/v3/auth/user/add', r(AUTH, 'UserAdd')],
  ['/v3/auth/user/get', r(AUTH, 'UserGet')],
  ['/v3/auth/user/list', r(AUTH, 'UserList')],
  ['/v3/auth/user/delete', r(AUTH, 'UserDelete')],
  ['/v3/auth/user/changepw', r(AUTH, 'UserChangePassword')],
  ['/v3/auth/user/grant', r(AUTH, 'UserGrantRole')],
  ['/v3/auth/user/revoke', r(AUTH, 'UserRevokeRole')],
  ['/v3/auth/role/add', r(AUTH, 'RoleAdd')],
  ['/v3/auth/role/get', r(AUTH, 'RoleGet')],
  ['/v3/auth/role/list', r(AUTH, 'RoleList')],
  ['/v3/auth/role/delete', r(AUTH, 'RoleDelete')],
  ['/v3/auth/role/grant', r(AUTH, 'RoleGrantPermission')],
  ['/v3/auth/role/revoke', r(AUTH, 'RoleRevokePermission')],
  ['/v3/election/campaign', r(ELECTION, 'Campaign')],
  ['/v3/election/proclaim', r(ELECTION, 'Proclaim')],
  ['/v3/election/leader', r(ELECTION, 'Leader')],
  ['/v3/election/observe', r(ELECTION, 'Observe')],
  ['/v3/election/resign', r(ELECTION, 'Resign')],
  ['/v3/lock/lock', r(LOCK, 'Lock')],
  ['/v3/lock/unlock', r(LOCK, 'Unlock')],
]);

/** grpc-gateway's HTTP status for each gRPC code (runtime.HTTPStatusFromCode, v1). */
export const HTTP_STATUS_OF_CODE: readonly number[] = [
  200, // OK
  408, // Canceled
  500, // Unknown
  400, // InvalidArgument
  504, // DeadlineExceeded
  404, // NotFound
  409, // AlreadyExists
  403, // PermissionDenied
  429, // ResourceExhausted
  412, // FailedPrecondition
  409, // Aborted
  400, // OutOfRange
  501, // Unimplemented
  500, // Internal
  503, // Unavailable
  500, // DataLoss
  401, // Unauthenticated
];

export function httpStatusOf(code: number): number {
  return HTTP_STATUS_OF_CODE[code] ?? 500;
}
