// The in-memory half of compaction, off the apply path: applying a compaction entry only moves the
// store's compaction point (MvccStore.scheduleCompaction: reads below it fail from that entry on,
// on every member alike); this runner then frees the versions it made unreachable in steps of
// COMPACT_KEYS_PER_STEP keys, COMPACT_SLICE_MS_MAX per event-loop turn. One synchronous pass over
// a million keys took 3.2 s on this machine: heartbeats stop for that long, an election follows.
// Reads, hashes and snapshots look at the logical compaction point only, so they do not depend on
// how far the runner is. etcd's Compact with physical=true waits for idle() (server.ts).
import type { MvccStore } from '../mvcc';
import { assert } from '../util/assert';
import { LOOP_CLOCK, type SliceClock } from '../util/slice_clock';

/** Keys per step: a few ms at most (~3 µs a key was measured on a loaded machine, the lengths of
 *  spilled values read back included). */
export const COMPACT_KEYS_PER_STEP = 1000;
/** Time spent compacting before yielding to the event loop. */
export const COMPACT_SLICE_MS_MAX = 10;

export class CompactionRunner {
  private scheduled = false;
  private stopped = false;
  private waiters: (() => void)[] = [];
  /** Holds taken (hold()) and not yet released: no steps run while there is one. */
  private holds = 0;

  constructor(
    private readonly store: () => MvccStore,
    private readonly clock: SliceClock = LOOP_CLOCK,
    private readonly sliceMs = COMPACT_SLICE_MS_MAX,
    private readonly keysPerStep = COMPACT_KEYS_PER_STEP,
  ) {}

  /** Frees what the compactions applied so far made unreachable, in the turns to come. */
  kick(): void {
    if (this.scheduled || this.holds > 0) return;
    if (this.stopped || !this.store().compactionPending) {
      for (const w of this.waiters.splice(0)) w();
      return;
    }
    this.scheduled = true;
    void this.clock.yieldToLoop().then(() => {
      this.scheduled = false;
      const store = this.store();
      const start = this.clock.now();
      while (!this.stopped && this.holds === 0 && store.compactionPending && this.clock.now() - start < this.sliceMs) store.compactStep(this.keysPerStep);
      this.kick();
    });
  }

  /** Holds compaction steps back until the returned release is called (a sliced hash: steps
   *  free versions it covers). The compaction point itself still moves as compactions apply;
   *  only the freeing waits. Release exactly once. */
  hold(): () => void {
    this.holds++;
    let released = false;
    return () => {
      assert(!released, 'compaction hold released twice');
      released = true;
      this.holds--;
      this.kick();
    };
  }

  /** Resolves once no in-memory compaction work is left (or the runner stopped). */
  idle(): Promise<void> {
    return new Promise((resolve) => {
      this.waiters.push(resolve);
      this.kick();
    });
  }

  /** No more steps (the member stops); idle() resolves. */
  stop(): void {
    this.stopped = true;
    for (const w of this.waiters.splice(0)) w();
  }
}
