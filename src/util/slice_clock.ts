// Time and yielding for work done in slices across event-loop turns (a large range, compaction):
// the event loop's in a member, a step counter in tests, so that a test sees the slicing without
// depending on the machine's speed.

export interface SliceClock {
  /** Milliseconds, monotonic. */
  now(): number;
  /** Resolves in a later event-loop turn (after pending I/O and timers had their turn). */
  yieldToLoop(): Promise<void>;
}

export const LOOP_CLOCK: SliceClock = {
  now: () => performance.now(),
  yieldToLoop: () => new Promise((resolve) => setImmediate(resolve)),
};
