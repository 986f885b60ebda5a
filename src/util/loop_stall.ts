// A member whose event loop is blocked sends no heartbeat, reads no peer message and answers no
// client: past the election timeout that is an election. etcd warns when its leader sends a
// heartbeat late ("leader failed to send out heartbeat on time"); here every member watches its own
// loop the same way: a timer that fires every CHECK_MS notices when it fired late, and a block of
// warnMs or more is logged with how much of it V8's garbage collector took (its pauses are
// reported by a `gc` performance observer, after the block, so the line is written a moment
// later). That split is what says where to look: a block made of GC pauses is the heap's size and
// allocation rate, one without is synchronous work on the loop.
import { PerformanceObserver, constants as perfConstants, performance } from 'node:perf_hooks';

/** How often the watch looks at the clock. */
const CHECK_MS = 20;
/** GC pauses remembered (scavenges come every few ms under load; a block is at most seconds). */
const GC_ENTRIES_MAX = 256;
/** At most one line per this interval; the ones not written are counted in the next. */
const WARN_INTERVAL_MS = 1000;

export interface LoopStallLog {
  warn(msg: string, fields?: Record<string, unknown>): void;
}

interface GcPause {
  startMs: number;
  durationMs: number;
  major: boolean;
}

export interface LoopStallWatch {
  /** The longest block seen since start (ms). */
  readonly longestMs: number;
  stop(): void;
}

/** Watches the calling thread's event loop; blocks of `warnMs` or more are logged. */
export function watchLoopStalls(log: LoopStallLog, warnMs: number): LoopStallWatch {
  const pauses: GcPause[] = [];
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind;
      pauses.push({ startMs: e.startTime, durationMs: e.duration, major: kind === perfConstants.NODE_PERFORMANCE_GC_MAJOR });
    }
    if (pauses.length > GC_ENTRIES_MAX) pauses.splice(0, pauses.length - GC_ENTRIES_MAX);
  });
  obs.observe({ entryTypes: ['gc'] });
  let last = performance.now();
  let longestMs = 0;
  let lastWarnMs = -Infinity;
  let suppressed = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    const blockedMs = now - last - CHECK_MS;
    const from = last;
    last = now;
    if (blockedMs > longestMs) longestMs = blockedMs;
    if (blockedMs < warnMs) return;
    if (now - lastWarnMs < WARN_INTERVAL_MS) {
      suppressed++;
      return;
    }
    lastWarnMs = now;
    // The observer hears of the block's GC pauses after it: attribute them a little later.
    setTimeout(() => {
      let gcMs = 0;
      let majors = 0;
      for (const p of pauses) {
        if (p.startMs + p.durationMs < from || p.startMs > now) continue;
        gcMs += p.durationMs;
        if (p.major) majors++;
      }
      log.warn('event loop blocked: no heartbeat, peer message or request was handled meanwhile', {
        'blocked-ms': Math.round(blockedMs),
        'gc-pause-ms': Math.round(gcMs),
        'major-gcs': majors,
        'warn-ms': warnMs,
        'not-logged-since-last': suppressed,
      });
      suppressed = 0;
    }, CHECK_MS).unref();
  }, CHECK_MS);
  timer.unref();
  return {
    get longestMs() {
      return longestMs;
    },
    stop() {
      clearInterval(timer);
      obs.disconnect();
    },
  };
}
