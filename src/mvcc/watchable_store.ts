// The watchable store: etcd's watchableStore (server/storage/mvcc/watchable_store.go) on top of the
// in-memory MvccStore. Watchers live in one of two groups:
//
//   synced   — the watcher has been handed every matching event up to the current revision; new
//              revisions are pushed to it by notify(), straight from the apply path;
//   unsynced — the watcher is behind (it started at a past revision, or its stream was congested
//              when a revision was applied); syncStep() catches it up from the revision history in
//              bounded batches, and moves it to synced once it reaches the current revision.
//
// Invariant (the watch guarantee): an unsynced watcher's `minRev` is the first revision it has not
// been given yet; a synced watcher has been given everything up to the current revision (its minRev
// is only a lower bound then, or the future revision it waits for). Every delivery hands it events of revisions >= minRev, in order, and advances minRev past
// them; nothing ever lowers minRev. So each matching event is delivered exactly once, in revision
// order, and none is skipped: whatever is not pushed by notify() stays in the history until
// syncStep() reads it (or compaction removes it, and the watcher is cancelled with the compaction
// revision instead of silently missing events).
//
// A slow stream never blocks writes or other watchers: notify() does not queue events for a
// congested stream, it just moves the watcher to unsynced (holding nothing) and the history serves
// it later. Catch-up is bounded in bytes as well as in events: one delivery carries at most
// SYNC_DELIVERY_BYTES_MAX (whole revisions, at least one), one step at most SYNC_STEP_BYTES_MAX,
// and a sink that fills up during a step is not handed more in that step, so a stream that reads
// slowly is fed at the pace it reads instead of a whole window per watcher at once. Pure and synchronous like the rest of mvcc/: the caller decides when syncStep() runs
// (the API layer runs one step per event-loop turn while there is work).
import { assert } from '../util/assert';
import type { MvccStore } from './store';
import { bytesOf, EventType, type Bytes, type BytesLike, type Event, type Revision } from './types';

/** Most unsynced watchers one syncStep() serves (etcd: maxWatchersPerSync). */
export const SYNC_WATCHERS_PER_STEP_MAX = 512;
/** Most history events one syncStep() reads; a single revision larger than this is read whole. */
export const SYNC_EVENTS_PER_STEP_MAX = 1000;
/** Most bytes (keys and values, prev_kv included) one catch-up delivery carries; a single revision
 *  larger than this goes whole. The rest of the window follows in later steps. */
export const SYNC_DELIVERY_BYTES_MAX = 1024 * 1024;
/** Once one syncStep() has handed over this many bytes, the rest of its watchers wait for the next
 *  step (the next event-loop turn): a step never queues more than this plus one delivery. */
export const SYNC_STEP_BYTES_MAX = 4 * 1024 * 1024;

/** Watcher option bits (kept in one number so an idle watcher stays small). */
export const WatchFlags = {
  NOPUT: 1,
  NODELETE: 2,
  PREV_KV: 4,
  FRAGMENT: 8,
  PROGRESS_NOTIFY: 16,
} as const;

/** Where a watcher's events go: one client stream. */
export interface WatchSink {
  /** False while the stream is congested: the store then lets its watchers fall behind. */
  readonly ready: boolean;
  /** Hands over `events` (filtered, all of revisions >= the watcher's old minRev, in order).
   *  `revision` is the header revision: every event of this stream up to it has been handed over
   *  for this watcher. */
  deliver(w: Watcher, events: Event[], revision: Revision): void;
  /** The watcher needs events below the compaction point: it has been removed from the store. */
  compacted(w: Watcher, compactRevision: Revision): void;
}

const enum Group {
  SYNCED,
  UNSYNCED,
  CANCELED,
}

export class Watcher {
  /** First revision not yet handed to the sink. */
  minRev: Revision;
  /** @internal which group holds the watcher. */
  group: Group = Group.UNSYNCED;
  /** Free for the sink's own per-watcher state (the API uses it for progress notification). */
  sinkState = 0;

  constructor(
    /** The watch id on its stream (int64 as a decimal string). */
    readonly id: string,
    readonly key: Bytes,
    /** undefined: the single key `key`; empty: every key >= key; otherwise [key, end). */
    readonly end: Bytes | undefined,
    readonly flags: number,
    readonly sink: WatchSink,
    startRev: Revision,
  ) {
    this.minRev = startRev;
  }

  get isRange(): boolean {
    return this.end !== undefined;
  }

  get canceled(): boolean {
    return this.group === Group.CANCELED;
  }

  get synced(): boolean {
    return this.group === Group.SYNCED;
  }

  matches(key: Bytes): boolean {
    if (this.end === undefined) return this.key === key;
    if (key < this.key) return false;
    return this.end.length === 0 || key < this.end;
  }

  /** Drops the events the watcher's filters exclude (returns the same array when none are). */
  filter(events: Event[]): Event[] {
    const f = this.flags & (WatchFlags.NOPUT | WatchFlags.NODELETE);
    if (f === 0) return events;
    return events.filter((e) =>
      e.type === EventType.PUT ? (f & WatchFlags.NOPUT) === 0 : (f & WatchFlags.NODELETE) === 0,
    );
  }
}

/** Watchers by exact key. One watcher is stored bare, several in a Set, so 10,000 watchers on
 *  different keys cost one map entry each. */
class KeyWatchers {
  private readonly byKey = new Map<Bytes, Watcher | Set<Watcher>>();

  add(w: Watcher): void {
    const k = w.key;
    const cur = this.byKey.get(k);
    if (cur === undefined) this.byKey.set(k, w);
    else if (cur instanceof Set) cur.add(w);
    else this.byKey.set(k, new Set([cur, w]));
  }

  delete(w: Watcher): void {
    const k = w.key;
    const cur = this.byKey.get(k);
    if (cur === w) this.byKey.delete(k);
    else if (cur instanceof Set) {
      cur.delete(w);
      if (cur.size === 1) this.byKey.set(k, cur.values().next().value!);
    }
  }

  forEachWatcher(fn: (w: Watcher) => void): void {
    for (const v of this.byKey.values()) {
      if (v instanceof Set) for (const w of v) fn(w);
      else fn(v);
    }
  }

  /** Watchers of `key`: undefined, one, or a Set. */
  get(key: Bytes): Watcher | Set<Watcher> | undefined {
    return this.byKey.get(key);
  }
}

/** Collects events per watcher, keeping each watcher's events in order. */
class Batches {
  readonly map = new Map<Watcher, Event[]>();
  add(w: Watcher, ev: Event): void {
    const evs = this.map.get(w);
    if (evs) evs.push(ev);
    else this.map.set(w, [ev]);
  }
}

export class WatchableStore {
  private readonly syncedKeys = new KeyWatchers();
  private readonly syncedRanges = new Set<Watcher>();
  private syncedCount = 0;
  /** Synced watchers with PREV_KV: while there are none, the store's PUT events leave out prevKv
   *  (no synced watcher would read it; an unsynced one reads the history, eventsBetween). */
  private syncedPrevKv = 0;
  private readonly unsynced = new Set<Watcher>();
  /** Called when a watcher falls behind, so the owner schedules syncStep(). */
  onUnsynced: () => void = () => undefined;
  /** Synced watchers moved to catch-up because their sink was not ready (a metric). */
  slowWatcherMoves = 0;
  /** Watchers cancelled because the history they needed was compacted (a metric). */
  compactedWatchers = 0;

  constructor(private readonly store: MvccStore) {
    store.prevKvWanted = () => this.syncedPrevKv > 0;
  }

  get syncedWatchers(): number {
    return this.syncedCount;
  }

  get unsyncedWatchers(): number {
    return this.unsynced.size;
  }

  get currentRevision(): Revision {
    return this.store.currentRevision;
  }

  /**
   * Registers a watcher. startRev 0 means "from the next revision"; a revision above the current
   * one waits for it; a past revision replays history (from syncStep), and a compacted one ends in
   * sink.compacted(). Same placement rule as etcd's watchableStore.watch.
   */
  watch(id: string, keyIn: BytesLike, endIn: BytesLike | undefined, startRev: Revision, flags: number, sink: WatchSink): Watcher {
    assert(startRev >= 0 && Number.isSafeInteger(startRev), 'watch start revision must be a non-negative integer');
    const key = bytesOf(keyIn);
    const end = endIn === undefined ? undefined : bytesOf(endIn);
    assert(end === undefined || end.length === 0 || key < end, 'watch range must not be empty');
    const cur = this.store.currentRevision;
    const synced = startRev === 0 || startRev > cur;
    const w = new Watcher(id, key, end, flags, sink, synced ? Math.max(cur + 1, startRev) : startRev);
    if (synced) this.addSynced(w);
    else this.addUnsynced(w);
    return w;
  }

  /** After the store was replaced by a snapshot: every synced watcher catches up from the new
   *  store's history, from the first revision it has not been handed. */
  resyncAll(): void {
    const all = [...this.syncedRanges];
    this.syncedKeys.forEachWatcher((w) => all.push(w));
    for (const w of all) {
      if (w.group !== Group.SYNCED) continue;
      this.removeSynced(w);
      this.addUnsynced(w);
    }
  }

  cancel(w: Watcher): void {
    if (w.group === Group.SYNCED) this.removeSynced(w);
    else if (w.group === Group.UNSYNCED) this.unsynced.delete(w);
    w.group = Group.CANCELED;
  }

  /** The apply path's event sink: pushes one revision's events to the synced watchers. */
  notify(events: Event[], rev: Revision): void {
    if (this.syncedCount === 0) return;
    if (events.length === 1) {
      // The common case (one put or delete): no per-watcher batching needed.
      const one = events;
      this.forEachMatching(events[0].kv.key, (w) => this.push(w, one, rev));
      return;
    }
    const batches = new Batches();
    for (const ev of events) this.forEachMatching(ev.kv.key, (w) => batches.add(w, ev));
    for (const [w, evs] of batches.map) this.push(w, evs, rev);
  }

  private forEachMatching(key: Bytes, fn: (w: Watcher) => void): void {
    const exact = this.syncedKeys.get(key);
    if (exact instanceof Set) for (const w of exact) fn(w);
    else if (exact !== undefined) fn(exact);
    for (const w of this.syncedRanges) if (w.matches(key)) fn(w);
  }

  /** Hands one revision to a synced watcher, or lets it fall behind if its stream is congested. */
  private push(w: Watcher, evs: Event[], rev: Revision): void {
    // A synced watcher has been handed every revision before `rev` (its minRev only moves on the
    // revisions that touch it, so it may lag behind `rev` but never exceeds it, except while it
    // waits for a future start revision).
    if (w.group !== Group.SYNCED || w.minRev > rev) return;
    if (!w.sink.ready) {
      // Nothing is queued for it: revision `rev` and later stay in the history until syncStep().
      w.minRev = rev;
      this.slowWatcherMoves++;
      this.removeSynced(w);
      this.addUnsynced(w);
      return;
    }
    w.minRev = rev + 1;
    const out = w.filter(evs);
    if (out.length > 0) w.sink.deliver(w, out, rev);
  }

  /**
   * Catches unsynced watchers up from the history: at most SYNC_WATCHERS_PER_STEP_MAX watchers
   * and one window of at most SYNC_EVENTS_PER_STEP_MAX events (whole revisions). Watchers whose
   * stream is congested are skipped. Returns true if calling again now would make progress.
   */
  syncStep(): boolean {
    if (this.unsynced.size === 0) return false;
    const cur = this.store.currentRevision;
    const compactRev = this.store.compactRevision;
    const chosen: Watcher[] = [];
    let fromRev = Infinity;
    let more = false;
    for (const w of this.unsynced) {
      if (!w.sink.ready) continue;
      if (w.minRev > cur) {
        this.unsynced.delete(w);
        this.addSynced(w);
        continue;
      }
      if (w.minRev < compactRev) {
        this.cancel(w);
        this.compactedWatchers++;
        w.sink.compacted(w, compactRev);
        continue;
      }
      if (chosen.length === SYNC_WATCHERS_PER_STEP_MAX) {
        more = true;
        break;
      }
      chosen.push(w);
      if (w.minRev < fromRev) fromRev = w.minRev;
    }
    if (chosen.length === 0) return more;
    const { events, nextRev } = this.store.eventsBetween(fromRev, cur, SYNC_EVENTS_PER_STEP_MAX);
    const batches = this.matchChosen(chosen, events);
    let stepBytes = 0;
    for (const w of chosen) {
      if (w.minRev >= nextRev) {
        more = true; // the window ended before this watcher's first revision
        continue;
      }
      const evs = batches.map.get(w);
      const out = evs ? w.filter(evs) : [];
      if (out.length === 0) w.minRev = nextRev;
      else {
        // A sink filled by an earlier delivery of this step (another watcher of the same stream)
        // is left where it is: its minRev stays, and its drain schedules the next step.
        if (!w.sink.ready) continue;
        if (stepBytes >= SYNC_STEP_BYTES_MAX) {
          more = true;
          continue;
        }
        const withPrev = (w.flags & WatchFlags.PREV_KV) !== 0;
        const { count, bytes } = revisionsWithin(out, SYNC_DELIVERY_BYTES_MAX, withPrev);
        stepBytes += bytes;
        if (count < out.length) {
          // Cut between two revisions: everything below the first one left out has been handed over.
          w.minRev = out[count].kv.modRevision;
          w.sink.deliver(w, out.slice(0, count), w.minRev - 1);
        } else {
          w.minRev = nextRev;
          // Header: everything below nextRev has now been handed over for this watcher.
          w.sink.deliver(w, out, Math.min(nextRev - 1, cur));
        }
      }
      if (w.group !== Group.UNSYNCED) continue; // cancelled by the sink
      if (w.minRev > cur) {
        this.unsynced.delete(w);
        this.addSynced(w);
      } else more = true;
    }
    return more;
  }

  private matchChosen(chosen: Watcher[], events: Event[]): Batches {
    const byKey = new Map<Bytes, Watcher[]>();
    const ranges: Watcher[] = [];
    for (const w of chosen) {
      if (w.isRange) ranges.push(w);
      else {
        const k = w.key;
        const list = byKey.get(k);
        if (list) list.push(w);
        else byKey.set(k, [w]);
      }
    }
    const batches = new Batches();
    for (const ev of events) {
      const rev = ev.kv.modRevision;
      const exact = byKey.size > 0 ? byKey.get(ev.kv.key) : undefined;
      if (exact) for (const w of exact) if (rev >= w.minRev) batches.add(w, ev);
      for (const w of ranges) if (rev >= w.minRev && w.matches(ev.kv.key)) batches.add(w, ev);
    }
    return batches;
  }

  private addSynced(w: Watcher): void {
    w.group = Group.SYNCED;
    if (w.isRange) this.syncedRanges.add(w);
    else this.syncedKeys.add(w);
    this.syncedCount++;
    if ((w.flags & WatchFlags.PREV_KV) !== 0) this.syncedPrevKv++;
  }

  private removeSynced(w: Watcher): void {
    assert(w.group === Group.SYNCED, 'removing a watcher that is not synced');
    if (w.isRange) this.syncedRanges.delete(w);
    else this.syncedKeys.delete(w);
    this.syncedCount--;
    if ((w.flags & WatchFlags.PREV_KV) !== 0) this.syncedPrevKv--;
  }

  private addUnsynced(w: Watcher): void {
    w.group = Group.UNSYNCED;
    this.unsynced.add(w);
    this.onUnsynced();
  }
}

/** How many of `events` (in revision order) one delivery of at most `bytesMax` takes, whole
 *  revisions only and at least the first revision, and their size. */
export function revisionsWithin(events: readonly Event[], bytesMax: number, withPrev: boolean): { count: number; bytes: number } {
  assert(events.length > 0, 'revisionsWithin: no events');
  let bytes = 0;
  let i = 0;
  while (i < events.length) {
    const rev = events[i].kv.modRevision;
    let j = i;
    let revBytes = 0;
    while (j < events.length && events[j].kv.modRevision === rev) revBytes += eventBytes(events[j++], withPrev);
    if (i > 0 && bytes + revBytes > bytesMax) break;
    bytes += revBytes;
    i = j;
  }
  return { count: i, bytes };
}

function eventBytes(e: Event, withPrev: boolean): number {
  let n = e.kv.key.length + e.kv.value.length;
  if (withPrev && e.prevKv !== undefined) n += e.prevKv.key.length + e.prevKv.value.length;
  return n;
}
