// etcd's auth errors (api/v3rpc/rpctypes/error.go): code and message byte for byte, because Go
// clients (and the etcd3 npm client) map errors back to typed values by their message.
import { EtcdError, Errors, GrpcCode } from '../util/errors';

const C = GrpcCode;
function def(code: GrpcCode, message: string): EtcdError {
  return new EtcdError(code, message);
}

export const AuthErrors = {
  RootUserNotExist: def(C.FAILED_PRECONDITION, 'etcdserver: root user does not exist'),
  RootRoleNotExist: def(C.FAILED_PRECONDITION, 'etcdserver: root user does not have root role'),
  UserAlreadyExist: def(C.FAILED_PRECONDITION, 'etcdserver: user name already exists'),
  UserEmpty: def(C.INVALID_ARGUMENT, 'etcdserver: user name is empty'),
  UserNotFound: def(C.FAILED_PRECONDITION, 'etcdserver: user name not found'),
  RoleAlreadyExist: def(C.FAILED_PRECONDITION, 'etcdserver: role name already exists'),
  RoleNotFound: def(C.FAILED_PRECONDITION, 'etcdserver: role name not found'),
  RoleEmpty: def(C.INVALID_ARGUMENT, 'etcdserver: role name is empty'),
  AuthFailed: def(C.INVALID_ARGUMENT, 'etcdserver: authentication failed, invalid user ID or password'),
  PermissionNotGiven: def(C.INVALID_ARGUMENT, 'etcdserver: permission not given'),
  PermissionDenied: Errors.PermissionDenied,
  RoleNotGranted: def(C.FAILED_PRECONDITION, 'etcdserver: role is not granted to the user'),
  PermissionNotGranted: def(C.FAILED_PRECONDITION, 'etcdserver: permission is not granted to the role'),
  AuthNotEnabled: Errors.AuthNotEnabled,
  InvalidAuthToken: Errors.InvalidAuthToken,
  InvalidAuthMgmt: def(C.INVALID_ARGUMENT, 'etcdserver: invalid auth management'),
  AuthOldRevision: def(C.INVALID_ARGUMENT, 'etcdserver: revision of auth store is old'),
  // etcd 3.4 has no gRPC mapping for this one: clients see the auth package's raw error (code
  // Unknown, "auth: ..."), exactly as here.
  NoPasswordUser: def(C.UNKNOWN, 'auth: authentication failed, password was given for no password user'),
  /** Authenticate on a member started with a JWT public key only (etcd's ErrVerifyOnly, raw). */
  VerifyOnly: def(C.UNKNOWN, 'auth: token signing attempted with verify-only key'),
} as const;

/** etcd 3.4's Maintenance admin checks (Defragment, Snapshot, Hash, HashKV) return the auth
 *  package's error unconverted: gRPC code Unknown and "auth: <reason>". */
export function rawAuthError(err: EtcdError): EtcdError {
  return new EtcdError(C.UNKNOWN, err.message.replace(/^etcdserver: /, 'auth: '));
}
