// Exponential reconnect backoff with jitter: the first retry comes quickly (a restarted peer is back
// within a heartbeat or two), later ones spread out so that a down peer costs almost nothing and a
// cluster-wide restart does not make every member dial every other at the same instant.

import { assert } from '../util/assert';

export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  /** Defaults to Math.random; tests inject a fixed value. */
  random?: () => number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 50, maxMs: 2_000 };

export class Backoff {
  private attempt = 0;
  private readonly random: () => number;

  constructor(private readonly opts: BackoffOptions = DEFAULT_BACKOFF) {
    assert(opts.initialMs > 0 && opts.maxMs >= opts.initialMs, `backoff: bad bounds ${opts.initialMs}..${opts.maxMs}`);
    this.random = opts.random ?? Math.random;
  }

  /** Delay before the next attempt: in [d/2, d] where d = min(max, initial * 2^attempt) ("equal jitter"). */
  nextDelayMs(): number {
    const ceilingMs = Math.min(this.opts.maxMs, this.opts.initialMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return Math.round(ceilingMs / 2 + (this.random() * ceilingMs) / 2);
  }

  /** A connection succeeded: the next failure starts from the initial delay again. */
  reset(): void {
    this.attempt = 0;
  }

  get attempts(): number {
    return this.attempt;
  }
}
