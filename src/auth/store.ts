// The auth store: users, roles and their key-range permissions, the enabled flag and the auth
// revision (etcd's auth/store.go). It is part of the replicated state machine: every change comes
// from a committed log entry (apply*), so all members hold the same users and roles, and every
// change is staged for the backend in the same batch as the entry's other effects.
//
// Invariants:
//   * `revision` grows by one on every change (etcd's commitRevision), except AuthEnable, which
//     etcd does not count, and never otherwise;
//   * auth can only be enabled while user "root" exists and holds role "root"; while enabled, root
//     can be neither deleted nor lose role root, and role root cannot be deleted;
//   * a user's roles are kept sorted and unique; a role's permissions are kept sorted by key.
import type protobuf from 'protobufjs';
import { CONVERSION, protoRoot } from '../proto';
import { assert } from '../util/assert';
import type { EtcdError } from '../util/errors';
import { AuthErrors as E } from './errors';
import { covers, PermType, unify, type Permission, type UnifiedPerms } from './perms';
import { SimpleTokens, type TokenInfo, type TokenProvider } from './tokens';

export const ROOT_USER = 'root';
export const ROOT_ROLE = 'root';

export interface AuthUser {
  name: string;
  /** scrypt hash (see password.ts); '' for no_password users. */
  passwordHash: string;
  /** Sorted, unique. */
  roles: string[];
  noPassword: boolean;
}

export interface AuthRole {
  name: string;
  /** Sorted by key (etcd's order). */
  perms: Permission[];
}

/** Durable copies of auth records, as the backend keeps them (authpb encodings). */
export interface SavedAuth {
  users: Buffer[];
  roles: Buffer[];
  enabled: boolean;
  revision: number;
}

/** Where the store stages its changes (the backend batch of the entry being applied). */
export interface AuthPersistence {
  user(name: string, record: Buffer | undefined): void;
  role(name: string, record: Buffer | undefined): void;
  state(enabled: boolean, revision: number): void;
}

/** Who proposed an entry (InternalRequest.header). */
export interface RequestHeader {
  username: string;
  auth_revision: number | string;
}

export interface AuthStoreOptions {
  /** Monotonic clock for token expiry (ms). */
  now?: () => number;
  tokenTtlMs?: number;
  /** How tokens are made and read (etcd's --auth-token); simple tokens by default. */
  tokens?: TokenProvider;
  persist?: AuthPersistence;
  /** The keys attached to a lease (for LeaseRevoke and Put-with-lease checks). */
  leaseKeys?: (lease: bigint) => readonly Buffer[];
}

type Result = { response: object } | { error: EtcdError };

// Request shapes as the codec decodes them (CONVERSION: keepCase, bytes as Buffers).
interface PutLike {
  key: Buffer;
  lease?: string | number;
  prev_kv?: boolean;
}
interface DeleteLike {
  key: Buffer;
  range_end?: Buffer;
  prev_kv?: boolean;
}
interface RangeLike {
  key: Buffer;
  range_end?: Buffer;
}
interface RequestOpLike {
  request?: string;
  request_range?: RangeLike | null;
  request_put?: PutLike | null;
  request_delete_range?: DeleteLike | null;
  request_txn?: TxnLike | null;
}
export interface TxnLike {
  compare?: RangeLike[];
  success?: RequestOpLike[];
  failure?: RequestOpLike[];
}

let userType: protobuf.Type | undefined;
let roleType: protobuf.Type | undefined;
function types(): { user: protobuf.Type; role: protobuf.Type } {
  userType ??= protoRoot().lookupType('authpb.User');
  roleType ??= protoRoot().lookupType('authpb.Role');
  return { user: userType, role: roleType };
}

export function encodeUser(u: AuthUser): Buffer {
  const t = types().user;
  const msg = t.fromObject({ name: Buffer.from(u.name), password: Buffer.from(u.passwordHash), roles: u.roles, options: { no_password: u.noPassword } });
  return Buffer.from(t.encode(msg).finish());
}

export function decodeUser(b: Buffer): AuthUser {
  const t = types().user;
  const o = t.toObject(t.decode(b), CONVERSION) as { name: Buffer; password: Buffer; roles: string[]; options: { no_password: boolean } | null };
  return { name: o.name.toString(), passwordHash: o.password.toString(), roles: [...o.roles].sort(), noPassword: !!o.options?.no_password };
}

export function encodeRole(r: AuthRole): Buffer {
  const t = types().role;
  return Buffer.from(t.encode(t.fromObject({ name: Buffer.from(r.name), keyPermission: r.perms })).finish());
}

export function decodeRole(b: Buffer): AuthRole {
  const t = types().role;
  const o = t.toObject(t.decode(b), CONVERSION) as { name: Buffer; keyPermission: Permission[] };
  return { name: o.name.toString(), perms: o.keyPermission.map((p) => ({ permType: p.permType, key: Buffer.from(p.key), range_end: Buffer.from(p.range_end) })) };
}

function toBigInt(v: string | number | undefined): bigint {
  if (v === undefined || v === '' ) return 0n;
  return BigInt(v);
}

function sortedInsert(list: string[], s: string): boolean {
  let i = 0;
  while (i < list.length && list[i]! < s) i++;
  if (list[i] === s) return false;
  list.splice(i, 0, s);
  return true;
}

export class AuthStore {
  private enabledValue = false;
  private revisionValue = 0;
  private readonly users = new Map<string, AuthUser>();
  private readonly roles = new Map<string, AuthRole>();
  /** Merged grants per user, valid for `cacheRevision`. */
  private readonly permCache = new Map<string, UnifiedPerms>();
  private cacheRevision = -1;
  readonly tokens: TokenProvider;

  constructor(private readonly opts: AuthStoreOptions = {}) {
    this.tokens = opts.tokens ?? new SimpleTokens(opts.now ?? (() => performance.now()), opts.tokenTtlMs);
  }

  /** The one check every request pays when auth is off. */
  get enabled(): boolean {
    return this.enabledValue;
  }

  get revision(): number {
    return this.revisionValue;
  }

  // ---- state restore -----------------------------------------------------------------------

  /** Replaces the whole state with the backend's (start-up or an installed snapshot). */
  restore(saved: SavedAuth | undefined): void {
    this.users.clear();
    this.roles.clear();
    this.permCache.clear();
    this.tokens.clear();
    this.enabledValue = saved?.enabled ?? false;
    this.revisionValue = saved?.revision ?? 0;
    for (const b of saved?.users ?? []) {
      const u = decodeUser(b);
      this.users.set(u.name, u);
    }
    for (const b of saved?.roles ?? []) {
      const r = decodeRole(b);
      this.roles.set(r.name, r);
    }
  }

  // ---- reads -------------------------------------------------------------------------------

  user(name: string): AuthUser | undefined {
    return this.users.get(name);
  }

  role(name: string): AuthRole | undefined {
    return this.roles.get(name);
  }

  userNames(): string[] {
    return [...this.users.keys()].sort();
  }

  roleNames(): string[] {
    return [...this.roles.keys()].sort();
  }

  hasRole(username: string, role: string): boolean {
    return this.users.get(username)?.roles.includes(role) ?? false;
  }

  /** The user a token belongs to, or InvalidAuthToken; a self-contained token (JWT) issued
   *  before the latest auth change is old, as etcd's isOpPermitted says. */
  userOfToken(token: string): TokenInfo | EtcdError {
    const info = this.tokens.lookup(token);
    if (info === undefined) return E.InvalidAuthToken;
    if (info.revision !== undefined && info.revision < this.revisionValue) return E.AuthOldRevision;
    return info;
  }

  // ---- permission checks (etcd's IsAdminPermitted / isOpPermitted) ---------------------------

  /** Root-only operations. Passes when auth is disabled. */
  checkAdmin(username: string): EtcdError | undefined {
    if (!this.enabledValue) return undefined;
    if (username === '') return E.UserEmpty;
    const u = this.users.get(username);
    if (!u) return E.UserNotFound;
    return u.roles.includes(ROOT_ROLE) ? undefined : E.PermissionDenied;
  }

  checkRange(username: string, key: Buffer, rangeEnd: Buffer | undefined | null, type: PermType = PermType.READ): EtcdError | undefined {
    if (!this.enabledValue) return undefined;
    if (username === '') return E.UserEmpty;
    const u = this.users.get(username);
    if (!u) return E.PermissionDenied;
    if (u.roles.includes(ROOT_ROLE)) return undefined;
    const perms = this.permsOf(u);
    return covers(type === PermType.READ ? perms.read : perms.write, key, rangeEnd) ? undefined : E.PermissionDenied;
  }

  checkPut(username: string, put: PutLike): EtcdError | undefined {
    const denied = this.checkRange(username, put.key, undefined, PermType.WRITE);
    if (denied) return denied;
    // A lease already attached to a key this user cannot write could not be revoked by them, so
    // attaching it to more keys is refused too (etcd's checkLeasePuts).
    const lease = toBigInt(put.lease);
    if (lease !== 0n) {
      const leaseDenied = this.checkLeaseRevoke(username, lease);
      if (leaseDenied) return leaseDenied;
    }
    return put.prev_kv ? this.checkRange(username, put.key, undefined) : undefined;
  }

  checkDelete(username: string, del: DeleteLike): EtcdError | undefined {
    const denied = this.checkRange(username, del.key, del.range_end, PermType.WRITE);
    if (denied) return denied;
    return del.prev_kv ? this.checkRange(username, del.key, del.range_end) : undefined;
  }

  /** Compares and range ops need READ, puts and deletes WRITE, nested txns recursively. */
  checkTxn(username: string, txn: TxnLike): EtcdError | undefined {
    for (const c of txn.compare ?? []) {
      const denied = this.checkRange(username, c.key, c.range_end);
      if (denied) return denied;
    }
    for (const ops of [txn.success ?? [], txn.failure ?? []]) {
      for (const op of ops) {
        const denied = this.checkOp(username, op);
        if (denied) return denied;
      }
    }
    return undefined;
  }

  private checkOp(username: string, op: RequestOpLike): EtcdError | undefined {
    if (op.request_range) return this.checkRange(username, op.request_range.key, op.request_range.range_end);
    if (op.request_put) {
      // As etcd's checkTxnReqsPermission, a put inside a txn is not checked against the other
      // keys of its lease (etcd's Lock and Election services attach to a session lease inside a
      // txn); its prev_kv still needs READ here, which etcd 3.4 does not check (docs/security.md).
      const put = op.request_put;
      return this.checkRange(username, put.key, undefined, PermType.WRITE) ?? (put.prev_kv ? this.checkRange(username, put.key, undefined) : undefined);
    }
    if (op.request_delete_range) return this.checkDelete(username, op.request_delete_range);
    if (op.request_txn) return this.checkTxn(username, op.request_txn);
    return undefined;
  }

  /** Revoking a lease deletes its keys: the user must be allowed to write every one of them. */
  checkLeaseRevoke(username: string, lease: bigint): EtcdError | undefined {
    if (!this.enabledValue) return undefined;
    // As etcd's checkLeasePuts: WRITE on each attached key, nothing else. A lease without keys
    // (or no such lease: "requested lease not found" comes from the lessor) needs no user.
    const u = this.users.get(username);
    if (u?.roles.includes(ROOT_ROLE)) return undefined;
    for (const key of this.opts.leaseKeys?.(lease) ?? []) {
      const denied = this.checkRange(username, key, undefined, PermType.WRITE);
      if (denied) return denied;
    }
    return undefined;
  }

  /** LeaseTimeToLive with keys (CVE-2023-32082, fixed in etcd 3.4.26 / 3.5.9): the keys are
   *  listed only to a user who may READ every one of them, else PermissionDenied; no user at all
   *  is "user name is empty". An unknown lease passes (the call then answers as for any). */
  checkLeaseTimeToLive(username: string, lease: bigint): EtcdError | undefined {
    if (!this.enabledValue) return undefined;
    if (username === '') return E.UserEmpty;
    for (const key of this.opts.leaseKeys?.(lease) ?? []) {
      const denied = this.checkRange(username, key, undefined);
      if (denied) return denied;
    }
    return undefined;
  }

  /** The apply-time check of a client entry (the authoritative one: the state it runs against is
   *  the same on every member). Entries without a header come from the server itself (lease
   *  expiry) and are not checked. If the auth revision moved since the proposer checked, etcd
   *  fails the request with "revision of auth store is old" and Go clients retry; we re-check
   *  against the current state instead, which gives the answer that retry would get. */
  checkEntry(kind: string | undefined, body: unknown, header: RequestHeader | null | undefined): EtcdError | undefined {
    if (!this.enabledValue || !header) return undefined;
    const user = header.username;
    switch (kind) {
      case 'put':
        return this.checkPut(user, body as PutLike);
      case 'delete_range':
        return this.checkDelete(user, body as DeleteLike);
      case 'txn':
        return this.checkTxn(user, body as TxnLike);
      case 'range':
        return this.checkRange(user, (body as RangeLike).key, (body as RangeLike).range_end);
      case 'lease_revoke':
        return this.checkLeaseRevoke(user, toBigInt((body as { ID: string }).ID));
      default:
        return undefined;
    }
  }

  private permsOf(u: AuthUser): UnifiedPerms {
    if (this.cacheRevision !== this.revisionValue) {
      this.permCache.clear();
      this.cacheRevision = this.revisionValue;
    }
    let p = this.permCache.get(u.name);
    if (!p) {
      const all: Permission[] = [];
      for (const r of u.roles) all.push(...(this.roles.get(r)?.perms ?? []));
      p = unify(all);
      this.permCache.set(u.name, p);
    }
    return p;
  }

  // ---- applied changes (deterministic: same entries, same state and results everywhere) --------

  /** Applies one auth entry of kind `kind` proposed by `header` at log index `index`. */
  apply(kind: string, body: Record<string, unknown>, header: RequestHeader | null | undefined, index: number): Result {
    const user = header?.username ?? '';
    if (kind === 'authenticate') return this.authenticate(body as { name: string; simple_token: string }, index);
    if (kind === 'user_get') {
      const denied = this.checkAdmin(user);
      if (denied && body.name !== user) return { error: denied };
      return this.userGet(String(body.name));
    }
    if (kind === 'role_get') {
      const denied = this.checkAdmin(user);
      if (denied && !this.hasRole(user, String(body.role))) return { error: denied };
      return this.roleGet(String(body.role));
    }
    const denied = this.checkAdmin(user);
    if (denied) return { error: denied };
    switch (kind) {
      case 'auth_enable':
        return this.authEnable();
      case 'auth_disable':
        return this.authDisable();
      case 'auth_status':
        return { response: { enabled: this.enabledValue, authRevision: this.revisionValue } };
      case 'user_add':
        return this.userAdd(body as { name: string; hashedPassword: string; options: { no_password: boolean } | null });
      case 'user_delete':
        return this.userDelete(String(body.name));
      case 'user_change_password':
        return this.userChangePassword(String(body.name), typeof body.hashedPassword === 'string' ? body.hashedPassword : '');
      case 'user_grant_role':
        return this.userGrantRole(String(body.user), String(body.role));
      case 'user_revoke_role':
        return this.userRevokeRole(String(body.name), String(body.role));
      case 'user_list':
        return { response: { users: this.userNames() } };
      case 'role_add':
        return this.roleAdd(String(body.name));
      case 'role_delete':
        return this.roleDelete(String(body.role));
      case 'role_grant_permission':
        return this.roleGrantPermission(String(body.name), body.perm as Permission | null);
      case 'role_revoke_permission':
        return this.roleRevokePermission(String(body.role), body.key as Buffer, body.range_end as Buffer);
      case 'role_list':
        return { response: { roles: this.roleNames() } };
      default:
        assert(false, `auth: apply of unknown entry kind ${kind}`);
    }
  }

  userGet(name: string): Result {
    const u = this.users.get(name);
    return u ? { response: { roles: [...u.roles] } } : { error: E.UserNotFound };
  }

  roleGet(name: string): Result {
    const r = this.roles.get(name);
    return r ? { response: { perm: r.perms.map((p) => ({ ...p })) } } : { error: E.RoleNotFound };
  }

  private commit(): void {
    this.revisionValue++;
    this.opts.persist?.state(this.enabledValue, this.revisionValue);
  }

  private saveUser(u: AuthUser): void {
    this.opts.persist?.user(u.name, encodeUser(u));
  }

  private saveRole(r: AuthRole): void {
    this.opts.persist?.role(r.name, encodeRole(r));
  }

  private authenticate(req: { name: string; simple_token: string }, index: number): Result {
    if (!this.enabledValue) return { error: E.AuthNotEnabled };
    const u = this.users.get(req.name);
    if (!u || u.noPassword) return { error: E.AuthFailed };
    // The proposer verified the password; the entry only carries the outcome.
    const token = this.tokens.assign(req.simple_token, index, u.name, this.revisionValue);
    return { response: { token } };
  }

  private authEnable(): Result {
    if (this.enabledValue) return { response: {} };
    const root = this.users.get(ROOT_USER);
    if (!root) return { error: E.RootUserNotExist };
    if (!root.roles.includes(ROOT_ROLE)) return { error: E.RootRoleNotExist };
    this.enabledValue = true;
    this.tokens.clear();
    this.opts.persist?.state(true, this.revisionValue);
    return { response: {} };
  }

  private authDisable(): Result {
    if (!this.enabledValue) return { response: {} };
    this.enabledValue = false;
    this.tokens.clear();
    this.commit();
    return { response: {} };
  }

  private userAdd(req: { name: string; hashedPassword: string; options: { no_password: boolean } | null }): Result {
    if (req.name === '') return { error: E.UserEmpty };
    if (this.users.has(req.name)) return { error: E.UserAlreadyExist };
    const noPassword = !!req.options?.no_password;
    const u: AuthUser = { name: req.name, passwordHash: noPassword ? '' : req.hashedPassword, roles: [], noPassword };
    this.users.set(u.name, u);
    this.saveUser(u);
    this.commit();
    return { response: {} };
  }

  private userDelete(name: string): Result {
    if (this.enabledValue && name === ROOT_USER) return { error: E.InvalidAuthMgmt };
    if (!this.users.has(name)) return { error: E.UserNotFound };
    this.users.delete(name);
    this.opts.persist?.user(name, undefined);
    this.tokens.invalidateUser(name);
    this.commit();
    return { response: {} };
  }

  private userChangePassword(name: string, hash: string): Result {
    const u = this.users.get(name);
    if (!u) return { error: E.UserNotFound };
    u.passwordHash = hash;
    // As etcd 3.4: the user's options (no_password) are kept as they were.
    this.saveUser(u);
    this.tokens.invalidateUser(name);
    this.commit();
    return { response: {} };
  }

  private userGrantRole(name: string, role: string): Result {
    const u = this.users.get(name);
    if (!u) return { error: E.UserNotFound };
    // As etcd: role "root" may be granted before the role itself exists.
    if (role !== ROOT_ROLE && !this.roles.has(role)) return { error: E.RoleNotFound };
    if (!sortedInsert(u.roles, role)) return { response: {} }; // already granted: ignored, no revision
    this.saveUser(u);
    this.commit();
    return { response: {} };
  }

  private userRevokeRole(name: string, role: string): Result {
    if (this.enabledValue && name === ROOT_USER && role === ROOT_ROLE) return { error: E.InvalidAuthMgmt };
    const u = this.users.get(name);
    if (!u) return { error: E.UserNotFound };
    const i = u.roles.indexOf(role);
    if (i < 0) return { error: E.RoleNotGranted };
    u.roles.splice(i, 1);
    this.saveUser(u);
    this.commit();
    return { response: {} };
  }

  private roleAdd(name: string): Result {
    if (name === '') return { error: E.RoleEmpty };
    if (this.roles.has(name)) return { error: E.RoleAlreadyExist };
    const r: AuthRole = { name, perms: [] };
    this.roles.set(name, r);
    this.saveRole(r);
    this.commit();
    return { response: {} };
  }

  private roleDelete(name: string): Result {
    if (this.enabledValue && name === ROOT_ROLE) return { error: E.InvalidAuthMgmt };
    if (!this.roles.has(name)) return { error: E.RoleNotFound };
    this.roles.delete(name);
    this.opts.persist?.role(name, undefined);
    // The role disappears from every user that had it.
    for (const u of this.users.values()) {
      const i = u.roles.indexOf(name);
      if (i >= 0) {
        u.roles.splice(i, 1);
        this.saveUser(u);
      }
    }
    this.commit();
    return { response: {} };
  }

  private roleGrantPermission(name: string, perm: Permission | null): Result {
    if (!perm) return { error: E.PermissionNotGiven };
    const r = this.roles.get(name);
    if (!r) return { error: E.RoleNotFound };
    const key = Buffer.from(perm.key ?? []);
    const rangeEnd = Buffer.from(perm.range_end ?? []);
    const same = r.perms.find((p) => p.key.equals(key) && p.range_end.equals(rangeEnd));
    if (same) same.permType = perm.permType;
    else {
      r.perms.push({ permType: perm.permType, key, range_end: rangeEnd });
      r.perms.sort((a, b) => Buffer.compare(a.key, b.key)); // stable: equal keys keep grant order
    }
    this.saveRole(r);
    this.commit();
    return { response: {} };
  }

  private roleRevokePermission(name: string, key: Buffer, rangeEnd: Buffer): Result {
    const r = this.roles.get(name);
    if (!r) return { error: E.RoleNotFound };
    const k = Buffer.from(key ?? []);
    const e = Buffer.from(rangeEnd ?? []);
    const kept = r.perms.filter((p) => !(p.key.equals(k) && p.range_end.equals(e)));
    if (kept.length === r.perms.length) return { error: E.PermissionNotGranted };
    r.perms = kept;
    this.saveRole(r);
    this.commit();
    return { response: {} };
  }
}
