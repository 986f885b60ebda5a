// Slow watchers cannot exhaust memory (etcd #16839): the watch service's per-stream and member-wide
// bounds on buffered response bytes, checked on fake calls whose client reads (or not) at will.
// A stream over a bound holds no more than its bound plus one response; its watchers resume from
// their next revision once its client reads (every event, in order, exactly once), or get etcd's
// compaction answer if that revision was compacted meanwhile; a client that reads keeps getting
// each event as it is applied, however much the others hold.
import assert from 'node:assert/strict';
import { CONVERSION, protoRoot } from '../../src/proto';
import { MvccStore, WatchableStore, SYNC_DELIVERY_BYTES_MAX } from '../../src/mvcc';
import { STREAM_BYTES_FREE_MAX, WatchHub, WatchStream } from '../../src/api/watch_service';
import type { Server } from '../../src/server/server';
import type { BidiCall } from '../../src/api/call';
import type { WatchResponse } from '../../src/proto/types';
import { put } from '../mvcc/helpers';

const WatchResponsePb = protoRoot().lookupType('etcdserverpb.WatchResponse');
/** What the transport counts per queued message on top of its bytes (h2_conn). */
const OVERHEAD_BYTES = 96;

interface Got {
  watch_id: string;
  created?: boolean;
  canceled?: boolean;
  compact_revision?: string;
  events?: { kv: { key: Buffer; mod_revision: string } }[];
}

/** A call whose client reads only when told: what it holds is counted as the transport would. */
class FakeCall {
  queuedBytes = 0;
  private queue: Got[] = [];
  readonly received: Got[] = [];
  listener: WatchStream | undefined;
  cancelled = false;
  metadata(): undefined {
    return undefined;
  }
  fail(): void {
    throw new Error('the watch stream failed');
  }
  onAbandoned(): void {}
  end(): void {}
  write(m: WatchResponse): boolean {
    const b = Buffer.from(WatchResponsePb.encode(WatchResponsePb.fromObject(m)).finish());
    return this.writeEncoded(b);
  }
  writeEncoded(b: Uint8Array): boolean {
    this.queue.push(WatchResponsePb.toObject(WatchResponsePb.decode(b), CONVERSION) as Got);
    this.queuedBytes += b.length + OVERHEAD_BYTES;
    return true; // the transport's own mark is out of the picture: the bounds under test act alone
  }
  /** The client reads everything queued. */
  read(): void {
    this.received.push(...this.queue);
    this.queue = [];
    this.queuedBytes = 0;
  }
}

const fakeServer = (store: MvccStore) =>
  ({
    auth: { enabled: false },
    raftTerm: 1,
    header: (rev = store.currentRevision) => ({ cluster_id: '1', member_id: '2', revision: rev, raft_term: 1 }),
  }) as unknown as Server;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await sleep(5);
  }
}

function setup(streamBufferBytesMax: number, bufferBytesMax: number) {
  const store = new MvccStore();
  const watchable = new WatchableStore(store);
  const hub = new WatchHub(fakeServer(store), watchable, { progressNotifyIntervalMs: 600_000, maxRequestBytes: 1.5 * 1024 * 1024, streamBufferBytesMax, bufferBytesMax });
  const open = () => {
    const call = new FakeCall();
    const s = new WatchStream(hub, call as unknown as BidiCall<WatchResponse>);
    call.listener = s;
    return { call, s };
  };
  const write = (key: string, size: number) => {
    const r = put(store, key, Buffer.alloc(size, 0x61));
    watchable.notify(r.events, r.revision);
  };
  const create = (s: WatchStream, key: string, rangeEnd = '') =>
    s.message({ request_union: 'create_request', create_request: { key: Buffer.from(key), range_end: Buffer.from(rangeEnd), start_revision: 0, watch_id: 0, filters: [], prev_kv: false, progress_notify: false, fragment: false } } as never);
  return { store, watchable, hub, open, write, create };
}

/** Every event a watcher id was handed, as "key@rev", after its created answer. */
function eventsOf(got: Got[], id: string): string[] {
  const out: string[] = [];
  for (const g of got) if (String(g.watch_id) === id) for (const e of g.events ?? []) out.push(`${e.kv.key.toString()}@${e.kv.mod_revision}`);
  return out;
}

describe('watch service: bounded buffers for slow watchers', () => {
  it('a stream whose client does not read holds at most its bound plus one response; on reading, every watcher gets every event in order', async () => {
    const STREAM_MAX = 64 * 1024;
    const { hub, open, write, create, watchable, store } = setup(STREAM_MAX, 1024 * 1024);
    try {
      const { call, s } = open();
      for (let i = 0; i < 20; i++) create(s, 'p/', 'p0');
      const first = store.currentRevision + 1;
      let most = 0;
      for (let i = 0; i < 300; i++) {
        write(`p/${i % 13}`, 1024);
        most = Math.max(most, call.queuedBytes);
        if (i % 50 === 0) while (watchable.syncStep());
      }
      // One response past the bound at most (a live one: one event; a catch-up one: <= 1 MiB).
      assert.ok(most <= STREAM_MAX + 2 * 1024 + OVERHEAD_BYTES, `the slow stream held ${most} bytes`);
      assert.ok(watchable.slowWatcherMoves >= 20, `${watchable.slowWatcherMoves} watchers moved to catch-up`);
      assert.ok(hub.streamsOverBound >= 1);
      // The client reads again, as slowly as it likes: each read lets the stream take more.
      await until(() => {
        call.read();
        return watchable.unsyncedWatchers === 0;
      }, 'the slow stream caught up');
      call.read();
      const want: string[] = [];
      for (const e of store.eventsBetween(first, store.currentRevision).events) want.push(`${e.kv.key}@${e.kv.modRevision}`);
      assert.equal(want.length, 300);
      for (let id = 0; id < 20; id++) assert.deepEqual(eventsOf(call.received, String(id)), want, `watcher ${id}`);
    } finally {
      hub.close();
    }
  });

  it('over the member-wide bound, the streams that hold bytes wait and a client that reads keeps real-time delivery', async () => {
    const STREAM_MAX = 256 * 1024;
    const TOTAL_MAX = 512 * 1024;
    const { hub, open, write, create, watchable } = setup(STREAM_MAX, TOTAL_MAX);
    try {
      const slow = Array.from({ length: 8 }, () => open());
      for (const { s } of slow) for (let i = 0; i < 5; i++) create(s, 'k/', 'k0');
      const fast = open();
      create(fast.s, 'k/', 'k0');
      fast.call.read();
      let most = 0;
      for (let i = 0; i < 1000; i++) {
        write(`k/${i % 7}`, 1024);
        // The fast watcher has the event at once, not through catch-up.
        assert.equal(eventsOf([...fast.call.received, ...peek(fast.call)], '0').length, i + 1, `fast watcher at put ${i}`);
        fast.call.read();
        most = Math.max(most, hub.bufferedBytes);
        while (watchable.syncStep());
      }
      const perStreamSlack = STREAM_BYTES_FREE_MAX + 2 * 1024 + OVERHEAD_BYTES;
      assert.ok(most <= TOTAL_MAX + slow.length * perStreamSlack, `all streams held ${most} bytes`);
      for (const { call } of slow) assert.ok(call.queuedBytes <= STREAM_MAX + SYNC_DELIVERY_BYTES_MAX);
      assert.ok(hub.streamsOverBound >= slow.length);
      // They read: everything arrives, in order.
      await until(() => {
        for (const { call } of slow) call.read();
        return watchable.unsyncedWatchers === 0;
      }, 'the slow streams caught up');
      for (const { call } of slow) {
        call.read();
        for (let id = 0; id < 5; id++) assert.equal(eventsOf(call.received, String(id)).length, 1000);
      }
      // The gauge follows within a sweep.
      await until(() => hub.bufferedBytes === 0, `the gauge back to 0 (${hub.bufferedBytes})`, 1000);
    } finally {
      hub.close();
    }
  });

  it('a slow stream whose next revision was compacted meanwhile gets the compaction answer, never a gap', async () => {
    const { hub, open, write, create, watchable, store } = setup(32 * 1024, 1024 * 1024);
    try {
      const { call, s } = open();
      for (let i = 0; i < 10; i++) create(s, 'c/', 'c0');
      for (let i = 0; i < 200; i++) write(`c/${i % 3}`, 1024);
      assert.ok(watchable.unsyncedWatchers > 0, 'the stream fell behind');
      store.compact(store.currentRevision - 5);
      await until(() => {
        call.read();
        return watchable.unsyncedWatchers === 0 && watchable.syncedWatchers === 0;
      }, 'every watcher answered');
      call.read();
      for (let id = 0; id < 10; id++) {
        const mine = call.received.filter((g) => String(g.watch_id) === String(id));
        const cancel = mine.filter((g) => g.canceled);
        assert.equal(cancel.length, 1, `watcher ${id}: one cancel`);
        assert.equal(Number(cancel[0].compact_revision), store.compactRevision);
        assert.ok(mine[mine.length - 1].canceled, 'nothing after the cancel');
        // What came before it is a gap-free prefix from the watch's start.
        const got = eventsOf(mine, String(id)).map((e) => Number(e.split('@')[1]));
        got.forEach((r, i) => assert.equal(r, got[0] + i));
      }
      assert.equal(watchable.compactedWatchers, 10);
    } finally {
      hub.close();
    }
  });
});

/** The responses queued but not yet read (a client that reads as they come). */
function peek(call: FakeCall): Got[] {
  return (call as unknown as { queue: Got[] }).queue;
}
