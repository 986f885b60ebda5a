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

interface TokenEntry {
  username: string;
  expiresAtMs: number;
}

export class SimpleTokens {
  private readonly tokens = new Map<string, TokenEntry>();
  private lastSweepMs = 0;

  constructor(
    private readonly now: () => number,
    readonly ttlMs: number = TOKEN_TTL_MS_DEFAULT,
  ) {}

  assign(token: string, username: string): void {
    const now = this.now();
    this.sweep(now);
    this.tokens.set(token, { username, expiresAtMs: now + this.ttlMs });
  }

  /** The user a live token belongs to (and renews it), or undefined. */
  lookup(token: string): string | undefined {
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
