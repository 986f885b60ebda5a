// Automatic history compaction (etcd's --auto-compaction-mode / --auto-compaction-retention).
//
// Without it, every version of every key stays in the store until an operator runs `etcdctl
// compact`, and the backend grows until the quota's NOSPACE alarm stops writes: the most common
// complaint of etcd operators. Two policies, as etcd's:
//
//  - periodic (retention is a duration): the compactor samples the current revision every tenth of
//    the compaction interval (the retention, at most 1 h) and keeps the samples of one retention
//    window. Once a whole window has passed since the last successful compaction (for the first
//    one: since start), it compacts to the oldest sample, i.e. it keeps about `retention` of
//    history; from then on it compacts every interval. A failed attempt is retried at the next
//    sample.
//  - revision (retention is a number of revisions): every 5 minutes, it compacts to the current
//    revision minus the retention, unless that is what it compacted last time.
//
// Only the leader acts (a follower's compactor keeps sampling, so a new leader has a window of
// samples to choose from). Compaction goes through the log like a client's Compact, so every
// member compacts at the same index. A compaction that finds the revision already compacted (an
// operator compacted further meanwhile) counts as done.
import { EtcdError, Errors } from '../util/errors';
import type { CompactionPolicy } from '../config/flags';

export type { CompactionPolicy } from '../config/flags';

/** What the compactor drives: the store's revision, leadership, and a Compact through the log. */
export interface Compactable {
  currentRevision(): number;
  isLeader(): boolean;
  compact(revision: number): Promise<unknown>;
}

/** The compactor's clock (a fake one in tests). `after` returns a function that cancels. */
export interface CompactorClock {
  now(): number;
  after(ms: number, fn: () => void): () => void;
}

export const systemClock: CompactorClock = {
  now: () => Date.now(),
  after: (ms, fn) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return () => clearTimeout(t);
  },
};

const HOUR_MS = 3_600_000;
/** Revision mode checks this often (etcd: 5 minutes). */
export const REVISION_CHECK_INTERVAL_MS = 5 * 60_000;
/** Samples per compaction interval in periodic mode (etcd's retry divisor). */
const SAMPLES_PER_INTERVAL = 10;

export interface CompactorEvents {
  onCompacted?(revision: number): void;
  onFailed?(revision: number, err: unknown): void;
}

export class Compactor {
  private cancelTimer: (() => void) | undefined;
  private stopped = true;
  // periodic state
  private samples: number[] = [];
  private lastSuccessMs = 0;
  private waitMs = 0;
  // revision state
  private lastCompacted = 0;

  constructor(
    readonly policy: CompactionPolicy,
    private readonly target: Compactable,
    private readonly clock: CompactorClock = systemClock,
    private readonly events: CompactorEvents = {},
  ) {
    if (!(policy.retention > 0)) throw new RangeError('a compactor needs a retention > 0');
  }

  /** Compaction interval in periodic mode: the retention, at most an hour. */
  get intervalMs(): number {
    return Math.min(this.policy.retention, HOUR_MS);
  }

  /** Time between two ticks (samples in periodic mode, checks in revision mode). */
  get tickMs(): number {
    return this.policy.mode === 'periodic' ? this.intervalMs / SAMPLES_PER_INTERVAL : REVISION_CHECK_INTERVAL_MS;
  }

  /** Samples kept in periodic mode: one retention window's worth, the oldest is `retention` ago. */
  private get samplesKept(): number {
    return Math.floor(this.policy.retention / this.tickMs + 1e-9) + 1;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.lastSuccessMs = this.clock.now();
    this.waitMs = this.policy.retention; // the first compaction waits a whole retention window
    if (this.policy.mode === 'periodic') this.sample();
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    this.cancelTimer?.();
    this.cancelTimer = undefined;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.cancelTimer = this.clock.after(this.tickMs, () => {
      this.cancelTimer = undefined;
      void this.tick();
    });
  }

  private sample(): void {
    this.samples.push(this.target.currentRevision());
    if (this.samples.length > this.samplesKept) this.samples.shift();
  }

  /** One tick; resolves once the tick's compaction (if any) has finished and the next is due. */
  async tick(): Promise<void> {
    try {
      if (this.policy.mode === 'periodic') await this.periodicTick();
      else await this.revisionTick();
    } finally {
      if (this.policy.mode === 'periodic') this.sample();
      this.schedule();
    }
  }

  private async periodicTick(): Promise<void> {
    if (!this.target.isLeader()) return;
    if (this.clock.now() - this.lastSuccessMs < this.waitMs) return;
    this.waitMs = this.intervalMs;
    const rev = this.samples[0];
    if (rev === undefined || rev <= 0) return;
    if (await this.compact(rev)) this.lastSuccessMs = this.clock.now();
  }

  private async revisionTick(): Promise<void> {
    if (!this.target.isLeader()) return;
    const rev = this.target.currentRevision() - this.policy.retention;
    if (rev <= 0 || rev === this.lastCompacted) return;
    if (await this.compact(rev)) this.lastCompacted = rev;
  }

  /** true when the store is compacted at `rev` or beyond afterwards. */
  private async compact(rev: number): Promise<boolean> {
    try {
      await this.target.compact(rev);
      this.events.onCompacted?.(rev);
      return true;
    } catch (err) {
      if (err instanceof EtcdError && err.message === Errors.Compacted.message) return true;
      this.events.onFailed?.(rev, err);
      return false;
    }
  }
}
