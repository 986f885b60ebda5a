// TypeScript shapes of the etcd messages as @grpc/proto-loader and our codec produce them with the
// CONVERSION options (snake_case names, int64 as decimal strings, bytes as Buffers, enums as
// numbers, defaults filled in). When we build a message, int64 fields may also be numbers.

export type Int64 = string | number;

/** A uint64 the server builds once (protobufjs encodes Long values without parsing). */
export interface LongValue {
  low: number;
  high: number;
  unsigned: boolean;
}

export interface ResponseHeader {
  cluster_id: Int64 | LongValue;
  member_id: Int64 | LongValue;
  revision: Int64;
  raft_term: Int64;
}

export interface KeyValuePb {
  key: Buffer;
  create_revision: Int64;
  mod_revision: Int64;
  version: Int64;
  value: Buffer;
  lease: Int64;
}

export interface EventPb {
  type: number;
  kv: KeyValuePb;
  prev_kv?: KeyValuePb | null;
}

export interface RangeRequest {
  key: Buffer;
  range_end: Buffer;
  limit: Int64;
  revision: Int64;
  sort_order: number;
  sort_target: number;
  serializable: boolean;
  keys_only: boolean;
  count_only: boolean;
  min_mod_revision: Int64;
  max_mod_revision: Int64;
  min_create_revision: Int64;
  max_create_revision: Int64;
}

export interface RangeResponse {
  header?: ResponseHeader;
  kvs: KeyValuePb[];
  more: boolean;
  count: Int64;
}

export interface PutRequest {
  key: Buffer;
  value: Buffer;
  lease: Int64;
  prev_kv: boolean;
  ignore_value: boolean;
  ignore_lease: boolean;
}

export interface PutResponse {
  header?: ResponseHeader;
  prev_kv?: KeyValuePb | null;
}

export interface DeleteRangeRequest {
  key: Buffer;
  range_end: Buffer;
  prev_kv: boolean;
}

export interface DeleteRangeResponse {
  header?: ResponseHeader;
  deleted: Int64;
  prev_kvs: KeyValuePb[];
}

export interface RequestOp {
  request?: 'request_range' | 'request_put' | 'request_delete_range' | 'request_txn';
  request_range?: RangeRequest | null;
  request_put?: PutRequest | null;
  request_delete_range?: DeleteRangeRequest | null;
  request_txn?: TxnRequest | null;
}

export interface ResponseOp {
  response_range?: RangeResponse;
  response_put?: PutResponse;
  response_delete_range?: DeleteRangeResponse;
  response_txn?: TxnResponse;
}

export const CompareResult = { EQUAL: 0, GREATER: 1, LESS: 2, NOT_EQUAL: 3 } as const;
export const CompareTarget = { VERSION: 0, CREATE: 1, MOD: 2, VALUE: 3, LEASE: 4 } as const;

export interface Compare {
  result: number;
  target: number;
  key: Buffer;
  target_union?: 'version' | 'create_revision' | 'mod_revision' | 'value' | 'lease';
  version?: Int64 | null;
  create_revision?: Int64 | null;
  mod_revision?: Int64 | null;
  value?: Buffer | null;
  lease?: Int64 | null;
  range_end: Buffer;
}

export interface TxnRequest {
  compare: Compare[];
  success: RequestOp[];
  failure: RequestOp[];
}

export interface TxnResponse {
  header?: ResponseHeader;
  succeeded: boolean;
  responses: ResponseOp[];
}

export interface CompactionRequest {
  revision: Int64;
  physical: boolean;
}

export interface CompactionResponse {
  header?: ResponseHeader;
}

/** A response that carries only the header (etcd's empty responses). */
export interface HeaderResponse {
  header: ResponseHeader;
}

// --- Watch -------------------------------------------------------------------------------------

export interface WatchCreateRequest {
  key: Buffer;
  range_end: Buffer;
  start_revision: Int64;
  progress_notify: boolean;
  filters: number[];
  prev_kv: boolean;
  watch_id: Int64;
  fragment: boolean;
}

export interface WatchRequest {
  request_union?: 'create_request' | 'cancel_request' | 'progress_request';
  create_request?: WatchCreateRequest | null;
  cancel_request?: { watch_id: Int64 } | null;
  progress_request?: object | null;
}

export interface WatchResponse {
  header: ResponseHeader;
  watch_id: Int64;
  created?: boolean;
  canceled?: boolean;
  compact_revision?: Int64;
  cancel_reason?: string;
  fragment?: boolean;
  events?: EventPb[];
}

// --- Lease -------------------------------------------------------------------------------------

export interface LeaseGrantRequest {
  TTL: Int64;
  ID: Int64;
}

export interface LeaseGrantResponse {
  header: ResponseHeader;
  ID: Int64;
  TTL: Int64;
  error: string;
}

/** LeaseRevokeRequest and LeaseKeepAliveRequest. */
export interface LeaseIdRequest {
  ID: Int64;
}

export interface LeaseTimeToLiveRequest {
  ID: Int64;
  keys: boolean;
}

export interface LeaseTimeToLiveResponse {
  header: ResponseHeader;
  ID: Int64;
  TTL: Int64;
  grantedTTL: Int64;
  keys: Buffer[];
}

export interface LeaseLeasesResponse {
  header: ResponseHeader;
  leases: { ID: Int64 }[];
}

export interface LeaseKeepAliveResponse {
  header: ResponseHeader;
  ID: Int64;
  TTL: Int64;
}

// --- Cluster -----------------------------------------------------------------------------------

export interface MemberPb {
  ID: Int64;
  name: string;
  peerURLs: string[];
  clientURLs: string[];
  isLearner: boolean;
}

export interface MemberListRequest {
  linearizable: boolean;
}

export interface MemberAddRequest {
  peerURLs: string[];
  isLearner: boolean;
}

/** MemberRemoveRequest and MemberPromoteRequest. */
export interface MemberIdRequest {
  ID: Int64;
}

export interface MemberUpdateRequest {
  ID: Int64;
  peerURLs: string[];
}

/** The responses of MemberList, MemberRemove, MemberUpdate, MemberPromote (and MemberAdd, which
 *  also names the new member). */
export interface MembersResponse {
  header: ResponseHeader;
  member?: MemberPb;
  members: MemberPb[];
}

// --- Maintenance -------------------------------------------------------------------------------

export interface StatusResponse {
  header: ResponseHeader;
  version: string;
  dbSize: Int64;
  dbSizeInUse: Int64;
  dbSizeQuota: Int64;
  leader: Int64;
  raftIndex: Int64;
  raftTerm: Int64;
  raftAppliedIndex: Int64;
  errors: string[];
  isLearner: boolean;
}

export interface HashKVRequest {
  revision: Int64;
}

export interface HashKVResponse {
  header: ResponseHeader;
  hash: number;
  compact_revision: Int64;
  hash_revision: Int64;
}

export interface HashResponse {
  header: ResponseHeader;
  hash: number;
}

export interface AlarmMemberPb {
  memberID: Int64;
  alarm: number;
}

export interface AlarmRequest {
  action: number;
  memberID: Int64;
  alarm: number;
}

export interface AlarmResponse {
  /** etcd 3.4 answers Alarm without a header (its applier builds the response and nothing fills it). */
  header?: ResponseHeader;
  alarms: AlarmMemberPb[];
}

export interface MoveLeaderRequest {
  targetID: Int64;
}

export interface SnapshotResponse {
  header: ResponseHeader;
  remaining_bytes: Int64;
  blob: Buffer;
  version: string;
}

// --- grpc.health.v1 ----------------------------------------------------------------------------

export interface HealthCheckRequest {
  service: string;
}

export interface HealthCheckResponse {
  /** 1 SERVING, 2 NOT_SERVING. */
  status: number;
}
