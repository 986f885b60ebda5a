// Public surface of the auth layer: the replicated auth store (users, roles, permissions, enabled
// flag, revision), its permission checks, simple tokens and password hashing.
export { AuthStore, ROOT_USER, ROOT_ROLE, encodeUser, decodeUser, encodeRole, decodeRole } from './store';
export type { AuthUser, AuthRole, SavedAuth, AuthPersistence, AuthStoreOptions, RequestHeader, TxnLike } from './store';
export { AuthErrors, rawAuthError } from './errors';
export { PermType, covers, mergeIntervals, toInterval, unify } from './perms';
export type { Permission, Interval, UnifiedPerms } from './perms';
export { SimpleTokens, newTokenPrefix, TOKEN_TTL_MS_DEFAULT } from './tokens';
export type { TokenInfo, TokenProvider } from './tokens';
export { JwtTokens, type JwtOptions } from './jwt';
export { hashPassword, verifyPassword, isHashedPassword } from './password';

/** InternalRequest members handled by the auth store (proto/quorumkv/internal.proto 12..28). */
export const AUTH_ENTRY_KINDS: ReadonlySet<string> = new Set([
  'auth_enable',
  'auth_disable',
  'auth_status',
  'authenticate',
  'user_add',
  'user_delete',
  'user_change_password',
  'user_grant_role',
  'user_revoke_role',
  'role_add',
  'role_delete',
  'role_grant_permission',
  'role_revoke_permission',
  'user_get',
  'user_list',
  'role_get',
  'role_list',
]);
