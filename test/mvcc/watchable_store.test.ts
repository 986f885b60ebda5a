// The watchable store's guarantee, checked against the revision history: each watcher sees every
// matching event exactly once, in revision order, with no gaps, whether it starts in the past,
// now or in the future, and however often its stream is congested while writes go on.
import { strict as assert } from 'node:assert';
import { EventType, MvccStore, WatchableStore, WatchFlags, SYNC_DELIVERY_BYTES_MAX, SYNC_STEP_BYTES_MAX, revisionsWithin, type Event, type WatchSink, type Watcher } from '../../src/mvcc';
import { b, s, put, del, rng } from './helpers';

/** A sink that records deliveries and can be congested at will. */
class FakeSink implements WatchSink {
  ready = true;
  /** When set: deliveries left before the sink fills up (a stream that reaches its bound). */
  deliveriesLeft: number | undefined;
  /** Key and value bytes of every delivery, in order. */
  readonly deliveryBytes: number[] = [];
  /** The revision of each delivery's last event. */
  readonly lastRevs: number[] = [];
  readonly got = new Map<Watcher, { events: Event[]; headers: number[] }>();
  readonly compactedAt = new Map<Watcher, number>();
  deliver(w: Watcher, events: Event[], revision: number): void {
    assert.ok(this.ready, 'a delivery to a sink that is not ready');
    let r = this.got.get(w);
    if (!r) this.got.set(w, (r = { events: [], headers: [] }));
    r.events.push(...events);
    r.headers.push(revision);
    this.deliveryBytes.push(events.reduce((n, e) => n + e.kv.key.length + e.kv.value.length, 0));
    this.lastRevs.push(events[events.length - 1].kv.modRevision);
    if (this.deliveriesLeft !== undefined && --this.deliveriesLeft <= 0) this.ready = false;
  }
  compacted(w: Watcher, compactRevision: number): void {
    this.compactedAt.set(w, compactRevision);
  }
  events(w: Watcher): string[] {
    return (this.got.get(w)?.events ?? []).map(brief);
  }
}

const brief = (e: Event) => `${e.type === EventType.PUT ? 'P' : 'D'}${s(e.kv.key)}@${e.kv.modRevision}`;

/** What a watcher must see: the history from `from`, filtered by its range and flags. */
function expected(store: MvccStore, w: Watcher, from: number): string[] {
  const out: string[] = [];
  if (from > store.currentRevision) return out;
  for (const e of store.eventsBetween(Math.max(from, 1), store.currentRevision).events) {
    if (!w.matches(e.kv.key)) continue;
    if (e.type === EventType.PUT && w.flags & WatchFlags.NOPUT) continue;
    if (e.type === EventType.DELETE && w.flags & WatchFlags.NODELETE) continue;
    out.push(brief(e));
  }
  return out;
}

function drain(ws: WatchableStore): number {
  let steps = 0;
  while (ws.syncStep()) assert.ok(++steps < 100_000, 'syncStep did not converge');
  return steps;
}

function setup() {
  const store = new MvccStore();
  const ws = new WatchableStore(store);
  const write = (fn: (st: MvccStore) => { events: Event[]; revision: number }) => {
    const r = fn(store);
    if (r.events.length > 0) ws.notify(r.events, r.revision);
    return r.revision;
  };
  return { store, ws, write };
}

describe('watchable store: synced and unsynced watchers', () => {
  it('a synced watcher on one key sees later puts and deletes of that key only', () => {
    const { ws, write } = setup();
    const sink = new FakeSink();
    const w = ws.watch('0', b('a'), undefined, 0, 0, sink);
    write((st) => put(st, 'a', '1'));
    write((st) => put(st, 'b', '1'));
    write((st) => del(st, 'a'));
    assert.deepEqual(sink.events(w), ['Pa@2', 'Da@4']);
    assert.equal(ws.syncedWatchers, 1);
  });

  it('prefix and from-key watchers; filters drop puts or deletes', () => {
    const { ws, write } = setup();
    const sink = new FakeSink();
    const prefix = ws.watch('0', b('p/'), b('p0'), 0, 0, sink);
    const fromKey = ws.watch('1', b('m'), Buffer.alloc(0), 0, 0, sink);
    const noPut = ws.watch('2', b('p/'), b('p0'), 0, WatchFlags.NOPUT, sink);
    write((st) => put(st, 'p/1', 'x'));
    write((st) => put(st, 'a', 'x'));
    write((st) => put(st, 'z', 'x'));
    write((st) => del(st, 'p/', 'p0'));
    assert.deepEqual(sink.events(prefix), ['Pp/1@2', 'Dp/1@5']);
    assert.deepEqual(sink.events(fromKey), ['Pp/1@2', 'Pz@4', 'Dp/1@5']);
    assert.deepEqual(sink.events(noPut), ['Dp/1@5']);
  });

  it('events of one revision (a multi-op txn) arrive in one delivery', () => {
    const { ws, write } = setup();
    const sink = new FakeSink();
    const w = ws.watch('0', b('k'), b('l'), 0, 0, sink);
    write((st) => {
      const t = st.write();
      t.put(b('k1'), b('1'), 0n);
      t.put(b('k2'), b('2'), 0n);
      t.put(b('x'), b('3'), 0n);
      return t.end();
    });
    assert.deepEqual(sink.got.get(w)!.headers, [2]);
    assert.deepEqual(sink.events(w), ['Pk1@2', 'Pk2@2']);
  });

  it('a watcher from a past revision replays history, then continues live', () => {
    const { store, ws, write } = setup();
    for (let i = 0; i < 10; i++) write((st) => put(st, 'a', String(i)));
    const sink = new FakeSink();
    const w = ws.watch('0', b('a'), undefined, 5, 0, sink);
    assert.equal(ws.unsyncedWatchers, 1);
    write((st) => put(st, 'a', 'live-before-sync')); // applied while the watcher is still unsynced
    drain(ws);
    assert.equal(ws.syncedWatchers, 1);
    write((st) => put(st, 'a', 'live'));
    assert.deepEqual(sink.events(w), expected(store, w, 5));
  });

  it('a watcher for a future revision starts at that revision', () => {
    const { ws, write } = setup();
    const sink = new FakeSink();
    const w = ws.watch('0', b('a'), undefined, 4, 0, sink);
    for (let i = 0; i < 4; i++) write((st) => put(st, 'a', String(i)));
    assert.deepEqual(sink.events(w), ['Pa@4', 'Pa@5']);
  });

  it('a watcher from a compacted revision is cancelled with the compaction revision', () => {
    const { store, ws, write } = setup();
    for (let i = 0; i < 5; i++) write((st) => put(st, 'a', String(i)));
    store.compact(4);
    const sink = new FakeSink();
    const w = ws.watch('0', b('a'), undefined, 2, 0, sink);
    drain(ws);
    assert.equal(sink.compactedAt.get(w), 4);
    assert.ok(w.canceled);
    assert.equal(ws.unsyncedWatchers + ws.syncedWatchers, 0);
    // Exactly at the compaction revision is still served.
    const ok = ws.watch('1', b('a'), undefined, 4, 0, sink);
    drain(ws);
    assert.equal(store.currentRevision, 6);
    assert.deepEqual(sink.events(ok), ['Pa@4', 'Pa@5', 'Pa@6']);
  });

  it('a congested stream falls behind without holding events, then catches up exactly', () => {
    const { store, ws, write } = setup();
    const slow = new FakeSink();
    const fast = new FakeSink();
    const ws1 = ws.watch('0', b('k'), undefined, 0, 0, slow);
    const wf = ws.watch('0', b('k'), undefined, 0, 0, fast);
    write((st) => put(st, 'k', '0'));
    slow.ready = false;
    for (let i = 1; i <= 3000; i++) write((st) => put(st, 'k', String(i)));
    // The fast watcher got everything live; the slow one got one event and nothing was queued.
    assert.equal(fast.events(wf).length, 3001);
    assert.equal(slow.events(ws1).length, 1);
    assert.equal(ws.unsyncedWatchers, 1);
    assert.equal(ws.syncStep(), false, 'no progress possible while congested');
    slow.ready = true;
    const steps = drain(ws);
    assert.ok(steps >= 2, `catch-up is incremental (bounded batches): ${steps} extra steps`);
    assert.deepEqual(slow.events(ws1), expected(store, ws1, 2));
    // Headers: a partial batch promises only what it covered.
    const h = slow.got.get(ws1)!.headers;
    for (let i = 1; i < h.length; i++) assert.ok(h[i] > h[i - 1]);
    assert.equal(h[h.length - 1], store.currentRevision);
  });

  it('cancel stops deliveries in both groups', () => {
    const { ws, write } = setup();
    const sink = new FakeSink();
    const a = ws.watch('0', b('a'), undefined, 0, 0, sink);
    const r = ws.watch('1', b('a'), b('b'), 1, 0, sink);
    ws.cancel(a);
    ws.cancel(r);
    write((st) => put(st, 'a', '1'));
    drain(ws);
    assert.equal(sink.got.size, 0);
    assert.equal(ws.syncedWatchers + ws.unsyncedWatchers, 0);
  });

  it('10,000 single-key watchers on different keys: a write reaches only its key\'s watcher', () => {
    const { ws, write } = setup();
    const sink = new FakeSink();
    const all: Watcher[] = [];
    for (let i = 0; i < 10_000; i++) all.push(ws.watch(String(i), b(`key/${i}`), undefined, 0, 0, sink));
    for (let i = 0; i < 10_000; i += 1000) write((st) => put(st, `key/${i}`, 'v'));
    assert.equal(sink.got.size, 10);
    for (let i = 0; i < 10_000; i += 1000) assert.deepEqual(sink.events(all[i]).length, 1);
  });

  it('randomized: random writes, watchers, congestion and catch-up steps keep the guarantee (seeded)', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const rand = rng(seed);
      const { store, ws, write } = setup();
      const sinks = [new FakeSink(), new FakeSink(), new FakeSink()];
      const watchers: { w: Watcher; from: number; sink: FakeSink }[] = [];
      const keys = ['a', 'b', 'c', 'd', 'e'];
      for (let step = 0; step < 400; step++) {
        const r = rand();
        if (r < 0.5) {
          const k = keys[Math.floor(rand() * keys.length)];
          write((st) => (rand() < 0.8 ? put(st, k, String(step)) : del(st, k)));
        } else if (r < 0.6 && watchers.length < 40) {
          const sink = sinks[Math.floor(rand() * sinks.length)];
          const cur = store.currentRevision;
          const start = rand() < 0.5 ? 0 : 1 + Math.floor(rand() * (cur + 3));
          const single = rand() < 0.5;
          const k = keys[Math.floor(rand() * (single ? keys.length : 3))];
          const flags = rand() < 0.2 ? WatchFlags.NODELETE : 0;
          const w = ws.watch(String(watchers.length), b(k), single ? undefined : b('d'), start, flags, sink);
          watchers.push({ w, from: start === 0 ? cur + 1 : start, sink });
        } else if (r < 0.75) {
          const sink = sinks[Math.floor(rand() * sinks.length)];
          sink.ready = !sink.ready;
          sink.deliveriesLeft = undefined;
        } else if (r < 0.8) {
          // The stream fills up after a few deliveries, possibly in the middle of a step.
          const sink = sinks[Math.floor(rand() * sinks.length)];
          sink.ready = true;
          sink.deliveriesLeft = 1 + Math.floor(rand() * 3);
        } else {
          ws.syncStep();
        }
      }
      for (const sk of sinks) {
        sk.ready = true;
        sk.deliveriesLeft = undefined;
      }
      drain(ws);
      for (const { w, from, sink } of watchers) {
        assert.deepEqual(sink.events(w), expected(store, w, from), `seed ${seed} watcher ${w.id}`);
      }
    }
  });

  it('a sink that fills up during a catch-up step gets nothing more in that step; every watcher resumes where it stopped', () => {
    const { store, ws, write } = setup();
    const sink = new FakeSink();
    const all: Watcher[] = [];
    for (let i = 0; i < 100; i++) all.push(ws.watch(String(i), b('p/'), b('p0'), 1, 0, sink));
    for (let i = 0; i < 200; i++) write((st) => put(st, `p/${i % 7}`, 'v'.repeat(1024)));
    let steps = 0;
    let deliveries = 0;
    while (ws.unsyncedWatchers > 0) {
      assert.ok(++steps < 10_000, 'catch-up did not converge');
      sink.ready = true;
      sink.deliveriesLeft = 3;
      ws.syncStep();
      const now = sink.deliveryBytes.length;
      assert.ok(now - deliveries <= 3, `a step delivered ${now - deliveries} times to a sink that filled after 3`);
      deliveries = now;
    }
    for (const w of all) assert.deepEqual(sink.events(w), expected(store, w, 1), `watcher ${w.id}`);
    assert.ok(steps >= 100 / 3, `${steps} steps`);
  });

  it('one catch-up delivery carries at most SYNC_DELIVERY_BYTES_MAX, whole revisions; a larger revision goes whole', () => {
    const { store, ws, write } = setup();
    const sink = new FakeSink();
    const w = ws.watch('0', b('k'), undefined, 1, 0, sink);
    for (let i = 0; i < 900; i++) write((st) => put(st, 'k', 'v'.repeat(2048)));
    write((st) => put(st, 'k', 'w'.repeat(SYNC_DELIVERY_BYTES_MAX + 10)));
    write((st) => put(st, 'k', 'x'));
    drain(ws);
    assert.deepEqual(sink.events(w), expected(store, w, 1));
    const sizes = sink.deliveryBytes;
    assert.ok(sizes.length >= 3, `${sizes.length} deliveries`);
    assert.ok(sizes.some((n) => n > SYNC_DELIVERY_BYTES_MAX), 'the revision larger than the bound went whole');
    for (const n of sizes) assert.ok(n <= SYNC_DELIVERY_BYTES_MAX || n === SYNC_DELIVERY_BYTES_MAX + 11, `a delivery of ${n} bytes`);
    // Headers of cut deliveries promise only what they carried: here (every revision touches the
    // key) each is the revision of the delivery's last event.
    assert.deepEqual(sink.got.get(w)!.headers, sink.lastRevs);
  });

  it('one catch-up step hands over at most SYNC_STEP_BYTES_MAX plus one delivery', () => {
    const { store, ws, write } = setup();
    const sinks: FakeSink[] = [];
    const all: Watcher[] = [];
    for (let i = 0; i < 20; i++) {
      const sink = new FakeSink();
      sinks.push(sink);
      all.push(ws.watch('0', b('k'), undefined, 1, 0, sink));
    }
    for (let i = 0; i < 1000; i++) write((st) => put(st, 'k', 'v'.repeat(1024)));
    let before = 0;
    let steps = 0;
    while (ws.syncStep()) {
      assert.ok(++steps < 10_000, 'catch-up did not converge');
      const total = sinks.reduce((n, sk) => n + sk.deliveryBytes.reduce((a, c) => a + c, 0), 0);
      assert.ok(total - before <= SYNC_STEP_BYTES_MAX + SYNC_DELIVERY_BYTES_MAX, `a step handed over ${total - before} bytes`);
      before = total;
    }
    all.forEach((w, i) => assert.deepEqual(sinks[i].events(w), expected(store, w, 1)));
  });

  it('counts watchers moved to catch-up by a full sink, and watchers cancelled by compaction', () => {
    const { store, ws, write } = setup();
    const sink = new FakeSink();
    const w1 = ws.watch('0', b('a'), undefined, 0, 0, sink);
    ws.watch('1', b('b'), undefined, 0, 0, sink);
    sink.ready = false;
    write((st) => put(st, 'a', '1'));
    write((st) => put(st, 'b', '1'));
    assert.equal(ws.slowWatcherMoves, 2);
    write((st) => put(st, 'a', '2'));
    assert.equal(ws.slowWatcherMoves, 2, 'a watcher already catching up is not counted again');
    store.compact(store.currentRevision);
    sink.ready = true;
    drain(ws);
    assert.equal(ws.compactedWatchers, 2);
    assert.equal(sink.compactedAt.get(w1), store.currentRevision);
    assert.equal(sink.got.size, 0, 'no event was handed over past the compaction: the answer is the cancel');
  });

  it('revisionsWithin takes whole revisions up to the bound, at least one', () => {
    const ev = (rev: number, size: number): Event => ({ type: EventType.PUT, kv: { key: 'k', value: 'v'.repeat(size - 1), createRevision: 1, modRevision: rev, version: 1, lease: 0n }, prevKv: undefined });
    const evs = [ev(1, 10), ev(2, 10), ev(2, 10), ev(3, 10)];
    assert.deepEqual(revisionsWithin(evs, 100, false), { count: 4, bytes: 40 });
    assert.deepEqual(revisionsWithin(evs, 25, false), { count: 1, bytes: 10 });
    assert.deepEqual(revisionsWithin(evs, 30, false), { count: 3, bytes: 30 });
    assert.deepEqual(revisionsWithin(evs, 5, false), { count: 1, bytes: 10 });
  });
});
