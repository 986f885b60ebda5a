// A SliceClock for the sliced range/txn tests: each reading advances 1 ms, so a slice's budget is
// spent after a known number of readings; yields are counted and `onYield` runs at each.
import type { SliceClock } from '../../src/util/slice_clock';

export function stepClock(onYield: (n: number) => void = () => undefined): SliceClock & { yields: number } {
  let t = 0;
  const c = {
    yields: 0,
    now: () => t++,
    yieldToLoop: async () => {
      c.yields++;
      onYield(c.yields);
      await Promise.resolve();
    },
  };
  return c;
}
