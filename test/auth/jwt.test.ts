// JWT tokens (--auth-token jwt): etcd 3.4's claims, verification with the public key alone, expiry,
// forgeries, the algorithm-confusion attacks, and "revision of auth store is old" after an auth change.
import assert from 'node:assert/strict';
import { createHmac, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { AuthErrors, AuthStore, JwtTokens } from '../../src/auth';

function keys(kind: 'rsa' | 'ec'): { publicKey: KeyObject; privateKey: KeyObject } {
  return kind === 'rsa' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ec', { namedCurve: 'P-256' });
}

const b64url = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');

describe('auth: JWT tokens', () => {
  const rsa = keys('rsa');
  const ec = keys('ec');
  let nowMs = 1_800_000_000_000;
  const now = () => nowMs;

  it("signs etcd's claims (username, revision, exp) and verifies them with the public key alone", () => {
    for (const [signMethod, k] of [['RS256', rsa], ['PS384', rsa], ['ES256', ec]] as const) {
      const issuer = new JwtTokens({ signMethod, publicKey: k.publicKey, privateKey: k.privateKey, ttlMs: 300_000, now });
      const token = issuer.assign('ignored', 7, 'alice', 12);
      const [header, claims] = token.split('.').slice(0, 2).map((p) => JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>);
      assert.equal(header!.alg, signMethod);
      assert.deepEqual(claims, { username: 'alice', revision: 12, exp: nowMs / 1000 + 300 });
      const verifier = new JwtTokens({ signMethod, publicKey: k.publicKey, privateKey: undefined, ttlMs: 300_000, now });
      assert.equal(verifier.canIssue, false);
      assert.deepEqual(verifier.lookup(token), { username: 'alice', revision: 12 });
    }
  });

  it('refuses expired, forged, altered and algorithm-confused tokens', () => {
    const t = new JwtTokens({ signMethod: 'RS256', publicKey: rsa.publicKey, privateKey: rsa.privateKey, ttlMs: 60_000, now });
    const token = t.assign('', 1, 'alice', 3);
    nowMs += 61_000;
    assert.equal(t.lookup(token), undefined, 'expired');
    nowMs -= 61_000;
    const other = keys('rsa');
    const forger = new JwtTokens({ signMethod: 'RS256', publicKey: other.publicKey, privateKey: other.privateKey, ttlMs: 60_000, now });
    assert.equal(t.lookup(forger.assign('', 1, 'root', 3)), undefined, 'signed by another key');
    const [h, , sig] = token.split('.');
    assert.equal(t.lookup(`${h}.${b64url({ username: 'root', revision: 3, exp: nowMs / 1000 + 60 })}.${sig}`), undefined, 'altered claims');
    const none = `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url({ username: 'root', revision: 3, exp: nowMs / 1000 + 60 })}.`;
    assert.equal(t.lookup(none), undefined, 'alg none');
    // HS256 keyed with the public key's PEM: the classic RS/HS confusion.
    const pem = rsa.publicKey.export({ type: 'spki', format: 'pem' });
    const body = `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url({ username: 'root', revision: 3, exp: nowMs / 1000 + 60 })}`;
    assert.equal(t.lookup(`${body}.${createHmac('sha256', pem).update(body).digest('base64url')}`), undefined, 'HS256 with the public key');
    assert.equal(t.lookup('garbage'), undefined);
    assert.equal(t.lookup(`${h}.${b64url({ username: 7, revision: 3, exp: nowMs / 1000 + 60 })}.${sig}`), undefined);
  });

  it('a verified token is remembered only until its exp', () => {
    const t = new JwtTokens({ signMethod: 'ES256', publicKey: ec.publicKey, privateKey: ec.privateKey, ttlMs: 60_000, now });
    const token = t.assign('', 1, 'alice', 3);
    assert.deepEqual(t.lookup(token), { username: 'alice', revision: 3 });
    assert.deepEqual(t.lookup(token), { username: 'alice', revision: 3 });
    nowMs += 61_000;
    assert.equal(t.lookup(token), undefined, 'expired while remembered');
    nowMs -= 61_000;
  });

  it('a token issued before an auth change is old ("revision of auth store is old"); a new one works', () => {
    const tokens = new JwtTokens({ signMethod: 'ES256', publicKey: ec.publicKey, privateKey: ec.privateKey, ttlMs: 300_000, now });
    const auth = new AuthStore({ tokens });
    let index = 0;
    const apply = (body: Record<string, unknown>) => {
      const [kind, req] = Object.entries(body)[0]!;
      return auth.apply(kind, req as Record<string, unknown>, { username: 'root', auth_revision: auth.revision }, ++index);
    };
    apply({ user_add: { name: 'root', password: '', hashedPassword: 'h', options: null } });
    apply({ role_add: { name: 'root' } });
    apply({ user_grant_role: { user: 'root', role: 'root' } });
    apply({ user_add: { name: 'alice', password: '', hashedPassword: 'h', options: null } });
    apply({ auth_enable: {} });
    const r = apply({ authenticate: { name: 'alice', simple_token: 'x' } }) as { response: { token: string } };
    assert.deepEqual(auth.userOfToken(r.response.token), { username: 'alice', revision: auth.revision });
    apply({ role_add: { name: 'other' } });
    assert.equal(auth.userOfToken(r.response.token), AuthErrors.AuthOldRevision);
    const again = apply({ authenticate: { name: 'alice', simple_token: 'y' } }) as { response: { token: string } };
    assert.deepEqual(auth.userOfToken(again.response.token), { username: 'alice', revision: auth.revision });
  });
});
