// Checks the hand-written etcd v3 protos under proto/ against the etcd wire contract
// (names, streaming flags, field numbers and types from /work/shared/ETCD-FACTS.md §1.1-1.2).
import assert from 'node:assert/strict';
import * as path from 'node:path';
import * as protoLoader from '@grpc/proto-loader';
import * as protobuf from 'protobufjs';
import type * as grpc from '@grpc/grpc-js';
import { grpcDefinitions, serviceDefinitions } from '../../src/proto';

// From dist/test/proto the repository root is three levels up.
const REPO_ROOT = path.join(__dirname, '..', '..', '..');
const PROTO_DIR = path.join(REPO_ROOT, 'proto');

const FILES = [
  'mvccpb/kv.proto',
  'authpb/auth.proto',
  'etcdserverpb/rpc.proto',
  'v3electionpb/v3election.proto',
  'v3lockpb/v3lock.proto',
  'grpc/health/v1/health.proto',
  'quorumkv/internal.proto',
];

const LOADER_OPTS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: Number,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_DIR],
};

function loadRoot(): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin: string, target: string) => path.resolve(PROTO_DIR, target);
  root.loadSync(FILES, { keepCase: true });
  root.resolveAll();
  return root;
}

// [service full name, method, request type, response type, requestStream, responseStream]
type MethodSpec = [string, string, string, string, boolean, boolean];
const u = (svc: string, m: string, req: string, res: string): MethodSpec => [svc, m, req, res, false, false];

const METHODS: MethodSpec[] = [
  u('etcdserverpb.KV', 'Range', 'RangeRequest', 'RangeResponse'),
  u('etcdserverpb.KV', 'Put', 'PutRequest', 'PutResponse'),
  u('etcdserverpb.KV', 'DeleteRange', 'DeleteRangeRequest', 'DeleteRangeResponse'),
  u('etcdserverpb.KV', 'Txn', 'TxnRequest', 'TxnResponse'),
  u('etcdserverpb.KV', 'Compact', 'CompactionRequest', 'CompactionResponse'),
  ['etcdserverpb.Watch', 'Watch', 'WatchRequest', 'WatchResponse', true, true],
  u('etcdserverpb.Lease', 'LeaseGrant', 'LeaseGrantRequest', 'LeaseGrantResponse'),
  u('etcdserverpb.Lease', 'LeaseRevoke', 'LeaseRevokeRequest', 'LeaseRevokeResponse'),
  ['etcdserverpb.Lease', 'LeaseKeepAlive', 'LeaseKeepAliveRequest', 'LeaseKeepAliveResponse', true, true],
  u('etcdserverpb.Lease', 'LeaseTimeToLive', 'LeaseTimeToLiveRequest', 'LeaseTimeToLiveResponse'),
  u('etcdserverpb.Lease', 'LeaseLeases', 'LeaseLeasesRequest', 'LeaseLeasesResponse'),
  u('etcdserverpb.Cluster', 'MemberAdd', 'MemberAddRequest', 'MemberAddResponse'),
  u('etcdserverpb.Cluster', 'MemberRemove', 'MemberRemoveRequest', 'MemberRemoveResponse'),
  u('etcdserverpb.Cluster', 'MemberUpdate', 'MemberUpdateRequest', 'MemberUpdateResponse'),
  u('etcdserverpb.Cluster', 'MemberList', 'MemberListRequest', 'MemberListResponse'),
  u('etcdserverpb.Cluster', 'MemberPromote', 'MemberPromoteRequest', 'MemberPromoteResponse'),
  u('etcdserverpb.Maintenance', 'Alarm', 'AlarmRequest', 'AlarmResponse'),
  u('etcdserverpb.Maintenance', 'Status', 'StatusRequest', 'StatusResponse'),
  u('etcdserverpb.Maintenance', 'Defragment', 'DefragmentRequest', 'DefragmentResponse'),
  u('etcdserverpb.Maintenance', 'Hash', 'HashRequest', 'HashResponse'),
  u('etcdserverpb.Maintenance', 'HashKV', 'HashKVRequest', 'HashKVResponse'),
  ['etcdserverpb.Maintenance', 'Snapshot', 'SnapshotRequest', 'SnapshotResponse', false, true],
  u('etcdserverpb.Maintenance', 'MoveLeader', 'MoveLeaderRequest', 'MoveLeaderResponse'),
  u('etcdserverpb.Maintenance', 'Downgrade', 'DowngradeRequest', 'DowngradeResponse'),
  u('etcdserverpb.Auth', 'AuthEnable', 'AuthEnableRequest', 'AuthEnableResponse'),
  u('etcdserverpb.Auth', 'AuthDisable', 'AuthDisableRequest', 'AuthDisableResponse'),
  u('etcdserverpb.Auth', 'AuthStatus', 'AuthStatusRequest', 'AuthStatusResponse'),
  u('etcdserverpb.Auth', 'Authenticate', 'AuthenticateRequest', 'AuthenticateResponse'),
  u('etcdserverpb.Auth', 'UserAdd', 'AuthUserAddRequest', 'AuthUserAddResponse'),
  u('etcdserverpb.Auth', 'UserGet', 'AuthUserGetRequest', 'AuthUserGetResponse'),
  u('etcdserverpb.Auth', 'UserList', 'AuthUserListRequest', 'AuthUserListResponse'),
  u('etcdserverpb.Auth', 'UserDelete', 'AuthUserDeleteRequest', 'AuthUserDeleteResponse'),
  u('etcdserverpb.Auth', 'UserChangePassword', 'AuthUserChangePasswordRequest', 'AuthUserChangePasswordResponse'),
  u('etcdserverpb.Auth', 'UserGrantRole', 'AuthUserGrantRoleRequest', 'AuthUserGrantRoleResponse'),
  u('etcdserverpb.Auth', 'UserRevokeRole', 'AuthUserRevokeRoleRequest', 'AuthUserRevokeRoleResponse'),
  u('etcdserverpb.Auth', 'RoleAdd', 'AuthRoleAddRequest', 'AuthRoleAddResponse'),
  u('etcdserverpb.Auth', 'RoleGet', 'AuthRoleGetRequest', 'AuthRoleGetResponse'),
  u('etcdserverpb.Auth', 'RoleList', 'AuthRoleListRequest', 'AuthRoleListResponse'),
  u('etcdserverpb.Auth', 'RoleDelete', 'AuthRoleDeleteRequest', 'AuthRoleDeleteResponse'),
  u('etcdserverpb.Auth', 'RoleGrantPermission', 'AuthRoleGrantPermissionRequest', 'AuthRoleGrantPermissionResponse'),
  u('etcdserverpb.Auth', 'RoleRevokePermission', 'AuthRoleRevokePermissionRequest', 'AuthRoleRevokePermissionResponse'),
  u('v3electionpb.Election', 'Campaign', 'CampaignRequest', 'CampaignResponse'),
  u('v3electionpb.Election', 'Proclaim', 'ProclaimRequest', 'ProclaimResponse'),
  u('v3electionpb.Election', 'Leader', 'LeaderRequest', 'LeaderResponse'),
  ['v3electionpb.Election', 'Observe', 'LeaderRequest', 'LeaderResponse', false, true],
  u('v3electionpb.Election', 'Resign', 'ResignRequest', 'ResignResponse'),
  u('v3lockpb.Lock', 'Lock', 'LockRequest', 'LockResponse'),
  u('v3lockpb.Lock', 'Unlock', 'UnlockRequest', 'UnlockResponse'),
  u('grpc.health.v1.Health', 'Check', 'HealthCheckRequest', 'HealthCheckResponse'),
  ['grpc.health.v1.Health', 'Watch', 'HealthCheckRequest', 'HealthCheckResponse', false, true],
];

// [message full name, field name, number, protobufjs type, repeated]
type FieldSpec = [string, string, number, string, boolean];
const E = 'etcdserverpb.';
const FIELDS: FieldSpec[] = [
  ['mvccpb.KeyValue', 'key', 1, 'bytes', false],
  ['mvccpb.KeyValue', 'create_revision', 2, 'int64', false],
  ['mvccpb.KeyValue', 'lease', 6, 'int64', false],
  ['mvccpb.Event', 'type', 1, 'EventType', false],
  ['mvccpb.Event', 'prev_kv', 3, 'KeyValue', false],
  ['authpb.User', 'roles', 3, 'string', true],
  ['authpb.User', 'options', 4, 'UserAddOptions', false],
  ['authpb.Permission', 'permType', 1, 'Type', false],
  ['authpb.Permission', 'range_end', 3, 'bytes', false],
  ['authpb.Role', 'keyPermission', 2, 'Permission', true],
  ['authpb.UserAddOptions', 'no_password', 1, 'bool', false],
  [E + 'ResponseHeader', 'cluster_id', 1, 'uint64', false],
  [E + 'ResponseHeader', 'raft_term', 4, 'uint64', false],
  [E + 'RangeRequest', 'sort_order', 5, 'SortOrder', false],
  [E + 'RangeRequest', 'count_only', 9, 'bool', false],
  [E + 'RangeRequest', 'max_create_revision', 13, 'int64', false],
  [E + 'RangeResponse', 'kvs', 2, 'mvccpb.KeyValue', true],
  [E + 'RangeResponse', 'count', 4, 'int64', false],
  [E + 'PutRequest', 'ignore_lease', 6, 'bool', false],
  [E + 'DeleteRangeResponse', 'prev_kvs', 3, 'mvccpb.KeyValue', true],
  [E + 'RequestOp', 'request_txn', 4, 'TxnRequest', false],
  [E + 'ResponseOp', 'response_delete_range', 3, 'DeleteRangeResponse', false],
  [E + 'Compare', 'key', 3, 'bytes', false],
  [E + 'Compare', 'value', 7, 'bytes', false],
  [E + 'Compare', 'lease', 8, 'int64', false],
  [E + 'Compare', 'range_end', 64, 'bytes', false],
  [E + 'TxnRequest', 'failure', 3, 'RequestOp', true],
  [E + 'CompactionRequest', 'physical', 2, 'bool', false],
  [E + 'HashKVResponse', 'hash', 2, 'uint32', false],
  [E + 'HashKVResponse', 'compact_revision', 3, 'int64', false],
  [E + 'HashKVResponse', 'hash_revision', 4, 'int64', false],
  [E + 'SnapshotResponse', 'remaining_bytes', 2, 'uint64', false],
  [E + 'SnapshotResponse', 'version', 4, 'string', false],
  [E + 'WatchRequest', 'progress_request', 3, 'WatchProgressRequest', false],
  [E + 'WatchCreateRequest', 'filters', 5, 'FilterType', true],
  [E + 'WatchCreateRequest', 'watch_id', 7, 'int64', false],
  [E + 'WatchCreateRequest', 'fragment', 8, 'bool', false],
  [E + 'WatchCancelRequest', 'watch_id', 1, 'int64', false],
  [E + 'WatchResponse', 'cancel_reason', 6, 'string', false],
  [E + 'WatchResponse', 'fragment', 7, 'bool', false],
  [E + 'WatchResponse', 'events', 11, 'mvccpb.Event', true],
  [E + 'LeaseGrantRequest', 'TTL', 1, 'int64', false],
  [E + 'LeaseGrantRequest', 'ID', 2, 'int64', false],
  [E + 'LeaseGrantResponse', 'error', 4, 'string', false],
  [E + 'LeaseCheckpoint', 'remaining_TTL', 2, 'int64', false],
  [E + 'LeaseCheckpointRequest', 'checkpoints', 1, 'LeaseCheckpoint', true],
  [E + 'LeaseTimeToLiveResponse', 'grantedTTL', 4, 'int64', false],
  [E + 'LeaseTimeToLiveResponse', 'keys', 5, 'bytes', true],
  [E + 'LeaseLeasesResponse', 'leases', 2, 'LeaseStatus', true],
  [E + 'Member', 'ID', 1, 'uint64', false],
  [E + 'Member', 'peerURLs', 3, 'string', true],
  [E + 'Member', 'clientURLs', 4, 'string', true],
  [E + 'Member', 'isLearner', 5, 'bool', false],
  [E + 'MemberAddRequest', 'isLearner', 2, 'bool', false],
  [E + 'MemberAddResponse', 'members', 3, 'Member', true],
  [E + 'MemberListRequest', 'linearizable', 1, 'bool', false],
  [E + 'MemberPromoteRequest', 'ID', 1, 'uint64', false],
  [E + 'MoveLeaderRequest', 'targetID', 1, 'uint64', false],
  [E + 'AlarmRequest', 'memberID', 2, 'uint64', false],
  [E + 'AlarmRequest', 'alarm', 3, 'AlarmType', false],
  [E + 'AlarmMember', 'alarm', 2, 'AlarmType', false],
  [E + 'DowngradeRequest', 'action', 1, 'DowngradeAction', false],
  [E + 'StatusResponse', 'dbSize', 3, 'int64', false],
  [E + 'StatusResponse', 'raftIndex', 5, 'uint64', false],
  [E + 'StatusResponse', 'raftAppliedIndex', 7, 'uint64', false],
  [E + 'StatusResponse', 'errors', 8, 'string', true],
  [E + 'StatusResponse', 'dbSizeInUse', 9, 'int64', false],
  [E + 'StatusResponse', 'isLearner', 10, 'bool', false],
  [E + 'StatusResponse', 'storageVersion', 11, 'string', false],
  [E + 'StatusResponse', 'dbSizeQuota', 12, 'int64', false],
  [E + 'StatusResponse', 'downgradeInfo', 13, 'DowngradeInfo', false],
  [E + 'DowngradeInfo', 'targetVersion', 2, 'string', false],
  [E + 'AuthUserAddRequest', 'options', 3, 'authpb.UserAddOptions', false],
  [E + 'AuthUserAddRequest', 'hashedPassword', 4, 'string', false],
  [E + 'AuthUserChangePasswordRequest', 'hashedPassword', 3, 'string', false],
  [E + 'AuthUserGrantRoleRequest', 'user', 1, 'string', false],
  [E + 'AuthRoleGetRequest', 'role', 1, 'string', false],
  [E + 'AuthRoleGrantPermissionRequest', 'perm', 2, 'authpb.Permission', false],
  [E + 'AuthRoleRevokePermissionRequest', 'range_end', 3, 'bytes', false],
  [E + 'AuthRoleGetResponse', 'perm', 2, 'authpb.Permission', true],
  [E + 'AuthStatusResponse', 'authRevision', 3, 'uint64', false],
  [E + 'AuthenticateResponse', 'token', 2, 'string', false],
  [E + 'AuthUserListResponse', 'users', 2, 'string', true],
  ['v3electionpb.CampaignResponse', 'leader', 2, 'LeaderKey', false],
  ['v3electionpb.LeaderKey', 'rev', 3, 'int64', false],
  ['v3electionpb.LeaderResponse', 'kv', 2, 'mvccpb.KeyValue', false],
  ['v3electionpb.LeaderResponse', 'header', 1, 'etcdserverpb.ResponseHeader', false],
  ['v3electionpb.ProclaimRequest', 'value', 2, 'bytes', false],
  ['v3lockpb.LockRequest', 'lease', 2, 'int64', false],
  ['v3lockpb.LockResponse', 'key', 2, 'bytes', false],
  ['grpc.health.v1.HealthCheckRequest', 'service', 1, 'string', false],
  ['grpc.health.v1.HealthCheckResponse', 'status', 1, 'ServingStatus', false],
  ['quorumkvpb.InternalRequest', 'id', 1, 'uint64', false],
  ['quorumkvpb.InternalRequest', 'range', 3, 'etcdserverpb.RangeRequest', false],
  ['quorumkvpb.InternalRequest', 'lease_checkpoint', 10, 'etcdserverpb.LeaseCheckpointRequest', false],
  ['quorumkvpb.InternalRequest', 'auth_enable', 12, 'etcdserverpb.AuthEnableRequest', false],
];

// Every etcdserverpb message named in ETCD-FACTS §1.2 (except 3.7's RangeStreamResponse and the test-only
// DowngradeVersionTestRequest, which are deliberately left out).
const ETCDSERVERPB_MESSAGES = `ResponseHeader RangeRequest RangeResponse PutRequest PutResponse DeleteRangeRequest
  DeleteRangeResponse RequestOp ResponseOp Compare TxnRequest TxnResponse CompactionRequest CompactionResponse
  HashRequest HashKVRequest HashKVResponse HashResponse SnapshotRequest SnapshotResponse WatchRequest
  WatchCreateRequest WatchCancelRequest WatchProgressRequest WatchResponse LeaseGrantRequest LeaseGrantResponse
  LeaseRevokeRequest LeaseRevokeResponse LeaseCheckpoint LeaseCheckpointRequest LeaseCheckpointResponse
  LeaseKeepAliveRequest LeaseKeepAliveResponse LeaseTimeToLiveRequest LeaseTimeToLiveResponse LeaseLeasesRequest
  LeaseStatus LeaseLeasesResponse Member MemberAddRequest MemberAddResponse MemberRemoveRequest MemberRemoveResponse
  MemberUpdateRequest MemberUpdateResponse MemberListRequest MemberListResponse MemberPromoteRequest
  MemberPromoteResponse DefragmentRequest DefragmentResponse MoveLeaderRequest MoveLeaderResponse AlarmRequest
  AlarmMember AlarmResponse DowngradeRequest DowngradeResponse StatusRequest StatusResponse DowngradeInfo
  AuthEnableRequest AuthDisableRequest AuthStatusRequest AuthenticateRequest AuthUserAddRequest AuthUserGetRequest
  AuthUserDeleteRequest AuthUserChangePasswordRequest AuthUserGrantRoleRequest AuthUserRevokeRoleRequest
  AuthRoleAddRequest AuthRoleGetRequest AuthUserListRequest AuthRoleListRequest AuthRoleDeleteRequest
  AuthRoleGrantPermissionRequest AuthRoleRevokePermissionRequest AuthEnableResponse AuthDisableResponse
  AuthStatusResponse AuthenticateResponse AuthUserAddResponse AuthUserGetResponse AuthUserDeleteResponse
  AuthUserChangePasswordResponse AuthUserGrantRoleResponse AuthUserRevokeRoleResponse AuthRoleAddResponse
  AuthRoleGetResponse AuthRoleListResponse AuthUserListResponse AuthRoleDeleteResponse
  AuthRoleGrantPermissionResponse AuthRoleRevokePermissionResponse`
  .split(/\s+/)
  .filter(Boolean);

// Decoded messages are plain objects whose shape the test asserts field by field.
 
type Loose = Record<string, any>;

interface LoaderField {
  name: string;
  number: number;
  label: string;
  type: string;
  typeName: string;
}

describe('proto: etcd v3 wire contract', () => {
  let pkg: protoLoader.PackageDefinition;
  let root: protobuf.Root;

  before(() => {
    pkg = protoLoader.loadSync(FILES, LOADER_OPTS);
    root = loadRoot();
  });

  describe('@grpc/proto-loader', () => {
    it('loads every proto with the project loader options', () => {
      for (const svc of [
        'etcdserverpb.KV', 'etcdserverpb.Watch', 'etcdserverpb.Lease', 'etcdserverpb.Cluster',
        'etcdserverpb.Maintenance', 'etcdserverpb.Auth', 'v3electionpb.Election', 'v3lockpb.Lock',
        'grpc.health.v1.Health',
      ]) {
        assert.ok(pkg[svc], `missing service ${svc}`);
      }
      assert.ok(pkg['quorumkvpb.InternalRequest']);
    });

    it('services have exactly the expected methods, paths, types and stream flags', () => {
      const bySvc = new Map<string, MethodSpec[]>();
      for (const m of METHODS) bySvc.set(m[0], [...(bySvc.get(m[0]) ?? []), m]);
      assert.equal(bySvc.size, 9);
      for (const [svc, specs] of bySvc) {
        const def = pkg[svc] as protoLoader.ServiceDefinition;
        assert.deepEqual(Object.keys(def).sort(), specs.map((s) => s[1]).sort(), `methods of ${svc}`);
        const ns = svc.slice(0, svc.lastIndexOf('.') + 1);
        for (const [, name, req, res, reqStream, resStream] of specs) {
          const md = def[name];
          assert.equal(md.path, `/${svc}/${name}`);
          assert.equal(md.requestStream, reqStream, `${svc}.${name} requestStream`);
          assert.equal(md.responseStream, resStream, `${svc}.${name} responseStream`);
          assert.equal((md.requestType.type as Loose).name, req, `${svc}.${name} request type`);
          assert.equal((md.responseType.type as Loose).name, res, `${svc}.${name} response type`);
          assert.ok(pkg[ns + req] && pkg[ns + res]);
        }
      }
    });

    it('does not expose the 3.7-only KV.RangeStream', () => {
      assert.equal((pkg['etcdserverpb.KV'] as protoLoader.ServiceDefinition).RangeStream, undefined);
    });

    it('descriptor field numbers match for every spot-checked field', () => {
      for (const [msg, field, num, , repeated] of FIELDS) {
        const t = pkg[msg] as Loose;
        assert.ok(t && t.format === 'Protocol Buffer 3 DescriptorProto', `missing message ${msg}`);
        const fields = (t.type as { field: LoaderField[] }).field;
        const f = fields.find((x) => x.name === field);
        assert.ok(f, `${msg}.${field} missing`);
        assert.equal(f.number, num, `${msg}.${field} number`);
        assert.equal(f.label === 'LABEL_REPEATED', repeated, `${msg}.${field} repeated`);
      }
    });

    it('grpc serializers round-trip with keepCase/longs=String/defaults', () => {
      const put = (pkg['etcdserverpb.KV'] as protoLoader.ServiceDefinition).Put;
      const buf = put.requestSerialize({ key: Buffer.from('k'), value: Buffer.from('v'), lease: '7587' });
      const back = put.requestDeserialize(buf) as Loose;
      assert.deepEqual(back.key, Buffer.from('k'));
      assert.equal(back.lease, '7587');
      assert.equal(back.prev_kv, false);
      assert.equal(back.ignore_lease, false);

      const status = (pkg['etcdserverpb.Maintenance'] as protoLoader.ServiceDefinition).Status;
      const sb = status.responseSerialize({
        header: { cluster_id: '18446744073709551615', member_id: '1', revision: '5', raft_term: '2' },
        version: '3.4.0', dbSize: '4096', isLearner: true, downgradeInfo: { enabled: true, targetVersion: '3.5' },
      });
      const s = status.responseDeserialize(sb) as Loose;
      assert.equal(s.header.cluster_id, '18446744073709551615');
      assert.equal(s.dbSize, '4096');
      assert.equal(s.isLearner, true);
      assert.deepEqual(s.downgradeInfo, { enabled: true, targetVersion: '3.5' });
      assert.deepEqual(s.errors, []);

      const watch = (pkg['etcdserverpb.Watch'] as protoLoader.ServiceDefinition).Watch;
      const wr = watch.requestDeserialize(
        watch.requestSerialize({ create_request: { key: Buffer.from('a'), filters: [1], watch_id: '3' } }),
      ) as Loose;
      assert.equal(wr.request_union, 'create_request');
      assert.deepEqual(wr.create_request.filters, [1]);
    });
  });

  describe('protobufjs', () => {
    it('defines every etcdserverpb message listed in the facts', () => {
      for (const m of ETCDSERVERPB_MESSAGES) assert.ok(root.lookupType(E + m), m);
      assert.equal(root.lookup(E + 'RangeStreamResponse'), null);
    });

    it('services and stream flags', () => {
      for (const [svc, name, req, res, reqStream, resStream] of METHODS) {
        const s = root.lookupService(svc);
        const m = s.methods[name];
        assert.ok(m, `${svc}.${name}`);
        assert.equal(m.requestType, req);
        assert.equal(m.responseType, res);
        assert.equal(!!m.requestStream, reqStream, `${svc}.${name} requestStream`);
        assert.equal(!!m.responseStream, resStream, `${svc}.${name} responseStream`);
      }
    });

    it('field numbers, types and repeated flags', () => {
      for (const [msg, field, num, type, repeated] of FIELDS) {
        const t = root.lookupType(msg);
        const f = t.fields[field];
        assert.ok(f, `${msg}.${field} missing`);
        assert.equal(f.id, num, `${msg}.${field} number`);
        assert.equal(f.type, type, `${msg}.${field} type`);
        assert.equal(f.repeated, repeated, `${msg}.${field} repeated`);
      }
    });

    it('enums', () => {
      const en = (n: string) => ({ ...root.lookupEnum(n).values });
      assert.deepEqual(en('mvccpb.Event.EventType'), { PUT: 0, DELETE: 1 });
      assert.deepEqual(en('authpb.Permission.Type'), { READ: 0, WRITE: 1, READWRITE: 2 });
      assert.deepEqual(en(E + 'RangeRequest.SortOrder'), { NONE: 0, ASCEND: 1, DESCEND: 2 });
      assert.deepEqual(en(E + 'RangeRequest.SortTarget'), { KEY: 0, VERSION: 1, CREATE: 2, MOD: 3, VALUE: 4 });
      assert.deepEqual(en(E + 'Compare.CompareResult'), { EQUAL: 0, GREATER: 1, LESS: 2, NOT_EQUAL: 3 });
      assert.deepEqual(en(E + 'Compare.CompareTarget'), { VERSION: 0, CREATE: 1, MOD: 2, VALUE: 3, LEASE: 4 });
      assert.deepEqual(en(E + 'WatchCreateRequest.FilterType'), { NOPUT: 0, NODELETE: 1 });
      assert.deepEqual(en(E + 'AlarmType'), { NONE: 0, NOSPACE: 1, CORRUPT: 2 });
      assert.deepEqual(en(E + 'AlarmRequest.AlarmAction'), { GET: 0, ACTIVATE: 1, DEACTIVATE: 2 });
      assert.deepEqual(en(E + 'DowngradeRequest.DowngradeAction'), { VALIDATE: 0, ENABLE: 1, CANCEL: 2 });
      assert.deepEqual(en('grpc.health.v1.HealthCheckResponse.ServingStatus'), {
        UNKNOWN: 0, SERVING: 1, NOT_SERVING: 2, SERVICE_UNKNOWN: 3,
      });
    });

    it('oneofs', () => {
      const oneof = (msg: string, name: string) => root.lookupType(msg).oneofs[name]?.oneof;
      assert.deepEqual(oneof(E + 'Compare', 'target_union'),
        ['version', 'create_revision', 'mod_revision', 'value', 'lease']);
      assert.equal(root.lookupType(E + 'Compare').fields.range_end.partOf, null);
      assert.deepEqual(oneof(E + 'RequestOp', 'request'),
        ['request_range', 'request_put', 'request_delete_range', 'request_txn']);
      assert.deepEqual(oneof(E + 'ResponseOp', 'response'),
        ['response_range', 'response_put', 'response_delete_range', 'response_txn']);
      assert.deepEqual(oneof(E + 'WatchRequest', 'request_union'),
        ['create_request', 'cancel_request', 'progress_request']);
      const internal = oneof('quorumkvpb.InternalRequest', 'request') ?? [];
      assert.ok(internal.includes('put') && internal.includes('role_revoke_permission'));
    });

    it('InternalRequest field numbers are unique and in the documented ranges', () => {
      const t = root.lookupType('quorumkvpb.InternalRequest');
      const ids = t.fieldsArray.map((f) => f.id);
      assert.equal(new Set(ids).size, ids.length);
      const want: Record<string, number> = {
        put: 4, delete_range: 5, txn: 6, compaction: 7, lease_grant: 8, lease_revoke: 9, alarm: 11,
      };
      for (const [n, id] of Object.entries(want)) assert.equal(t.fields[n].id, id, n);
      for (const f of t.fieldsArray) {
        if (f.name.startsWith('auth') || f.name.startsWith('user_') || f.name.startsWith('role_')) {
          assert.ok(f.id >= 12 && f.id <= 30, `${f.name}=${f.id}`);
        }
      }
    });

    it('PutRequest with binary key bytes round-trips and matches the expected wire bytes', () => {
      const T = root.lookupType(E + 'PutRequest');
      const key = Uint8Array.from([0x00, 0xff, 0x80, 0x7f, 0x0a, 0xc3]);
      const msg = T.fromObject({ key, value: Buffer.from('v'), lease: '5', prev_kv: true });
      const bytes = T.encode(msg).finish();
      // field 1 (bytes): tag 0x0a; field 2 (bytes): 0x12; field 3 (varint): 0x18; field 4 (bool): 0x20.
      assert.deepEqual(
        Buffer.from(bytes),
        Buffer.from([0x0a, 6, 0x00, 0xff, 0x80, 0x7f, 0x0a, 0xc3, 0x12, 1, 0x76, 0x18, 5, 0x20, 1]),
      );
      const back = T.toObject(T.decode(bytes), { longs: String, bytes: Buffer, defaults: true });
      assert.deepEqual(back.key, Buffer.from(key));
      assert.deepEqual(back.value, Buffer.from('v'));
      assert.equal(back.lease, '5');
      assert.equal(back.prev_kv, true);
      assert.equal(back.ignore_value, false);
    });

    it('WatchResponse events (field 11) and Compare.range_end (field 64) use the right tags', () => {
      const W = root.lookupType(E + 'WatchResponse');
      const wb = W.encode(W.fromObject({ events: [{ type: 1, kv: { key: Buffer.from('x') } }] })).finish();
      assert.equal(wb[0], (11 << 3) | 2); // 0x5a
      const C = root.lookupType(E + 'Compare');
      const cb = C.encode(C.fromObject({ range_end: Buffer.from('z') })).finish();
      assert.deepEqual(Buffer.from(cb.subarray(0, 2)), Buffer.from([0x82, 0x04])); // (64<<3)|2 as varint
    });

    it('InternalRequest wrapping a TxnRequest round-trips', () => {
      const T = root.lookupType('quorumkvpb.InternalRequest');
      const obj = {
        id: '18446744073709551615',
        header: { username: 'root', auth_revision: '3' },
        txn: {
          compare: [{ key: Buffer.from('k'), target: 2, result: 0, mod_revision: '0' }],
          success: [{ request_put: { key: Buffer.from([0, 1]), value: Buffer.from('v') } }],
        },
      };
      const back = T.toObject(T.decode(T.encode(T.fromObject(obj)).finish()), {
        longs: String, bytes: Buffer, oneofs: true,
      });
      assert.equal(back.id, '18446744073709551615');
      assert.equal(back.request, 'txn');
      assert.equal(back.txn.compare[0].target_union, 'mod_revision');
      assert.deepEqual(back.txn.success[0].request_put.key, Buffer.from([0, 1]));
    });
  });
});

describe('proto: the service tables a member builds (src/proto serviceDefinitions) agree with @grpc/proto-loader', () => {
  const grpcObject = grpcDefinitions();
  const loaderService = (fullName: string): Record<string, Record<string, unknown>> => {
    let node: unknown = grpcObject;
    for (const part of fullName.split('.')) node = (node as Record<string, unknown>)[part];
    return (node as { service: Record<string, Record<string, unknown>> }).service;
  };
  /** A request of each type with some fields set (int64 as strings, bytes, a oneof, nested). */
  const samples: Record<string, object> = {
    'etcdserverpb.KV/Range': { key: Buffer.from('a'), range_end: Buffer.from([0]), limit: '10', revision: '-1', sort_order: 1 },
    'etcdserverpb.KV/Put': { key: Buffer.from([0, 255]), value: Buffer.from('v'), lease: '7587862245338389777', prev_kv: true },
    'etcdserverpb.KV/Txn': { compare: [{ result: 2, target: 1, key: Buffer.from('k'), mod_revision: '5' }], success: [{ request_put: { key: Buffer.from('k'), value: Buffer.from('x') } }], failure: [] },
    'etcdserverpb.Lease/LeaseGrant': { TTL: '60', ID: '18446744073709551615' },
  };

  it('every service has the same methods, paths, streaming flags and original names', () => {
    const mine = serviceDefinitions();
    for (const name of ['etcdserverpb.KV', 'etcdserverpb.Watch', 'etcdserverpb.Lease', 'etcdserverpb.Cluster', 'etcdserverpb.Maintenance', 'etcdserverpb.Auth', 'v3electionpb.Election', 'v3lockpb.Lock', 'grpc.health.v1.Health', 'quorumkvpb.PeerCluster']) {
      const theirs = loaderService(name);
      const ours: grpc.ServiceDefinition | undefined = mine.get(name);
      assert.ok(ours !== undefined, `no table for ${name}`);
      assert.deepEqual(Object.keys(ours).sort(), Object.keys(theirs).sort(), name);
      for (const [method, def] of Object.entries(theirs)) {
        const o: grpc.MethodDefinition<unknown, unknown> = ours[method]!;
        assert.deepEqual([o.path, o.requestStream, o.responseStream, o.originalName], [def.path, def.requestStream, def.responseStream, def.originalName], `${name}/${method}`);
      }
    }
  });

  it('requests and responses encode to the same bytes and decode to the same objects', () => {
    for (const [name, ours] of serviceDefinitions()) {
      const theirs = loaderService(name);
      for (const [method, def] of Object.entries(ours)) {
        const o = def as grpc.MethodDefinition<object, object>;
        const t = theirs[method] as unknown as grpc.MethodDefinition<object, object>;
        const req = samples[`${name}/${method}`] ?? {};
        const bytes = o.requestSerialize(req);
        assert.deepEqual(bytes, t.requestSerialize(req), `${name}/${method} request bytes`);
        assert.deepEqual(o.requestDeserialize(bytes), t.requestDeserialize(bytes), `${name}/${method} request decoded`);
        const resBytes = t.responseSerialize({});
        assert.deepEqual(o.responseSerialize({}), resBytes, `${name}/${method} response bytes`);
        assert.deepEqual(o.responseDeserialize(resBytes), t.responseDeserialize(resBytes), `${name}/${method} response decoded`);
      }
    }
  });
});
