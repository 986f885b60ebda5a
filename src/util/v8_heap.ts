// V8 heap sizing for a long-running member whose live heap is its whole key index.
import v8 from 'node:v8';
import { PerformanceObserver, constants as perfConstants } from 'node:perf_hooks';

/**
 * Old-generation headroom V8 may grow into before its next full GC. V8's own growing factor is
 * dynamic (up to 4x the live heap for small heaps, ~1.5-2x for large ones); a member's live heap is
 * its whole key index, so with 1M keys of 256 B that headroom was 150-230 MB of resident memory on
 * ~420 MB of live heap (780-870 MB RSS per member). Capping it at 20% brought the same member to
 * 630-645 MB at the same write rate. But a fixed 20% made full GCs frequent on small heaps (a
 * serializable range cost 112-122 us of member CPU instead of 64-66 us; still 70-75 us with a
 * 64 MB minimum headroom; docs/performance.md), so the cap applies only to a large heap, where
 * V8's headroom is hundreds of MB: V8's default up to HEAP_CAP_ABOVE_BYTES of live heap, the
 * cap above it. Since older values live in the spill file (mvcc/spill.ts), the same 1M keys are
 * ~185 MB of live heap, with 60-160 MB of V8's headroom above it: hence a threshold of 128 MB (it
 * was 256 MB) and a cap of 10% (it was 20%; with 8 MiB of hot values, 428-436 MB RSS per member
 * against 435-464 MB with 20% and 16 MiB, at the same load rate).
 *
 * The cap is a percentage of the live heap but never less than HEAP_HEADROOM_MIN_BYTES: under a
 * sustained write load every full GC marks the whole live heap, and the headroom is what the
 * writes may promote before the next one. 10% of a 130-250 MB index is 13-25 MB, a few seconds of
 * 4 KiB puts (each promotes its value and version records until the value is spilled), so a
 * follower ran a full mark-compact every ~1.2 s: 120 against 27 with this minimum over one
 * overwrite of 200k keys at 100-155 MB live, and 1.7x the CPU, at the same peak RSS
 * (docs/performance.md, "GC under a large overwrite"). The live heap is the old generation's size
 * read right after each full GC (not the heap in use at an arbitrary moment, which counts the
 * garbage too and made the cap flip on and off at ~100 MB of live heap).
 * An operator who passes --heap-growing-percent on node's command line keeps their own value.
 */
const HEAP_GROWING_PERCENT_LARGE = 10;
const HEAP_CAP_ABOVE_BYTES = 128 * 1024 * 1024;
const HEAP_HEADROOM_MIN_BYTES = 64 * 1024 * 1024;

/** The --heap-growing-percent for `liveBytes` of live old-generation heap (0 = V8's own factor). */
export function heapGrowingPercent(liveBytes: number): number {
  if (liveBytes <= HEAP_CAP_ABOVE_BYTES) return 0;
  return Math.max(HEAP_GROWING_PERCENT_LARGE, Math.ceil((HEAP_HEADROOM_MIN_BYTES * 100) / liveBytes));
}

/** Bytes in use in the old generation (every space but the young generation's). */
export function oldGenerationBytes(spaces: readonly v8.HeapSpaceInfo[]): number {
  let bytes = 0;
  for (const s of spaces) if (s.space_name !== 'new_space' && s.space_name !== 'new_large_object_space') bytes += s.space_used_size;
  return bytes;
}

/** Starts adjusting V8's heap growing factor to the live heap (see above); call once at start-up. */
export function configureHeap(): void {
  if (process.execArgv.some((a) => /^--heap[-_]growing[-_]percent/.test(a))) return;
  // V8 reads this flag whenever it recomputes its heap limits (after every full GC), so changing
  // it after one full GC takes effect at the next.
  let current = 0;
  const check = (): void => {
    const want = heapGrowingPercent(oldGenerationBytes(v8.getHeapSpaceStatistics()));
    if (want === current) return;
    current = want;
    v8.setFlagsFromString(`--heap-growing-percent=${want}`);
  };
  const obs = new PerformanceObserver((list) => {
    const major = list.getEntries().some((e) => (e as unknown as { detail?: { kind?: number } }).detail?.kind === perfConstants.NODE_PERFORMANCE_GC_MAJOR);
    if (major) check();
  });
  obs.observe({ entryTypes: ['gc'] });
}
