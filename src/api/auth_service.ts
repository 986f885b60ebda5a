// etcdserverpb.Auth (etcd's v3rpc/auth.go + etcdserver/v3_server.go), and the request gate every
// other service calls: who is the caller (the `token` metadata), and may they do this.
//
// Where checks happen (see docs/security.md):
//   * reads (Range, read-only Txn, Watch create, auth reads) are checked here, on the serving
//     member, against its auth state once the read is linearizable;
//   * writes are checked here before proposing (fail fast, no log entry for a denied request) and
//     again when the entry is applied (src/auth/store.ts checkEntry) with the user named in the
//     entry's header: that check is the authoritative one, identical on every member;
//   * auth changes require root, checked before proposing and again at apply.
// With auth disabled every gate is one boolean test.
//
// Passwords: verified (Authenticate) and hashed (UserAdd, UserChangePassword) on this member,
// before anything is proposed; the log only ever carries the hash or the resulting token.
import { EtcdError, GrpcCode } from '../util/errors';
import type { Server } from '../server/server';
import type { ApplyResult } from '../server/applier';
import type { InternalRequestBody, InternalRequestHeader } from '../server/codec';
import { AuthErrors, hashPassword, isHashedPassword, newTokenPrefix, rawAuthError, verifyPassword, type AuthStore, type TxnLike } from '../auth';
import type { ResponseHeader } from '../proto/types';
import { replyError } from './errors';
import type { CallBase, UnaryCall, UnaryHandler } from './call';
import { certCommonNameOf } from '../tls';

/** The header of a request when auth is disabled (shared: no allocation per request). */
const NO_CALLER: InternalRequestHeader = Object.freeze({ username: '', auth_revision: 0 });
/** Authenticate retries when the auth store changed while the password was being checked. */
const AUTHENTICATE_ATTEMPTS_MAX = 3;
const WATCH_ALL_KEYS = Buffer.from([0]);

/** Every Auth response: the header, and the fields the auth store's apply gave (src/auth/store.ts). */
interface AuthResponse {
  header: ResponseHeader;
}

/** The token a client sent: `token` (gRPC clients) or `authorization` (etcd's JSON gateway). The
 *  gate reads metadata only when auth is on: building it has a cost the transports pay lazily. */
function tokenOf(call: CallBase): string | undefined {
  return call.metadata('token') ?? call.metadata('authorization');
}

/** The caller as the log entry's header: user "" without a token (etcd then answers "user name
 *  is empty" to anything that needs a user), or InvalidAuthToken for unknown/expired tokens.
 *  Without a token, the CN of a verified client certificate names the user (etcd's
 *  AuthInfoFromTLS; only with --client-cert-auth: src/tls/identity.ts sets it). As in etcd the user
 *  need not exist: the permission check then denies. */
export function callerOf(server: Server, call: CallBase): InternalRequestHeader | EtcdError {
  const auth = server.auth;
  const token = tokenOf(call);
  // AuthDisable drops every token, as etcd's does: one sent afterwards is invalid, and the
  // client (etcdctl, clientv3, etcd3) then authenticates again and learns auth is off.
  if (!auth.enabled) return token === undefined ? NO_CALLER : AuthErrors.InvalidAuthToken;
  if (token === undefined) return { username: certCommonNameOf(call) ?? '', auth_revision: auth.revision };
  const info = auth.userOfToken(token);
  if (info instanceof EtcdError) return info;
  return { username: info.username, auth_revision: info.revision ?? auth.revision };
}

export type AuthCheck<Req> = (auth: AuthStore, username: string, req: Req) => EtcdError | undefined;

/** The per-request checks the services use (one per handler). */
export const checks = {
  range: ((a, u, r) => a.checkRange(u, r.key, r.range_end)) as AuthCheck<{ key: Buffer; range_end?: Buffer }>,
  put: ((a, u, r) => a.checkPut(u, r)) as AuthCheck<{ key: Buffer; lease?: string | number; prev_kv?: boolean }>,
  deleteRange: ((a, u, r) => a.checkDelete(u, r)) as AuthCheck<{ key: Buffer; range_end?: Buffer; prev_kv?: boolean }>,
  txn: ((a, u, r) => a.checkTxn(u, r)) as AuthCheck<TxnLike>,
  leaseRevoke: ((a, u, r) => a.checkLeaseRevoke(u, BigInt(r.ID || 0))) as AuthCheck<{ ID: string | number }>,
  leaseTimeToLive: ((a, u, r) => (r.keys ? a.checkLeaseTimeToLive(u, BigInt(r.ID || 0)) : undefined)) as AuthCheck<{ ID: string | number; keys: boolean }>,
  admin: ((a, u) => a.checkAdmin(u)) as AuthCheck<unknown>,
  /** Only a valid token (if one is sent) is required: etcd 3.4 checks nothing else for these. */
  none: (() => undefined) as AuthCheck<unknown>,
};

/** The gate: the caller's header for the log entry, or the error to answer with. */
export function authorize<Req>(server: Server, call: CallBase, check: AuthCheck<Req>, req: Req): InternalRequestHeader | EtcdError {
  const who = callerOf(server, call);
  if (who instanceof EtcdError || !server.auth.enabled) return who;
  return check(server.auth, who.username, req) ?? who;
}

/** Maintenance's Alarm: etcd 3.4 puts every Alarm request (GET too) through Raft, which refuses
 *  a bad token with the auth package's raw error; no user or role is needed. */
export function authorizeAlarm(server: Server, call: CallBase): EtcdError | undefined {
  const r = callerOf(server, call);
  return r instanceof EtcdError ? rawAuthError(r) : undefined;
}

/** Maintenance's admin RPCs (Defragment, Snapshot, Hash, HashKV): etcd 3.4 answers them with the
 *  auth package's raw error (code Unknown, "auth: permission denied"). */
export function authorizeMaintenance(server: Server, call: CallBase): EtcdError | undefined {
  const r = authorize(server, call, checks.admin, undefined);
  return r instanceof EtcdError ? rawAuthError(r) : undefined;
}

/** etcd's isWatchPermitted: READ on the watched range (an empty key means "\0"). */
export function watchPermitted(server: Server, call: CallBase, key: Buffer, rangeEnd: Buffer | undefined): boolean {
  const r = authorize(server, call, checks.range, { key: key.length === 0 ? WATCH_ALL_KEYS : key, range_end: rangeEnd });
  return !(r instanceof EtcdError);
}

/** The cancel reason of a denied watch create, as etcd's (the gRPC status's string form). */
export const WATCH_PERMISSION_DENIED_REASON = `rpc error: code = PermissionDenied desc = ${AuthErrors.PermissionDenied.message}`;

/** UserAdd and UserChangePassword requests. */
interface UserPasswordRequest {
  name: string;
  password: string;
  hashedPassword?: string;
  options?: { no_password: boolean } | null;
}

function bad(message: string): EtcdError {
  return new EtcdError(GrpcCode.INVALID_ARGUMENT, message);
}

/** A request that names a user or role (the auth store validates the rest at apply). */
type AuthRequest = Record<string, unknown>;

export interface AuthServiceOptions {
  /** bcrypt cost of the hashes made for UserAdd / UserChangePassword (--bcrypt-cost). */
  bcryptCost: number;
}

export function authService(server: Server, o: AuthServiceOptions) {
  const auth = server.auth;
  const answer = (call: UnaryCall<unknown, AuthResponse>, p: Promise<ApplyResult>) =>
    p.then(
      (r) => call.respond({ header: server.header(r.revision), ...r.response }),
      (err) => replyError(call, err),
    );

  /** A root-only change: checked here, proposed, checked again at apply. */
  const change =
    <Req>(body: (req: Req) => InternalRequestBody): UnaryHandler<Req, AuthResponse> =>
    (call) => {
      const h = authorize(server, call, checks.admin, undefined);
      if (h instanceof EtcdError) return replyError(call, h);
      void answer(call, server.propose(body(call.request), h));
    };

  /** A read of the auth store: served locally once linearizable, with the apply path's rules. */
  const read =
    (kind: 'user_get' | 'user_list' | 'role_get' | 'role_list' | 'auth_status'): UnaryHandler<AuthRequest, AuthResponse> =>
    (call) => {
      const who = callerOf(server, call);
      if (who instanceof EtcdError) return replyError(call, who);
      server.linearizableRead().then(() => {
        const r = auth.apply(kind, call.request, who, 0);
        if ('error' in r) return replyError(call, r.error);
        call.respond({ header: server.header(), ...r.response });
      }, (err) => replyError(call, err));
    };

  /** UserAdd / UserChangePassword: the hash is made here; the clear text never leaves. */
  const withHash =
    (kind: 'user_add' | 'user_change_password'): UnaryHandler<UserPasswordRequest, AuthResponse> =>
    (call) => {
      const req = call.request;
      const h = authorize(server, call, checks.admin, undefined);
      if (h instanceof EtcdError) return replyError(call, h);
      if (kind === 'user_add' && req.name === '') return replyError(call, AuthErrors.UserEmpty);
      const noPassword = kind === 'user_add' && !!req.options?.no_password;
      const given = req.hashedPassword ?? '';
      if (!noPassword && req.password === '' && given !== '' && !isHashedPassword(given)) {
        return replyError(call, bad('quorumkv: hashedPassword must be a bcrypt hash; send the password instead'));
      }
      const hashing = noPassword ? Promise.resolve('') : req.password === '' && given !== '' ? Promise.resolve(given) : hashPassword(req.password, o.bcryptCost);
      hashing.then((hashedPassword) => {
        const body =
          kind === 'user_add'
            ? { user_add: { name: req.name, password: '', hashedPassword, options: { no_password: noPassword } } }
            : { user_change_password: { name: req.name, password: '', hashedPassword } };
        void answer(call, server.propose(body, h));
      }, (err) => replyError(call, err));
    };

  const Authenticate: UnaryHandler<{ name: string; password: string }, AuthResponse> = (call) => {
    const { name, password } = call.request;
    if (!auth.tokens.canIssue) return replyError(call, AuthErrors.VerifyOnly);
    const attempt = async (): Promise<AuthResponse> => {
      for (let i = 0; ; i++) {
        // As etcd: the store is read after a linearizable read, so an AuthEnable acknowledged
        // by another member is seen here (a follower may not have applied it yet).
        await server.linearizableRead();
        const checkedRevision = auth.revision;
        const user = auth.user(name);
        if (!auth.enabled) throw AuthErrors.AuthNotEnabled;
        if (!user) throw AuthErrors.AuthFailed;
        if (user.noPassword) throw AuthErrors.NoPasswordUser;
        if (!(await verifyPassword(password, user.passwordHash))) throw AuthErrors.AuthFailed;
        // As etcd, whose token is issued through Raft: a bad token sent along is refused there,
        // after the password check.
        const caller = callerOf(server, call);
        if (caller instanceof EtcdError) throw caller;
        // Only the outcome is logged: the user name and the random part of the token.
        const r = await server.propose({ authenticate: { name, simple_token: newTokenPrefix() } });
        // As etcd: if the auth store changed while we checked, check again (the password or the
        // user may be gone); the token already issued simply expires unused.
        if (auth.revision === checkedRevision || i + 1 >= AUTHENTICATE_ATTEMPTS_MAX) return { header: server.header(r.revision), ...r.response };
      }
    };
    attempt().then((res) => call.respond(res), (err) => replyError(call, err));
  };

  return {
    Authenticate,
    AuthEnable: change(() => ({ auth_enable: {} })),
    AuthDisable: change(() => ({ auth_disable: {} })),
    AuthStatus: read('auth_status'),
    UserAdd: withHash('user_add'),
    UserChangePassword: withHash('user_change_password'),
    UserGet: read('user_get'),
    UserList: read('user_list'),
    UserDelete: change((r: { name: string }) => ({ user_delete: { name: r.name } })),
    UserGrantRole: change((r: { user: string; role: string }) => ({ user_grant_role: { user: r.user, role: r.role } })),
    UserRevokeRole: change((r: { name: string; role: string }) => ({ user_revoke_role: { name: r.name, role: r.role } })),
    RoleAdd: change((r: { name: string }) => ({ role_add: { name: r.name } })),
    RoleGet: read('role_get'),
    RoleList: read('role_list'),
    RoleDelete: change((r: { role: string }) => ({ role_delete: { role: r.role } })),
    RoleGrantPermission: change((r: { name: string; perm: { permType: number; key: Buffer; range_end: Buffer } | null }) => ({
      role_grant_permission: { name: r.name, perm: r.perm },
    })),
    RoleRevokePermission: change((r: { role: string; key: Buffer; range_end: Buffer }) => ({
      role_revoke_permission: { role: r.role, key: r.key, range_end: r.range_end },
    })),
  };
}
