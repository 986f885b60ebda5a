// etcd's "simple" tokens (auth/simple_token.go): "<16 random letters>.<log index>". The proposing
// member picks the random part; the token is registered when the Authenticate entry is applied, so
// every member knows it. Tokens live in memory only (as etcd's): a restarted member forgets them
// and clients authenticate again (both etcd clients do so on "invalid auth token").
//
// Expiry uses each member's own clock: a token unused for TOKEN_TTL_MS is dropped; every use
// renews it (etcd's simpleTokenTTLDefault, 300 s, reset on use).
import { randomInt } from 'node:crypto';

export const TOKEN_TTL_MS_DEFAULT = 300_000;
const TOKEN_PREFIX_CHARS = 16;
const LETTERS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
/** Sweep expired tokens at most this often (they are also dropped lazily on lookup). */
const SWEEP_INTERVAL_MS = 10_000;

/** The random part of a new token (etcd's GenTokenPrefix). */
export function newTokenPrefix(): string {
  let s = '';
  for (let i = 0; i < TOKEN_PREFIX_CHARS; i++) s += LETTERS[randomInt(LETTERS.length)];
  return s;
}

/** What a token stands for: its user, and for self-contained tokens (JWT) the auth revision it was
 *  issued at (simple tokens: undefined, they die with every change that would make them stale). */
export interface TokenInfo {
  username: string;
  revision: number | undefined;
}

/** etcd's TokenProvider: how tokens are made when an Authenticate entry applies, and read back. */
export interface TokenProvider {
  /** False on a verify-only member (JWT without a private key): Authenticate is refused there. */
  readonly canIssue: boolean;
  /** The token for `username`, from the proposer's random `prefix`, the entry's `index` and the
   *  auth revision `revision` at apply time. */
  assign(prefix: string, index: number, username: string, revision: number): string;
  /** The token's user (a live simple token is renewed), or undefined: unknown, expired, forged. */
  lookup(token: string): TokenInfo | undefined;
  /** A password change or deletion: the user's tokens stop working. */
  invalidateUser(username: string): void;
  /** Auth enable/disable and restores: every token stops working. */
  clear(): void;
}

interface TokenEntry {
  username: string;
  expiresAtMs: number;
}

export class SimpleTokens implements TokenProvider {
  readonly canIssue = true;
  private readonly tokens = new Map<string, TokenEntry>();
  private lastSweepMs = 0;

  constructor(
    private readonly now: () => number,
    readonly ttlMs: number = TOKEN_TTL_MS_DEFAULT,
  ) {}

  assign(prefix: string, index: number, username: string): string {
    const token = `${prefix}.${index}`;
    const now = this.now();
    this.sweep(now);
    this.tokens.set(token, { username, expiresAtMs: now + this.ttlMs });
    return token;
  }

  lookup(token: string): TokenInfo | undefined {
    const username = this.userOf(token);
    return username === undefined ? undefined : { username, revision: undefined };
  }

  private userOf(token: string): string | undefined {
    const e = this.tokens.get(token);
    if (!e) return undefined;
    const now = this.now();
    if (e.expiresAtMs <= now) {
      this.tokens.delete(token);
      return undefined;
    }
    e.expiresAtMs = now + this.ttlMs;
    return e.username;
  }

  invalidateUser(username: string): void {
    for (const [t, e] of this.tokens) if (e.username === username) this.tokens.delete(t);
  }

  clear(): void {
    this.tokens.clear();
  }

  get size(): number {
    return this.tokens.size;
  }

  private sweep(now: number): void {
    if (now - this.lastSweepMs < SWEEP_INTERVAL_MS) return;
    this.lastSweepMs = now;
    for (const [t, e] of this.tokens) if (e.expiresAtMs <= now) this.tokens.delete(t);
  }
}
