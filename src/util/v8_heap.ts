// V8 heap sizing for a long-running member whose live heap is its whole key index.
import v8 from 'node:v8';

/**
 * Old-generation headroom V8 may grow into before its next full GC. V8's own growing factor is
 * dynamic (up to 4x the live heap for small heaps, ~1.5-2x for large ones); a member's live heap is
 * its whole key index, so with 1M keys of 256 B that headroom was 150-230 MB of resident memory on
 * ~420 MB of live heap (780-870 MB RSS per member). Capping it at 20% brought the same member to
 * 630-645 MB at the same write rate. But a fixed 20% made full GCs frequent on small heaps (a
 * serializable range cost 112-122 us of member CPU instead of 64-66 us; still 70-75 us with a
 * 64 MB minimum headroom; docs/performance.md), so the cap applies only to a large heap, where
 * V8's headroom is hundreds of MB: V8's default below HEAP_CAP_ABOVE_BYTES of heap in use, the
 * cap above it. Since older values live in the spill file (mvcc/spill.ts), the same 1M keys are
 * ~185 MB of live heap, with 60-160 MB of V8's headroom above it: hence a threshold of 128 MB (it
 * was 256 MB) and a cap of 10% (it was 20%; with 8 MiB of hot values, 428-436 MB RSS per member
 * against 435-464 MB with 20% and 16 MiB, at the same load rate).
 * An operator who passes --heap-growing-percent on node's command line keeps their own value.
 */
const HEAP_GROWING_PERCENT_LARGE = 10;
const HEAP_CAP_ABOVE_BYTES = 128 * 1024 * 1024;
const HEAP_CHECK_INTERVAL_MS = 5000;

/** The --heap-growing-percent for `usedBytes` of heap in use (0 = V8's own dynamic factor). */
export function heapGrowingPercent(usedBytes: number): number {
  return usedBytes > HEAP_CAP_ABOVE_BYTES ? HEAP_GROWING_PERCENT_LARGE : 0;
}

/** Starts adjusting V8's heap growing factor to the live heap (see above); call once at start-up. */
export function configureHeap(): void {
  if (process.execArgv.some((a) => /^--heap[-_]growing[-_]percent/.test(a))) return;
  // V8 reads this flag whenever it recomputes its heap limits (after every full GC), so changing
  // it while running takes effect at the next collection.
  let current = 0;
  const check = (): void => {
    const want = heapGrowingPercent(v8.getHeapStatistics().used_heap_size);
    if (want === current) return;
    current = want;
    v8.setFlagsFromString(`--heap-growing-percent=${want}`);
  };
  setInterval(check, HEAP_CHECK_INTERVAL_MS).unref();
}
