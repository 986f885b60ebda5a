// A put over a key whose value has left the heap (mvcc/spill.ts) reads that previous value back
// only when something needs it: the Put's prev_kv or ignore_value, or a synced watcher with
// prev_kv (issue 17/20, the scale benchmark's overwrite: two synchronous spill-file reads of the
// old 4 KiB value per put on the apply path, for nobody). What needs it still gets it, exactly.
// A DeleteRange likewise: deleting a prefix of spilled values read every one of them back (50k
// values of 4 KiB: ~1.9 s of apply on the event loop), now only for its prev_kv or a watcher's.
import { strict as assert } from 'node:assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { EventType, MvccStore, NO_LEASE, WatchableStore, WatchFlags, type Bytes, type Event, type LeaseId, type SpillRef, type ValueSpill, type WatchSink, type Watcher } from '../../src/mvcc';
import { applyCheckedPut, applyDeleteRange, applyTxn, type LeaseAttachments } from '../../src/server/kv_ops';
import { SpillFile } from '../../src/storage/spill_file';
import type { PutRequest } from '../../src/proto/types';

/** A SpillFile that counts the calls that read values back. */
class CountingSpill implements ValueSpill {
  reads = 0;
  constructor(private readonly f: SpillFile) {}
  append(values: readonly Bytes[]): SpillRef[] | undefined {
    return this.f.append(values);
  }
  appendBytes(values: readonly Uint8Array[]): SpillRef[] | undefined {
    return this.f.appendBytes(values);
  }
  get fileBytes(): number {
    return this.f.fileBytes;
  }
  get liveBytes(): number {
    return this.f.liveBytes;
  }
  get writable(): boolean {
    return this.f.writable;
  }
  read(ref: SpillRef): Bytes {
    this.reads++;
    return this.f.read(ref);
  }
  readMany(refs: readonly SpillRef[]): Bytes[] {
    this.reads++;
    return this.f.readMany(refs);
  }
  forEachValue(refs: readonly SpillRef[], fn: (i: number, buf: Buffer, off: number, len: number) => void): void {
    this.reads++;
    this.f.forEachValue(refs, fn);
  }
  release(ref: SpillRef, length: number): void {
    this.f.release(ref, length);
  }
  releaseMany(refs: readonly SpillRef[]): number {
    return this.f.releaseMany(refs);
  }
  get rewriteDue(): boolean {
    return this.f.rewriteDue;
  }
  beginRewrite(): void {
    this.f.beginRewrite();
  }
  get rewriting(): 0 | 1 | undefined {
    return this.f.rewriting;
  }
  finishRewrite(): void {
    this.f.finishRewrite();
  }
  reset(): void {
    this.f.reset();
  }
  close(): void {
    this.f.close();
  }
}

class Sink implements WatchSink {
  ready = true;
  readonly events: Event[] = [];
  deliver(_w: Watcher, events: Event[]): void {
    this.events.push(...events);
  }
  compacted(): void {
    assert.fail('no compaction in these tests');
  }
}

/** Records lease attach/detach calls; leases 1..9 exist. */
class Leases implements LeaseAttachments {
  readonly calls: string[] = [];
  exists(id: LeaseId): boolean {
    return id >= 1n && id <= 9n;
  }
  attach(id: LeaseId, key: Buffer | string): void {
    this.calls.push(`attach ${id} ${key.toString()}`);
  }
  detach(id: LeaseId, key: Buffer | string): void {
    this.calls.push(`detach ${id} ${key.toString()}`);
  }
}

const VALUE_BYTES = 4096;
const valueOf = (i: number) => Buffer.alloc(VALUE_BYTES, 97 + (i % 26));

describe('a put or a delete over a spilled value', () => {
  let dir: string;
  let spill: CountingSpill;
  let store: MvccStore;
  let ws: WatchableStore;
  let leases: Leases;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkv-put-prev-'));
    spill = new CountingSpill(SpillFile.open(path.join(dir, 'spill')));
    store = new MvccStore();
    store.attachSpill(spill, VALUE_BYTES); // one value stays in the heap
    ws = new WatchableStore(store);
    leases = new Leases();
  });
  afterEach(() => {
    spill.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** One Put through the apply path's KV op, its events handed to the watchers as the applier does. */
  function putReq(key: string, value: Buffer, more: Partial<PutRequest> = {}): ReturnType<typeof applyCheckedPut> {
    const txn = store.write();
    const res = applyCheckedPut(txn, { key: Buffer.from(key), value, lease: 0, prev_kv: false, ignore_value: false, ignore_lease: false, ...more }, leases);
    const r = txn.end();
    if (r.events.length > 0) ws.notify(r.events, r.revision);
    return res;
  }

  /** Writes k0..k4, then spills every value the budget does not keep. */
  function loadSpilled(): void {
    for (let i = 0; i < 5; i++) putReq(`k${i}`, valueOf(i), i === 0 ? { lease: 3 } : {});
    while (store.spillStep()) {
      // older values leave the heap
    }
    assert.ok(store.spillBytes.live >= 4 * VALUE_BYTES, 'k0..k3 are spilled');
    spill.reads = 0;
    leases.calls.length = 0;
  }

  it('without prev_kv, ignore_value or a prev_kv watcher: no read of the old value', () => {
    loadSpilled();
    const plain = new Sink();
    const w = ws.watch('1', Buffer.from('k'), Buffer.from('l'), 0, 0, plain); // no PREV_KV
    for (let i = 1; i < 4; i++) assert.deepEqual(putReq(`k${i}`, valueOf(i + 10)), { prev_kv: null });
    assert.equal(spill.reads, 0, 'no spill read for overwrites nobody asked the old value of');
    assert.deepEqual(plain.events.map((e) => [e.kv.key, e.kv.value.length, e.prevKv]), [
      ['k1', VALUE_BYTES, undefined],
      ['k2', VALUE_BYTES, undefined],
      ['k3', VALUE_BYTES, undefined],
    ]);
    // The lease bookkeeping still sees the old version: k0's lease 3 is detached by a put without one.
    putReq('k0', valueOf(20));
    assert.equal(spill.reads, 0);
    assert.deepEqual(leases.calls, ['detach 3 k0']);
    // The new values are what a read returns (and reading them is what reads the spill now).
    assert.deepEqual(store.range(Buffer.from('k1'), undefined).kvs[0]!.value, valueOf(11).toString('latin1'));
    ws.cancel(w);
  });

  it('prev_kv in the Put, and ignore_value, still get the old bytes', () => {
    loadSpilled();
    const res = putReq('k1', valueOf(30), { prev_kv: true });
    assert.ok(!(res instanceof Error));
    assert.equal(Buffer.from(res.prev_kv!.value).toString('latin1'), valueOf(1).toString('latin1'));
    assert.equal(res.prev_kv!.version, 1);
    assert.ok(spill.reads > 0);
    // ignore_value: the new version keeps k2's spilled value.
    putReq('k2', Buffer.alloc(0), { ignore_value: true });
    assert.equal(store.range(Buffer.from('k2'), undefined).kvs[0]!.value, valueOf(2).toString('latin1'));
    assert.equal(store.range(Buffer.from('k2'), undefined).kvs[0]!.version, 2);
    // ignore_lease on k0 keeps lease 3 without reading k0's value.
    spill.reads = 0;
    putReq('k0', valueOf(31), { ignore_lease: true });
    assert.equal(spill.reads, 0);
    assert.equal(store.range(Buffer.from('k0'), undefined).kvs[0]!.lease, 3n);
    // ignore_value on a missing key still fails, without a read.
    assert.equal((putReq('nope', Buffer.alloc(0), { ignore_value: true }) as Error).message, 'etcdserver: key not found');
    assert.equal(spill.reads, 0);
  });

  it('a Txn put with prev_kv gets the old bytes too', () => {
    loadSpilled();
    const txn = store.write();
    const res = applyTxn(txn, { compare: [], success: [{ request_put: { key: Buffer.from('k3'), value: valueOf(40), lease: 0, prev_kv: true, ignore_value: false, ignore_lease: false } }], failure: [] }, leases);
    txn.end();
    assert.ok(!(res instanceof Error));
    const put = res.responses[0]!.response_put!;
    assert.equal(Buffer.from(put.prev_kv!.value).toString('latin1'), valueOf(3).toString('latin1'));
  });

  it('a synced watcher with prev_kv gets the old value, exactly while it is there', () => {
    loadSpilled();
    const sink = new Sink();
    const w = ws.watch('1', Buffer.from('k'), Buffer.from('l'), 0, WatchFlags.PREV_KV, sink);
    putReq('k1', valueOf(50));
    assert.ok(spill.reads > 0, 'the old value is read for the watcher');
    assert.equal(sink.events.length, 1);
    assert.equal(sink.events[0]!.prevKv!.value, valueOf(1).toString('latin1'));
    assert.equal(sink.events[0]!.prevKv!.modRevision, 3);
    ws.cancel(w);
    spill.reads = 0;
    putReq('k2', valueOf(51));
    assert.equal(spill.reads, 0, 'no read once the prev_kv watcher is gone');
  });

  it('a prev_kv watcher catching up from the history gets prev values of puts made while none was synced', () => {
    loadSpilled();
    const from = store.currentRevision + 1;
    putReq('k1', valueOf(60)); // no watcher: the event leaves prevKv out
    putReq('k1', valueOf(61));
    assert.equal(spill.reads, 0);
    const sink = new Sink();
    const w = ws.watch('1', Buffer.from('k1'), undefined, from, WatchFlags.PREV_KV, sink);
    while (ws.syncStep()) {
      // catch up
    }
    assert.ok(w.synced);
    assert.deepEqual(
      sink.events.map((e) => [e.type, e.kv.modRevision, e.prevKv?.value.charCodeAt(0), e.prevKv?.modRevision]),
      [
        [EventType.PUT, from, 97 + 1, 3],
        [EventType.PUT, from + 1, 97 + (60 % 26), from],
      ],
    );
    // Now synced with PREV_KV: the next put carries its prev value.
    putReq('k1', valueOf(62));
    assert.equal(sink.events[2]!.prevKv!.value, valueOf(61).toString('latin1'));
  });

  it('a store without a watch layer keeps prevKv on every put event', () => {
    const bare = new MvccStore();
    const spill2 = new CountingSpill(SpillFile.open(path.join(dir, 'spill2')));
    bare.attachSpill(spill2, VALUE_BYTES);
    try {
      for (let i = 0; i < 3; i++) {
        const t = bare.write();
        t.put(Buffer.from(`k${i}`), valueOf(i), NO_LEASE);
        t.end();
      }
      while (bare.spillStep()) {
        // spill
      }
      const t = bare.write();
      const ev = t.put(Buffer.from('k0'), valueOf(9), NO_LEASE);
      t.end();
      assert.equal(ev.prevKv!.value, valueOf(0).toString('latin1'));
    } finally {
      spill2.close();
    }
  });

  /** One DeleteRange through the apply path's KV op, its events handed to the watchers. */
  function deleteReq(key: string, rangeEnd: string | undefined, prevKv: boolean): ReturnType<typeof applyDeleteRange> {
    const txn = store.write();
    const res = applyDeleteRange(txn, { key: Buffer.from(key), range_end: rangeEnd === undefined ? Buffer.alloc(0) : Buffer.from(rangeEnd), prev_kv: prevKv }, leases);
    const r = txn.end();
    if (r.events.length > 0) ws.notify(r.events, r.revision);
    return res;
  }

  it('a DeleteRange without prev_kv or a prev_kv watcher reads none of the deleted values', () => {
    loadSpilled();
    const plain = new Sink();
    const w = ws.watch('1', Buffer.from('k'), Buffer.from('l'), 0, 0, plain);
    const res = deleteReq('k', 'l', false);
    assert.equal(res.deleted, 5);
    assert.deepEqual(res.prev_kvs, []);
    assert.equal(spill.reads, 0, 'deleting spilled values reads none of them back');
    assert.deepEqual(leases.calls, ['detach 3 k0'], 'the lease of a deleted key is still detached');
    assert.deepEqual(
      plain.events.map((e) => [e.type, e.kv.key, e.prevKv]),
      [0, 1, 2, 3, 4].map((i) => [EventType.DELETE, `k${i}`, undefined]),
    );
    assert.equal(store.range(Buffer.from('k'), Buffer.from('l')).kvs.length, 0);
    ws.cancel(w);
  });

  it('a DeleteRange with prev_kv gets every deleted value, spilled or not', () => {
    loadSpilled();
    const res = deleteReq('k', 'l', true);
    assert.equal(res.deleted, 5);
    assert.deepEqual(
      res.prev_kvs.map((kv) => [Buffer.from(kv.key).toString(), Buffer.from(kv.value).toString('latin1')]),
      [0, 1, 2, 3, 4].map((i) => [`k${i}`, valueOf(i).toString('latin1')]),
    );
    assert.ok(spill.reads > 0);
  });

  it('a synced prev_kv watcher gets the deleted values in its DELETE events', () => {
    loadSpilled();
    const sink = new Sink();
    const w = ws.watch('1', Buffer.from('k'), Buffer.from('l'), 0, WatchFlags.PREV_KV, sink);
    deleteReq('k1', 'k3', false);
    assert.deepEqual(
      sink.events.map((e) => [e.type, e.kv.key, e.prevKv?.value]),
      [
        [EventType.DELETE, 'k1', valueOf(1).toString('latin1')],
        [EventType.DELETE, 'k2', valueOf(2).toString('latin1')],
      ],
    );
    ws.cancel(w);
  });
});
