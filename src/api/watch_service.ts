// etcdserverpb.Watch: one bidirectional stream carries many watchers (etcd's v3rpc/watch.go).
//
// Protocol points clients depend on (see docs/compatibility.md):
//   * every create is answered, in order, with created=true (the Go client pairs each answer with
//     the head of its queue); a rejected create is created+canceled with watch_id -1 and a reason;
//   * server-assigned watch ids start at 0 per stream, as etcd's; a client-chosen id already in use
//     on the stream is rejected;
//   * a watcher whose start revision is compacted gets created, then canceled with
//     compact_revision (clients turn that into ErrCompacted);
//   * a cancel is answered with canceled=true; an unknown id gets no answer (as etcd);
//   * a progress request is answered at once with watch_id -1 and a header revision R such that
//     every later event on this stream is above R;
//   * periodic progress notifications (progress_notify) go to synced watchers that had no events
//     since the previous tick;
//   * with fragment=true, a response larger than --max-request-bytes is split into several, all but
//     the last marked fragment=true.
//
// Back-pressure: a stream whose transport reported its send buffer full (a write returned false) is
// "not ready" until the call's drain(); the watchable store then stops pushing to its watchers and
// catches them up from the history once the stream drains. Catch-up runs one bounded syncStep per
// event-loop turn.
//
// Buffered bytes are bounded per stream and per member (--max-watch-stream-buffer-bytes,
// --max-watch-buffer-bytes; etcd #16839: a watcher that stops reading grows etcd's buffers until
// OOM). A stream is also "not ready" while the bytes its call holds for the client are above the
// stream's bound, or while the member's watch streams together hold more than the total bound and
// this stream holds more than STREAM_BYTES_FREE_MAX (so a client that reads keeps real-time
// delivery however many others do not). Not ready never loses an event: the watchers move to
// catch-up and resume from their next revision once the stream is back within its bounds, or get
// etcd's compaction answer (canceled, compact_revision) if that revision was compacted meanwhile.
//
// Events go out as bytes encoded once per event and revision (watch_encoding.ts), behind each
// watcher's id: every transport takes encoded responses (call.ts writeEncoded).
import { assert } from '../util/assert';
import { WATCH_BUFFER_BYTES_MAX_DEFAULT, WATCH_STREAM_BUFFER_BYTES_MAX_DEFAULT } from '../config/flags';
import { Errors } from '../util/errors';
import type { Server } from '../server/server';
import { kvToPb, toNumber } from '../server/kv_ops';
import { EventType, WatchFlags, type Event, type Revision, type WatchSink, type WatchableStore, type Watcher } from '../mvcc';
import type { EventPb, ResponseHeader, WatchCreateRequest, WatchRequest, WatchResponse } from '../proto/types';
import type { BidiCall, BidiHandler, BidiListener } from './call';
import { WATCH_PERMISSION_DENIED_REASON, watchPermitted } from './auth_service';
import { encodeEvent, encodeEventsResponse, encodeHeader } from './watch_encoding';

/** Watchers one stream may hold (a bound on per-stream memory; etcd has none). */
export const STREAM_WATCHERS_MAX = 1_000_000;
/** Rough per-event protobuf overhead when estimating a response's size for fragmenting. */
const EVENT_OVERHEAD_BYTES = 64;
/** While the member's watch streams are over --max-watch-buffer-bytes together, a stream holding at
 *  most this much still gets events: a client that reads keeps up in real time. */
export const STREAM_BYTES_FREE_MAX = 64 * 1024;
/** How often the hub re-reads what each stream holding bytes still holds: the gauge, and the
 *  streams held back by a bound resume within this time of their client reading. */
export const BUFFER_SWEEP_MS = 20;

const ERR_DUPLICATE_ID = 'mvcc: duplicate watch ID provided on the WatchStream';
const ERR_EMPTY_RANGE = 'mvcc: watcher range is empty';
const EMPTY = Buffer.alloc(0);
const ZERO_KEY = Buffer.from([0]);
/** Watcher.sinkState bit: no events since the last progress tick (etcd's sws.progress[id]). */
const PROGRESS_IDLE = 1;

export interface WatchServiceOptions {
  progressNotifyIntervalMs: number;
  /** Responses above this size are fragmented for watchers that asked for it. */
  maxRequestBytes: number;
  /** A stream whose call holds more response bytes than this is not handed events (its watchers
   *  catch up from history). The transport's own mark (1 MiB) caps it. */
  streamBufferBytesMax?: number;
  /** Response bytes all watch streams together may hold before those holding more than
   *  STREAM_BYTES_FREE_MAX are not handed events (Infinity: no such bound). */
  bufferBytesMax?: number;
}

/** Everything the watch streams of one member share: the watchable store, the catch-up loop and
 *  the progress ticker. */
export class WatchHub {
  readonly streams = new Set<WatchStream>();
  private syncScheduled = false;
  private readonly ticker: NodeJS.Timeout;
  private closed = false;

  /** Encoded bytes shared by every watcher a revision is delivered to (watch_encoding.ts). */
  private readonly eventBytes = [new WeakMap<Event, Buffer>(), new WeakMap<Event, Buffer>()];
  private headerBytes: { rev: Revision; term: number; bytes: Buffer } | undefined;

  /** Response bytes the watch streams' calls hold, as last read from each (a gauge). */
  bufferedBytes = 0;
  /** Streams whose last read found bytes held: re-read every BUFFER_SWEEP_MS. */
  private readonly holding = new Set<WatchStream>();
  /** Streams refused events by a bound since the last sweep. */
  private readonly heldBack = new Set<WatchStream>();
  private sweepTimer: NodeJS.Timeout | undefined;
  readonly streamBytesMax: number;
  readonly totalBytesMax: number;
  /** Times a stream was found over a bound and its watchers sent to catch up (a metric). */
  streamsOverBound = 0;

  constructor(
    readonly server: Server,
    readonly watchable: WatchableStore,
    readonly opts: WatchServiceOptions,
  ) {
    this.streamBytesMax = opts.streamBufferBytesMax ?? WATCH_STREAM_BUFFER_BYTES_MAX_DEFAULT;
    this.totalBytesMax = opts.bufferBytesMax ?? WATCH_BUFFER_BYTES_MAX_DEFAULT;
    assert(this.streamBytesMax > 0 && this.totalBytesMax >= this.streamBytesMax, 'watch buffer bounds: 0 < per stream <= total');
    watchable.onUnsynced = () => this.scheduleSync();
    this.ticker = setInterval(() => this.progressTick(), opts.progressNotifyIntervalMs);
    this.ticker.unref();
  }

  /** Records that `s` now holds `bytes` (its call's queuedBytes), keeping the total. */
  noteHeld(s: WatchStream, before: number, bytes: number): void {
    this.bufferedBytes += bytes - before;
    assert(this.bufferedBytes >= 0 && bytes >= 0, 'watch buffered bytes went negative');
    if (bytes > 0) {
      this.holding.add(s);
      if (this.sweepTimer === undefined && !this.closed) {
        this.sweepTimer = setInterval(() => this.sweep(), BUFFER_SWEEP_MS);
        this.sweepTimer.unref();
      }
    } else this.holding.delete(s);
  }

  /** Whether a stream holding `bytes` may be handed more events. */
  admits(s: WatchStream, bytes: number): boolean {
    if (bytes <= this.streamBytesMax && (bytes <= STREAM_BYTES_FREE_MAX || this.bufferedBytes <= this.totalBytesMax)) return true;
    if (!this.heldBack.has(s)) {
      this.heldBack.add(s);
      this.streamsOverBound++;
    }
    return false;
  }

  /** Re-reads what the streams holding bytes hold now (their clients read meanwhile), and resumes
   *  the catch-up of streams a bound held back once they are within it. */
  private sweep(): void {
    for (const s of this.holding) s.refreshHeld();
    let resumed = false;
    for (const s of this.heldBack) {
      if (!s.ready) continue; // still over (ready re-reads and re-checks)
      this.heldBack.delete(s);
      resumed = true;
    }
    if (resumed) this.scheduleSync();
    if (this.holding.size === 0 && this.heldBack.size === 0 && this.sweepTimer !== undefined) {
      clearInterval(this.sweepTimer);
      this.sweepTimer = undefined;
    }
  }

  /** A stream is gone: it holds nothing any more. */
  forget(s: WatchStream, before: number): void {
    this.bufferedBytes -= before;
    assert(this.bufferedBytes >= 0, 'watch buffered bytes went negative');
    this.holding.delete(s);
    this.heldBack.delete(s);
  }

  /** The response header at `rev`, encoded (cached for the revision being fanned out). */
  encodedHeader(rev: Revision): Buffer {
    const term = this.server.raftTerm;
    const h = this.headerBytes;
    if (h && h.rev === rev && h.term === term) return h.bytes;
    const bytes = encodeHeader(this.server.header(rev));
    this.headerBytes = { rev, term, bytes };
    return bytes;
  }

  /** An event, encoded (with or without its previous key-value), once for all its watchers. */
  encodedEvent(e: Event, withPrev: boolean): Buffer {
    const cache = this.eventBytes[withPrev ? 1 : 0]!;
    let b = cache.get(e);
    if (b === undefined) {
      b = encodeEvent(eventToPb(e, withPrev));
      cache.set(e, b);
    }
    return b;
  }

  /** Runs one bounded catch-up step per event-loop turn while there is work. */
  scheduleSync(): void {
    if (this.syncScheduled || this.closed) return;
    this.syncScheduled = true;
    setImmediate(() => {
      this.syncScheduled = false;
      if (this.closed) return;
      if (this.watchable.syncStep()) this.scheduleSync();
    });
  }

  private progressTick(): void {
    for (const s of this.streams) s.progressTick();
  }

  close(): void {
    this.closed = true;
    clearInterval(this.ticker);
    if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer);
    for (const s of [...this.streams]) s.close();
  }
}

/** One Watch call: its watchers, and the listener of its requests. */
export class WatchStream implements WatchSink, BidiListener<WatchRequest> {
  private readonly watchers = new Map<string, Watcher>();
  private nextId = 0;
  private done = false;
  /** A write found the transport's send buffer full; cleared by drain(). */
  private blocked = false;
  /** The call's queuedBytes as last read (counted in hub.bufferedBytes). */
  private held = 0;

  constructor(
    private readonly hub: WatchHub,
    private readonly call: BidiCall<WatchResponse>,
  ) {
    hub.streams.add(this);
  }

  get ready(): boolean {
    if (this.done || this.blocked) return false;
    return this.hub.admits(this, this.refreshHeld());
  }

  /** Re-reads the bytes the call holds for the client; returns them. */
  refreshHeld(): number {
    const before = this.held;
    const now = this.done ? 0 : this.call.queuedBytes;
    if (now !== before) {
      this.held = now;
      this.hub.noteHeld(this, before, now);
    }
    return now;
  }

  // ---- BidiListener -----------------------------------------------------------------------

  message(req: WatchRequest): void {
    this.onRequest(req);
  }

  /** The client closed its side: the stream ends (OK) with its watchers. */
  halfClosed(): void {
    this.close();
    this.call.end();
  }

  drain(): void {
    this.blocked = false;
    this.hub.scheduleSync();
  }

  closed(): void {
    this.close();
  }

  get watcherCount(): number {
    return this.watchers.size;
  }

  close(): void {
    if (this.done) return;
    this.done = true;
    for (const w of this.watchers.values()) this.hub.watchable.cancel(w);
    this.watchers.clear();
    this.hub.streams.delete(this);
    this.hub.forget(this, this.held);
    this.held = 0;
  }

  private header(rev: Revision): ResponseHeader {
    return this.hub.server.header(rev);
  }

  private write(resp: WatchResponse): void {
    if (this.done) return;
    if (!this.call.write(resp)) this.blocked = true;
    this.refreshHeld();
  }

  private onRequest(req: WatchRequest): void {
    if (this.done) return;
    switch (req.request_union) {
      case 'create_request':
        return this.create(req.create_request!);
      case 'cancel_request':
        return this.cancel(String(req.cancel_request!.watch_id));
      case 'progress_request':
        return this.progressNow();
      default:
        return; // an empty request: etcd ignores it too
    }
  }

  private reject(reason: string): void {
    this.write({ header: this.header(this.hub.watchable.currentRevision), watch_id: -1, created: true, canceled: true, cancel_reason: reason });
  }

  private create(c: WatchCreateRequest): void {
    // etcd: an empty key means "\x00"; range_end "\x00" means every key >= key. (The watchable
    // store copies key and end into strings, so a watcher never pins the request's buffer.)
    const key = c.key.length > 0 ? c.key : ZERO_KEY;
    let end: Buffer | undefined;
    if (c.range_end.length === 0) end = undefined;
    else if (c.range_end.length === 1 && c.range_end[0] === 0) end = EMPTY;
    else end = c.range_end;
    // etcd's isWatchPermitted (READ on the range, with the stream's token), checked once at
    // create; a denied create is created+canceled under the client's watch_id, as etcd 3.4.
    if (!watchPermitted(this.hub.server, this.call, key, c.range_end)) {
      this.write({ header: this.header(this.hub.watchable.currentRevision), watch_id: c.watch_id, created: true, canceled: true, cancel_reason: WATCH_PERMISSION_DENIED_REASON });
      return;
    }
    const startRev = toNumber(c.start_revision);
    if (startRev < 0 || !Number.isSafeInteger(startRev)) return this.reject(Errors.Compacted.message);
    if (end !== undefined && end.length > 0 && Buffer.compare(key, end) >= 0) return this.reject(ERR_EMPTY_RANGE);
    let id = String(c.watch_id);
    if (id !== '0') {
      if (this.watchers.has(id)) return this.reject(ERR_DUPLICATE_ID);
    } else {
      while (this.watchers.has(String(this.nextId))) this.nextId++;
      id = String(this.nextId++);
    }
    if (this.watchers.size >= STREAM_WATCHERS_MAX) return this.reject(`quorumkv: more than ${STREAM_WATCHERS_MAX} watchers on one stream`);
    let flags = 0;
    for (const f of c.filters) flags |= f === 0 ? WatchFlags.NOPUT : f === 1 ? WatchFlags.NODELETE : 0;
    if (c.prev_kv) flags |= WatchFlags.PREV_KV;
    if (c.fragment) flags |= WatchFlags.FRAGMENT;
    if (c.progress_notify) flags |= WatchFlags.PROGRESS_NOTIFY;
    // The created answer goes out before any event of this watcher: events are only ever
    // delivered by later notify() calls or by syncStep() on a later turn of the event loop.
    this.write({ header: this.header(this.hub.watchable.currentRevision), watch_id: id, created: true });
    const w = this.hub.watchable.watch(id, key, end, startRev, flags, this);
    w.sinkState = c.progress_notify ? PROGRESS_IDLE : 0;
    this.watchers.set(id, w);
  }

  private cancel(id: string): void {
    const w = this.watchers.get(id);
    if (!w) return; // etcd answers nothing for an unknown id
    this.hub.watchable.cancel(w);
    this.watchers.delete(id);
    this.write({ header: this.header(this.hub.watchable.currentRevision), watch_id: id, canceled: true });
  }

  /** A WatchProgressRequest: answered at once. Its revision promises that every later event of
   *  this stream is above it, so a watcher still catching up holds it below its next revision. */
  private progressNow(): void {
    let rev = this.hub.watchable.currentRevision;
    for (const w of this.watchers.values()) if (!w.synced && w.minRev - 1 < rev) rev = w.minRev - 1;
    this.write({ header: this.header(rev), watch_id: -1 });
  }

  /** Periodic progress notification (etcd: only watchers with no events since the last tick,
   *  and only synced ones, whose revision promise holds). */
  progressTick(): void {
    if (!this.ready) return;
    const rev = this.hub.watchable.currentRevision;
    for (const w of this.watchers.values()) {
      if ((w.flags & WatchFlags.PROGRESS_NOTIFY) === 0) continue;
      if (w.sinkState & PROGRESS_IDLE && w.synced) this.write({ header: this.header(rev), watch_id: w.id });
      w.sinkState |= PROGRESS_IDLE;
    }
  }

  // ---- WatchSink --------------------------------------------------------------------------

  deliver(w: Watcher, events: Event[], revision: Revision): void {
    w.sinkState &= ~PROGRESS_IDLE;
    const withPrev = (w.flags & WatchFlags.PREV_KV) !== 0;
    const numericId = Number(w.id);
    if (numericId >= 0 && Number.isSafeInteger(numericId) && (events.length < 2 || (w.flags & WatchFlags.FRAGMENT) === 0)) {
      const bytes: Buffer[] = new Array<Buffer>(events.length);
      for (let i = 0; i < events.length; i++) bytes[i] = this.hub.encodedEvent(events[i], withPrev);
      if (this.done) return;
      if (!this.call.writeEncoded(encodeEventsResponse(this.hub.encodedHeader(revision), numericId, bytes))) this.blocked = true;
      this.refreshHeld();
      return;
    }
    const pbs: EventPb[] = new Array<EventPb>(events.length);
    for (let i = 0; i < events.length; i++) pbs[i] = eventToPb(events[i], withPrev);
    const header = this.header(revision);
    if ((w.flags & WatchFlags.FRAGMENT) === 0 || pbs.length < 2) {
      this.write({ header, watch_id: w.id, events: pbs });
      return;
    }
    this.writeFragmented(w, header, events, pbs, withPrev);
  }

  compacted(w: Watcher, compactRevision: Revision): void {
    this.watchers.delete(w.id);
    // etcd sends this one with header revision 0.
    this.write({ header: this.header(0), watch_id: w.id, canceled: true, compact_revision: compactRevision });
  }

  /** etcd's sendFragments: below the limit the response goes whole; above it, events are packed
   *  into responses of at most maxRequestBytes (at least one event each). */
  private writeFragmented(w: Watcher, header: ResponseHeader, events: Event[], pbs: EventPb[], withPrev: boolean): void {
    const limit = this.hub.opts.maxRequestBytes;
    const sizes = events.map((e) => eventSize(e, withPrev));
    const total = sizes.reduce((a, b) => a + b, 0);
    if (total < limit) {
      this.write({ header, watch_id: w.id, events: pbs });
      return;
    }
    let start = 0;
    while (start < pbs.length) {
      let stop = start + 1;
      let size = sizes[start];
      while (stop < pbs.length && size + sizes[stop] <= limit) size += sizes[stop++];
      this.write({ header, watch_id: w.id, events: pbs.slice(start, stop), fragment: stop < pbs.length });
      start = stop;
    }
  }
}

function eventSize(e: Event, withPrev: boolean): number {
  let n = EVENT_OVERHEAD_BYTES + e.kv.key.length + e.kv.value.length;
  if (withPrev && e.prevKv) n += EVENT_OVERHEAD_BYTES + e.prevKv.key.length + e.prevKv.value.length;
  return n;
}

function eventToPb(e: Event, withPrev: boolean): EventPb {
  return {
    type: e.type === EventType.PUT ? 0 : 1,
    kv: kvToPb(e.kv),
    prev_kv: withPrev && e.prevKv ? kvToPb(e.prevKv) : null,
  };
}

export function watchService(hub: WatchHub) {
  const Watch: BidiHandler<WatchRequest, WatchResponse> = (call) => new WatchStream(hub, call);
  return { Watch };
}
