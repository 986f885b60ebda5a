// The auth store as a replicated state machine (through the real Applier and log-entry codec):
// etcd's rules and errors for users, roles, enable/disable and root; the auth revision; tokens;
// deterministic replay; persistence round trip; apply-time permission checks.
import assert from 'node:assert/strict';
import { randomBytes, scryptSync } from 'node:crypto';
import { MvccStore } from '../../src/mvcc';
import { Applier } from '../../src/server/applier';
import { encodeRequest, type InternalRequestBody, type InternalRequestHeader } from '../../src/server/codec';
import { NO_LEASES } from '../../src/server/kv_ops';
import { AuthErrors, AuthStore, hashPassword, isHashedPassword, verifyPassword, type SavedAuth } from '../../src/auth';

const B = (s: string) => Buffer.from(s);
const ROOT: InternalRequestHeader = { username: 'root', auth_revision: 0 };
const ANON: InternalRequestHeader = { username: '', auth_revision: 0 };

class Member {
  readonly store = new MvccStore();
  saved: SavedAuth = { users: [], roles: [], enabled: false, revision: 0 };
  private users = new Map<string, Buffer>();
  private roles = new Map<string, Buffer>();
  clockMs = 0;
  readonly auth = new AuthStore({
    now: () => this.clockMs,
    tokenTtlMs: 1000,
    persist: {
      user: (n, r) => (r ? this.users.set(n, r) : this.users.delete(n)),
      role: (n, r) => (r ? this.roles.set(n, r) : this.roles.delete(n)),
      state: (enabled, revision) => Object.assign(this.saved, { enabled, revision }),
    },
  });
  readonly applier = new Applier(this.store, NO_LEASES, undefined, undefined, undefined, undefined, this.auth);
  private index = 0;
  apply(body: InternalRequestBody, header: InternalRequestHeader | null = ROOT) {
    this.index++;
    return this.applier.apply(this.index, encodeRequest({ id: String(this.index), ...(header ? { header } : {}), ...body }));
  }
  snapshot(): SavedAuth {
    return { ...this.saved, users: [...this.users.values()], roles: [...this.roles.values()] };
  }
}

const perm = (permType: number, key: string, end = '') => ({ permType, key: B(key), range_end: B(end) });

function setupRootAndAlice(m: Member) {
  m.apply({ user_add: { name: 'root', password: '', hashedPassword: 'h-root', options: null } });
  m.apply({ user_add: { name: 'alice', password: '', hashedPassword: 'h-alice', options: null } });
  m.apply({ role_add: { name: 'reader' } });
  m.apply({ role_grant_permission: { name: 'reader', perm: perm(2, '/app/', '/app0') } });
  m.apply({ user_grant_role: { user: 'alice', role: 'reader' } });
  m.apply({ user_grant_role: { user: 'root', role: 'root' } });
}

describe('auth store (applied through the log)', () => {
  it('auth enable needs root with role root, with etcd errors; enable does not bump the revision', () => {
    const m = new Member();
    assert.equal(m.apply({ auth_enable: {} }).error, AuthErrors.RootUserNotExist);
    m.apply({ user_add: { name: 'root', password: '', hashedPassword: 'h', options: null } });
    assert.equal(m.apply({ auth_enable: {} }).error, AuthErrors.RootRoleNotExist);
    // As etcd: role "root" can be granted before it exists.
    assert.equal(m.apply({ user_grant_role: { user: 'root', role: 'root' } }).error, undefined);
    const rev = m.auth.revision;
    assert.equal(m.apply({ auth_enable: {} }).error, undefined);
    assert.equal(m.auth.enabled, true);
    assert.equal(m.auth.revision, rev);
  });

  it('user and role errors as etcd', () => {
    const m = new Member();
    setupRootAndAlice(m);
    const err = (b: InternalRequestBody) => m.apply(b).error;
    assert.equal(err({ user_add: { name: '', password: '', hashedPassword: 'h', options: null } }), AuthErrors.UserEmpty);
    assert.equal(err({ user_add: { name: 'alice', password: '', hashedPassword: 'h', options: null } }), AuthErrors.UserAlreadyExist);
    assert.equal(err({ role_add: { name: '' } }), AuthErrors.RoleEmpty);
    assert.equal(err({ role_add: { name: 'reader' } }), AuthErrors.RoleAlreadyExist);
    assert.equal(err({ user_grant_role: { user: 'bob', role: 'reader' } }), AuthErrors.UserNotFound);
    assert.equal(err({ user_grant_role: { user: 'alice', role: 'nope' } }), AuthErrors.RoleNotFound);
    assert.equal(err({ user_revoke_role: { name: 'alice', role: 'root' } }), AuthErrors.RoleNotGranted);
    assert.equal(err({ role_grant_permission: { name: 'reader', perm: null } }), AuthErrors.PermissionNotGiven);
    assert.equal(err({ role_revoke_permission: { role: 'reader', key: B('x'), range_end: B('') } }), AuthErrors.PermissionNotGranted);
    assert.equal(err({ user_delete: { name: 'bob' } }), AuthErrors.UserNotFound);
    assert.equal(err({ role_delete: { role: 'nope' } }), AuthErrors.RoleNotFound);
  });

  it('while enabled: root protected, admin-only changes, "user name is empty" without a user', () => {
    const m = new Member();
    setupRootAndAlice(m);
    m.apply({ auth_enable: {} });
    assert.equal(m.apply({ user_delete: { name: 'root' } }).error, AuthErrors.InvalidAuthMgmt);
    assert.equal(m.apply({ user_revoke_role: { name: 'root', role: 'root' } }).error, AuthErrors.InvalidAuthMgmt);
    assert.equal(m.apply({ role_delete: { role: 'root' } }).error, AuthErrors.InvalidAuthMgmt);
    assert.equal(m.apply({ role_add: { name: 'x' } }, { username: 'alice', auth_revision: 0 }).error, AuthErrors.PermissionDenied);
    assert.equal(m.apply({ role_add: { name: 'x' } }, ANON).error, AuthErrors.UserEmpty);
    assert.equal(m.apply({ role_add: { name: 'x' } }, null).error, AuthErrors.UserEmpty);
    assert.equal(m.apply({ role_add: { name: 'x' } }, { username: 'ghost', auth_revision: 0 }).error, AuthErrors.UserNotFound);
    // Reads: oneself and one's own roles are allowed.
    assert.deepEqual(m.apply({ user_get: { name: 'alice' } }, { username: 'alice', auth_revision: 0 }).response, { roles: ['reader'] });
    assert.equal(m.apply({ user_get: { name: 'root' } }, { username: 'alice', auth_revision: 0 }).error, AuthErrors.PermissionDenied);
    assert.ok(m.apply({ role_get: { role: 'reader' } }, { username: 'alice', auth_revision: 0 }).response);
    // Disable: root only; then everything is allowed again and root may go.
    assert.equal(m.apply({ auth_disable: {} }, ANON).error, AuthErrors.UserEmpty);
    assert.equal(m.apply({ auth_disable: {} }).error, undefined);
    assert.equal(m.apply({ user_delete: { name: 'root' } }, ANON).error, undefined);
  });

  it('every change bumps the auth revision by one; no-ops and failures do not', () => {
    const m = new Member();
    const revs: number[] = [];
    setupRootAndAlice(m);
    revs.push(m.auth.revision);
    assert.equal(revs[0], 6);
    m.apply({ user_grant_role: { user: 'alice', role: 'reader' } }); // already granted: ignored
    m.apply({ role_add: { name: 'reader' } }); // fails
    assert.equal(m.auth.revision, 6);
    m.apply({ role_grant_permission: { name: 'reader', perm: perm(0, '/app/', '/app0') } }); // type update
    assert.equal(m.auth.revision, 7);
    assert.deepEqual(m.apply({ role_get: { role: 'reader' } }).response, { perm: [perm(0, '/app/', '/app0')] });
  });

  it('permissions are kept sorted by key; same (key, range_end) updates the type', () => {
    const m = new Member();
    m.apply({ role_add: { name: 'r' } });
    for (const [t, k, e] of [[0, 'm', ''], [1, 'a', 'z'], [2, '\0', '\0'], [0, 'b', 'c'], [2, 'm', '']] as const) {
      m.apply({ role_grant_permission: { name: 'r', perm: perm(t, k, e) } });
    }
    const r = m.apply({ role_get: { role: 'r' } }).response as { perm: { permType: number; key: Buffer }[] };
    assert.deepEqual(r.perm.map((p) => [p.permType, p.key.toString()]), [[2, '\0'], [1, 'a'], [0, 'b'], [2, 'm']]);
  });

  it('role delete removes the role from its users', () => {
    const m = new Member();
    setupRootAndAlice(m);
    m.apply({ role_delete: { role: 'reader' } });
    assert.deepEqual(m.apply({ user_get: { name: 'alice' } }).response, { roles: [] });
  });

  it('apply-time checks: denied writes fail with PermissionDenied and change nothing; server entries pass', () => {
    const m = new Member();
    setupRootAndAlice(m);
    m.apply({ auth_enable: {} });
    const alice: InternalRequestHeader = { username: 'alice', auth_revision: m.auth.revision };
    const put = (k: string) => ({ put: { key: B(k), value: B('v'), lease: '0', prev_kv: false, ignore_value: false, ignore_lease: false } });
    assert.equal(m.apply(put('/app/a'), alice).error, undefined);
    const rev = m.store.currentRevision;
    assert.equal(m.apply(put('/other'), alice).error, AuthErrors.PermissionDenied);
    assert.equal(m.apply(put('/other'), ANON).error, AuthErrors.UserEmpty);
    assert.equal(m.store.currentRevision, rev);
    assert.equal(m.apply(put('/other'), null).error, undefined, 'no header: a server-originated entry');
    // Auth changed after the proposal: re-checked against the current state (grant revoked).
    m.apply({ user_revoke_role: { name: 'alice', role: 'reader' } });
    assert.equal(m.apply(put('/app/b'), alice).error, AuthErrors.PermissionDenied);
    // Txn: a nested write outside the grant is refused.
    m.apply({ user_grant_role: { user: 'alice', role: 'reader' } });
    const nested = { txn: { compare: [], success: [{ request_txn: { compare: [], success: [{ request_put: put('/x').put }], failure: [] } }], failure: [] } };
    assert.equal(m.apply(nested as unknown as InternalRequestBody, alice).error, AuthErrors.PermissionDenied);
  });

  it('lease checks as etcd 3.4: revoke needs WRITE on attached keys only; a txn put is not checked against its lease', () => {
    const attached = new Map<bigint, Buffer[]>([[7n, [B('/etc/k')]], [8n, []]]);
    const auth = new AuthStore({ now: () => 0, tokenTtlMs: 1000, leaseKeys: (l) => attached.get(l) ?? [] });
    const m = { apply: (body: InternalRequestBody) => auth.apply(Object.keys(body)[0] as never, Object.values(body)[0], ROOT, 0) };
    m.apply({ user_add: { name: 'root', password: '', hashedPassword: 'h-root', options: null } });
    m.apply({ user_grant_role: { user: 'root', role: 'root' } });
    m.apply({ user_add: { name: 'alice', password: '', hashedPassword: 'h-alice', options: null } });
    m.apply({ role_add: { name: 'app' } });
    m.apply({ role_grant_permission: { name: 'app', perm: perm(2, '/app/', '/app0') } });
    m.apply({ user_grant_role: { user: 'alice', role: 'app' } });
    m.apply({ auth_enable: {} });
    // No keys attached (or no such lease: the lessor answers "lease not found"): no user needed.
    assert.equal(auth.checkLeaseRevoke('', 8n), undefined);
    assert.equal(auth.checkLeaseRevoke('', 9n), undefined);
    assert.equal(auth.checkLeaseRevoke('', 7n), AuthErrors.UserEmpty);
    assert.equal(auth.checkLeaseRevoke('alice', 7n), AuthErrors.PermissionDenied);
    assert.equal(auth.checkLeaseRevoke('root', 7n), undefined);
    const put = { key: B('/app/x'), lease: '7', prev_kv: false };
    assert.equal(auth.checkPut('alice', put), AuthErrors.PermissionDenied, 'a plain Put is checked against the lease (checkLeasePuts)');
    assert.equal(auth.checkTxn('alice', { success: [{ request_put: put }] }), undefined, 'a txn put is not (etcd\'s checkTxnReqsPermission)');
    assert.equal(auth.checkTxn('alice', { success: [{ request_put: { ...put, key: B('/etc/x') } }] }), AuthErrors.PermissionDenied);
    assert.equal(auth.checkTxn('alice', { success: [{ request_put: { ...put, key: B('/etc/x'), lease: '0' } }], failure: [] }), AuthErrors.PermissionDenied);
  });

  it('tokens: registered at apply on every member, expire after the TTL unless used, die with the user', () => {
    const a = new Member();
    const b = new Member();
    for (const m of [a, b]) {
      setupRootAndAlice(m);
      m.apply({ auth_enable: {} });
    }
    const ra = a.apply({ authenticate: { name: 'alice', simple_token: 'abcdefghijklmnop' } });
    const rb = b.apply({ authenticate: { name: 'alice', simple_token: 'abcdefghijklmnop' } });
    const token = (ra.response as { token: string }).token;
    assert.equal(token, `abcdefghijklmnop.${8}`);
    assert.deepEqual(ra.response, rb.response);
    assert.deepEqual(b.auth.userOfToken(token), { username: 'alice', revision: undefined });
    b.clockMs += 900;
    assert.deepEqual(b.auth.userOfToken(token), { username: 'alice', revision: undefined }, 'use renews');
    b.clockMs += 900;
    assert.deepEqual(b.auth.userOfToken(token), { username: 'alice', revision: undefined });
    b.clockMs += 1001;
    assert.equal(b.auth.userOfToken(token), AuthErrors.InvalidAuthToken);
    a.apply({ user_change_password: { name: 'alice', password: '', hashedPassword: 'h2' } });
    assert.equal(a.auth.userOfToken(token), AuthErrors.InvalidAuthToken);
    assert.equal(a.apply({ authenticate: { name: 'nobody', simple_token: 'x' } }).error, AuthErrors.AuthFailed);
    a.apply({ auth_disable: {} });
    assert.equal(a.apply({ authenticate: { name: 'alice', simple_token: 'x' } }).error, AuthErrors.AuthNotEnabled);
  });

  it('the backend records restore the same state (restart / snapshot)', () => {
    const m = new Member();
    setupRootAndAlice(m);
    m.apply({ user_add: { name: 'cn', password: '', hashedPassword: '', options: { no_password: true } } });
    m.apply({ auth_enable: {} });
    const restored = new AuthStore();
    restored.restore(m.snapshot());
    assert.equal(restored.enabled, true);
    assert.equal(restored.revision, m.auth.revision);
    assert.deepEqual(restored.userNames(), ['alice', 'cn', 'root']);
    assert.equal(restored.user('cn')!.noPassword, true);
    assert.equal(restored.user('alice')!.passwordHash, 'h-alice');
    assert.deepEqual(restored.role('reader'), m.auth.role('reader'));
    assert.equal(restored.checkRange('alice', B('/app/x'), undefined), undefined);
    assert.equal(restored.checkRange('alice', B('/x'), undefined), AuthErrors.PermissionDenied);
  });

  it('password hashes: salted (two hashes of one password differ), verified, wrong ones refused', async () => {
    const h1 = await hashPassword('s3cret');
    const h2 = await hashPassword('s3cret');
    assert.notEqual(h1, h2);
    assert.ok(!h1.includes('s3cret'));
    assert.equal(await verifyPassword('s3cret', h1), true);
    assert.equal(await verifyPassword('s3cret!', h1), false);
    assert.equal(await verifyPassword('s3cret', 'garbage'), false);
  });

  it('new hashes are bcrypt at the given cost, as etcd (a user survives a snapshot moved to etcd)', async () => {
    const h = await hashPassword('s3cret', 5);
    assert.match(h, /^\$2b\$05\$/);
    assert.ok(isHashedPassword(h));
    assert.equal(await verifyPassword('s3cret', h), true);
    await assert.rejects(hashPassword('x', 3), RangeError);
    await assert.rejects(hashPassword('x', 32), RangeError);
  });

  it('verifies the bcrypt hashes etcd writes ($2a$, Go x/crypto/bcrypt) and the scrypt hashes of earlier quorumkv versions', async () => {
    // "pw" hashed by etcd 3.4.23 (user add root:pw; read back from its snapshot's authUsers bucket).
    const etcdHash = '$2a$10$Yy9HyG.gUCfg7sAaSwZtpeaMbVzp/7eUg.RyLsBtqrewmE.alWSdq';
    assert.ok(isHashedPassword(etcdHash));
    assert.equal(await verifyPassword('pw', etcdHash), true);
    assert.equal(await verifyPassword('pw2', etcdHash), false);
    const salt = randomBytes(16);
    const key = scryptSync('old', salt, 32, { N: 1 << 14, r: 8, p: 1 });
    const old = `scrypt$16384$8$1$${salt.toString('base64')}$${key.toString('base64')}`;
    assert.ok(isHashedPassword(old));
    assert.equal(await verifyPassword('old', old), true);
    assert.equal(await verifyPassword('new', old), false);
    // A stored hash cannot make verification allocate without bound.
    assert.equal(await verifyPassword('old', old.replace('scrypt$16384$', 'scrypt$1073741824$')), false);
  });
});
