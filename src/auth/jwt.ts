// etcd's JWT tokens (--auth-token jwt,...): self-contained, signed tokens that every member
// verifies with the public key alone, so no member needs to have seen the Authenticate entry (a
// restarted member, or one that joined later, accepts them). Claims as etcd 3.4 writes them:
// {"username", "revision" (the auth revision at issue), "exp"}. A token issued before the latest
// auth change is answered "revision of auth store is old" (store.ts), and clients authenticate again.
import type { KeyObject } from 'node:crypto';
import type { Algorithm } from 'jsonwebtoken';
import { lazyModule } from '../util/lazy_module';
import type { TokenInfo, TokenProvider } from './tokens';

/** jsonwebtoken and its ~70 modules load with the first token signed or checked, not at every
 *  member's start (most run without --auth-token=jwt). */
// eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded on first use (util/lazy_module.ts)
const jwt = lazyModule(() => require('jsonwebtoken') as typeof import('jsonwebtoken'));

export interface JwtOptions {
  /** One of the methods --auth-token accepts (config/flags.ts: RS*, PS*, ES*). */
  signMethod: Algorithm;
  /** Verifies tokens (every member needs it). */
  publicKey: KeyObject;
  /** Signs tokens; a member without it verifies only (etcd's verify-only mode) and cannot issue. */
  privateKey: KeyObject | undefined;
  ttlMs: number;
  /** Wall clock in ms (tests); exp is in seconds since the epoch, as JWT says. */
  now?: () => number;
}

/** Verified tokens remembered, so that a client's every request does not cost a signature
 *  check (an ES256 verification is ~0.1 ms); the oldest go first beyond this. */
const VERIFIED_MAX = 4096;

export class JwtTokens implements TokenProvider {
  /** token → what it stands for and its exp (s); insertion order = age. */
  private readonly verified = new Map<string, TokenInfo & { expS: number }>();

  constructor(private readonly o: JwtOptions) {}

  get canIssue(): boolean {
    return this.o.privateKey !== undefined;
  }

  assign(_prefix: string, _index: number, username: string, revision: number): string {
    // Every member applies the entry; only the proposer's token is answered, and a verify-only
    // member never proposes one (the Authenticate handler refuses first), so none is made here.
    if (!this.o.privateKey) return '';
    const nowS = Math.floor((this.o.now?.() ?? Date.now()) / 1000);
    return jwt().sign({ username, revision, exp: nowS + Math.ceil(this.o.ttlMs / 1000) }, this.o.privateKey, {
      algorithm: this.o.signMethod,
      noTimestamp: true,
    });
  }

  lookup(token: string): TokenInfo | undefined {
    const nowS = Math.floor((this.o.now?.() ?? Date.now()) / 1000);
    const known = this.verified.get(token);
    if (known !== undefined) {
      if (known.expS > nowS) return { username: known.username, revision: known.revision };
      this.verified.delete(token);
      return undefined;
    }
    let claims: unknown;
    try {
      claims = jwt().verify(token, this.o.publicKey, { algorithms: [this.o.signMethod], clockTimestamp: nowS });
    } catch {
      return undefined; // forged, expired, malformed or another method: an invalid token, as etcd
    }
    if (typeof claims !== 'object' || claims === null) return undefined;
    const { username, revision, exp } = claims as { username?: unknown; revision?: unknown; exp?: unknown };
    if (typeof username !== 'string' || typeof revision !== 'number' || !Number.isSafeInteger(revision) || revision < 0) return undefined;
    // Remembered until its exp (jsonwebtoken checked it); one without exp is verified each time.
    if (typeof exp === 'number') {
      if (this.verified.size >= VERIFIED_MAX) this.verified.delete(this.verified.keys().next().value!);
      this.verified.set(token, { username, revision, expS: exp });
    }
    return { username, revision };
  }

  /** Self-contained tokens cannot be revoked one by one: the auth revision a password change or
   *  deletion bumps makes every older token old (etcd's jwt provider does the same). */
  invalidateUser(): void {}

  clear(): void {}
}
