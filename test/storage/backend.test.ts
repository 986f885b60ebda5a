// The LevelDB backend holds exactly "the state after entry N": reloading it gives the same store
// (ranges, history, hash) and the applied index it was committed with; physical compaction only
// removes what the store no longer retains.
import assert from 'node:assert/strict';
import { ClassicLevel } from 'classic-level';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MvccStore, SPILL_BYTES_PER_STEP } from '../../src/mvcc';
import { SpillFile } from '../../src/storage/spill_file';
import { BATCH_INTERVAL_MS, Backend, KvRecordLoader, decodeKv, encodeKv, kvRecordKey } from '../../src/storage/backend/backend';
import { decodeLease, encodeLease, leaseIdOfKey, leaseKey } from '../../src/storage/backend/records';
import { commitRecordKey, commitStateMetaRecords, decodeCommitRecord, isCommitRecordKey } from '../../src/storage/backend/commit_record';

const B = (s: string) => Buffer.from(s);

function tmp(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'quorumkv-backend-'));
}

async function writeSome(store: MvccStore, backend: Backend, n: number, startIndex: number): Promise<number> {
  let index = startIndex;
  const commits: Promise<void>[] = [];
  for (let i = 0; i < n; i++) {
    const txn = store.write();
    if (i % 9 === 4) txn.deleteRange(B(`k${(i * 7) % 13}`), undefined);
    else {
      txn.put(B(`k${i % 13}`), B(`v${i}`), BigInt(i % 3));
      if (i % 5 === 0) txn.put(B(`z${i}`), Buffer.from([0, 255, i & 255]), 0n);
    }
    const res = txn.end();
    if (res.events.length > 0) backend.stageEvents(res.events, res.revision);
    // As the server: a commit per applied batch, not awaited one by one.
    commits.push(backend.commit(++index, 3));
  }
  await Promise.all(commits);
  return index;
}

describe('LevelDB backend', function () {
  this.timeout(30_000);
  it('kv records round-trip, tombstones included', () => {
    const kv = { key: '\x00\x01\xff', createRevision: 5, modRevision: 9, version: 3, value: 'val', lease: -7n };
    assert.deepEqual(decodeKv(kvRecordKey(9, 2), encodeKv(kv)), kv);
    const tomb = { key: 't', createRevision: 0, modRevision: 10, version: 0, value: '', lease: 0n };
    assert.deepEqual(decodeKv(kvRecordKey(10, 0), encodeKv(tomb)), tomb);
  });

  it('kv records keep their layout: revisions and versions as big-endian u64 at every magnitude, the lease as i64', () => {
    for (const n of [0, 1, 255, 0xffffffff, 0x1_0000_0000, 0x1_2345_6789_abcd, Number.MAX_SAFE_INTEGER, 2 ** 60]) {
      const key = Buffer.alloc(13);
      key[0] = kvRecordKey(1, 0)[0]!;
      key.writeBigUInt64BE(BigInt(n), 1);
      key.writeUInt32BE(7, 9);
      assert.deepEqual(kvRecordKey(n, 7), key);
      for (const lease of [0n, 1n, -1n, 0x7fffffffffffffffn]) {
        const kv = { key: 'k', createRevision: n, modRevision: n, version: n, value: 'v', lease };
        const want = Buffer.alloc(30);
        want.writeBigUInt64BE(BigInt(n), 0);
        want.writeBigUInt64BE(BigInt(n), 8);
        want.writeBigInt64BE(lease, 16);
        want.writeUInt32BE(1, 24);
        want.write('kv', 28, 'latin1');
        assert.deepEqual(encodeKv(kv), want);
        assert.deepEqual(decodeKv(kvRecordKey(n, 0), want), kv);
      }
    }
    // A revision that is not a u64 is refused, as writeBigUInt64BE(BigInt(n)) refused it.
    assert.throws(() => kvRecordKey(-1, 0), RangeError);
    assert.throws(() => encodeKv({ key: 'k', createRevision: 1.5, modRevision: 2, version: 1, value: '', lease: 0n }), RangeError);
  });

  it('lease records round-trip (negative IDs included); a restart gives back what was staged', async () => {
    for (const id of [1n, -5n, 0x7fffffffffffffffn]) assert.equal(leaseIdOfKey(leaseKey(id)), id);
    const rec = { ttlSec: 60, remainingTtlSec: 17 };
    assert.deepEqual(decodeLease(encodeLease(rec)), rec);
    const dir = tmp();
    let backend = await Backend.open(dir);
    backend.stageLease(7n, rec);
    backend.stageLease(8n, { ttlSec: 5, remainingTtlSec: 0 });
    await backend.commit(1, 1);
    backend.stageLease(8n, undefined);
    await backend.commit(2, 1);
    await backend.close();
    backend = await Backend.open(dir);
    assert.deepEqual([...(await backend.load()).leases], [[7n, rec]]);
    await backend.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('reload gives the same store, history and applied index', async () => {
    const dir = tmp();
    const store = new MvccStore();
    let backend = await Backend.open(dir);
    const last = await writeSome(store, backend, 300, 0);
    await backend.close();
    backend = await Backend.open(dir);
    const loaded = await backend.load();
    assert.equal(loaded.appliedIndex, last);
    assert.equal(loaded.appliedTerm, 3);
    assert.equal(loaded.store.currentRevision, store.currentRevision);
    assert.deepEqual(loaded.store.hashKV(), store.hashKV());
    for (const rev of [2, 50, 151, store.currentRevision]) {
      assert.deepEqual(loaded.store.range(B('\0'), B('\0'), { revision: rev }), store.range(B('\0'), B('\0'), { revision: rev }));
    }
    assert.deepEqual(loaded.store.eventsBetween(1, store.currentRevision).events.length, store.eventsBetween(1, store.currentRevision).events.length);
    await backend.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a reload with a spill (older values spilled from their records as they load) gives the store a reload without one gives; the newest values stay in the heap', async () => {
    const dir = tmp();
    const store = new MvccStore();
    let backend = await Backend.open(dir);
    let index = 0;
    for (let i = 0; i < 400; i++) {
      const txn = store.write();
      if (i % 11 === 5) txn.deleteRange(B(`k${(i * 7) % 17}`), undefined); // tombstones
      // Values of 0..600 bytes (empty ones too), every byte value, leases on some.
      else txn.put(B(`k${i % 17}`), Buffer.alloc((i * 37) % 601, i & 255), BigInt(i % 3));
      const res = txn.end();
      if (res.events.length > 0) backend.stageEvents(res.events, res.revision);
      void backend.commit(++index, 3);
    }
    await backend.close();
    const expected = store.currentRevision;
    const loads: MvccStore[] = [];
    for (const hotValueBytes of [undefined, 0, 4096, 1 << 20]) {
      backend = await Backend.open(dir);
      const spillDir = path.join(dir, `spill-${hotValueBytes}`);
      const loaded = await backend.load(hotValueBytes === undefined ? undefined : { spill: SpillFile.open(spillDir), hotValueBytes });
      const s = loaded.store;
      assert.equal(s.currentRevision, expected);
      assert.equal(loaded.appliedIndex, index);
      if (hotValueBytes !== undefined) {
        const slackBytes = Math.min(SPILL_BYTES_PER_STEP, hotValueBytes / 4);
        assert.ok(s.heapValueBytes <= hotValueBytes + slackBytes, `heap values ${s.heapValueBytes} over ${hotValueBytes}`);
        if (hotValueBytes < 100_000) assert.ok(s.spillBytes.live > 0, 'nothing was spilled');
        else assert.equal(s.spillBytes.live, 0, 'spilled below the budget');
        if (hotValueBytes > 0 && hotValueBytes < 100_000) assert.ok(s.heapValueBytes > hotValueBytes / 2, `the newest values left the heap: ${s.heapValueBytes}`);
      }
      assert.deepEqual(s.hashKV(), store.hashKV());
      for (const rev of [2, 77, 200, 333, expected]) {
        assert.deepEqual(s.range(B('\0'), B('\0'), { revision: rev }), store.range(B('\0'), B('\0'), { revision: rev }), `range at ${rev}`);
      }
      assert.deepEqual(s.eventsBetween(1, expected).events, store.eventsBetween(1, expected).events);
      loads.push(s);
      await backend.close();
    }
    for (const s of loads) s.closeSpill();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('compaction survives a reload; physical compaction deletes only unreachable versions', async () => {
    const dir = tmp();
    const store = new MvccStore();
    let backend = await Backend.open(dir);
    let index = await writeSome(store, backend, 200, 0);
    const at = store.currentRevision - 40;
    store.compact(at);
    backend.stageCompaction(at);
    await backend.commit(++index, 3);
    const deleted = await backend.compactPhysical(store, at);
    assert.ok(deleted > 100, `deleted ${deleted}`);
    await backend.close();
    backend = await Backend.open(dir);
    const loaded = await backend.load();
    assert.equal(loaded.store.compactRevision, at);
    assert.deepEqual(loaded.store.hashKV(), store.hashKV());
    assert.deepEqual(loaded.store.range(B('\0'), B('\0'), { revision: at }), store.range(B('\0'), B('\0'), { revision: at }));
    await backend.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('commits are applied in the order issued, even when not awaited', async () => {
    const dir = tmp();
    const store = new MvccStore();
    let backend = await Backend.open(dir);
    const pending: Promise<void>[] = [];
    for (let i = 1; i <= 100; i++) {
      const txn = store.write();
      txn.put(B('same'), B(String(i)), 0n);
      const r = txn.end();
      backend.stageEvents(r.events, r.revision);
      pending.push(backend.commit(i, 1));
    }
    await Promise.all(pending);
    await backend.close();
    backend = await Backend.open(dir);
    const loaded = await backend.load();
    assert.equal(loaded.appliedIndex, 100);
    assert.equal(loaded.store.range(B('same'), undefined).kvs[0]!.value.toString(), '100');
    await backend.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

describe('backend commit groups (etcd batch interval)', function () {
  this.timeout(30_000);
  it('commits made within the interval go to LevelDB as one batch; a synced commit and close() write at once', async () => {
    const dir = tmp();
    const store = new MvccStore();
    const backend = await Backend.open(dir);
    let writes = 0;
    backend.onCommit = () => writes++;
    const t0 = Date.now();
    const pending: Promise<void>[] = [];
    for (let i = 1; i <= 20; i++) {
      const txn = store.write();
      txn.put(B(`k${i}`), B(String(i)), 0n);
      const r = txn.end();
      backend.stageEvents(r.events, r.revision);
      pending.push(backend.commit(i, 1));
    }
    assert.equal(writes, 0);
    await Promise.all(pending);
    assert.equal(writes, 1, 'twenty commits, one LevelDB write');
    assert.ok(Date.now() - t0 >= BATCH_INTERVAL_MS - 5, 'written when the interval ended');
    const txn = store.write();
    txn.put(B('synced'), B('x'), 0n);
    const r = txn.end();
    backend.stageEvents(r.events, r.revision);
    const t1 = Date.now();
    await backend.commit(21, 1, true);
    assert.equal(writes, 2);
    assert.ok(Date.now() - t1 < BATCH_INTERVAL_MS, 'a synced commit does not wait for the interval');
    const txn2 = store.write();
    txn2.put(B('at-close'), B('y'), 0n);
    const r2 = txn2.end();
    backend.stageEvents(r2.events, r2.revision);
    void backend.commit(22, 1);
    await backend.close();
    const again = await Backend.open(dir);
    const loaded = await again.load();
    assert.equal(loaded.appliedIndex, 22);
    assert.equal(loaded.store.range(B('at-close'), undefined).kvs[0]!.value.toString(), 'y');
    await again.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

describe('backend write queue (what Server.propose waits on)', function () {
  this.timeout(30_000);
  it('counts the bytes committed and not yet written; whenQueuedBelow resolves as writes complete', async () => {
    const dir = tmp();
    const store = new MvccStore();
    const backend = await Backend.open(dir);
    assert.equal(backend.queuedBytes, 0);
    const value = Buffer.alloc(4096, 'v');
    const commits: Promise<void>[] = [];
    for (let i = 1; i <= 10; i++) {
      const txn = store.write();
      txn.put(B(`k${i}`), value, 0n);
      const r = txn.end();
      backend.stageEvents(r.events, r.revision);
      commits.push(backend.commit(i, 1));
    }
    const queued = backend.queuedBytes;
    assert.ok(queued >= 10 * 4096 && queued < 10 * 4096 + 4096, `ten 4 KiB values and their keys and meta records: ${queued}`);
    let below = false;
    const drained = backend.whenQueuedBelow(4096).then(() => (below = true));
    await backend.whenQueuedBelow(queued + 1); // already below that: at once
    assert.equal(below, false, 'still queued: the group waits for its interval');
    await Promise.all(commits);
    await drained;
    assert.equal(backend.queuedBytes, 0, 'all written');
    await backend.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

describe('backend snapshots', function () {
  this.timeout(30_000);
  it('a snapshot restored into a new backend loads the same state at the same applied index', async () => {
    const { restoreSnapshotInto } = await import('../../src/storage/backend/snapshot');
    const dir = tmp();
    const store = new MvccStore();
    const backend = await Backend.open(path.join(dir, 'a'));
    const last = await writeSome(store, backend, 500, 10);
    const { meta, chunks } = await backend.openSnapshot();
    // Writes after the snapshot was opened are not in it.
    const txn = store.write();
    txn.put(B('after'), B('x'), 0n);
    const r = txn.end();
    backend.stageEvents(r.events, r.revision);
    await backend.commit(last + 1, 3);
    const collected: Buffer[] = [];
    for await (const c of chunks) collected.push(c);
    assert.equal(meta.appliedIndex, last);
    const restoredMeta = await restoreSnapshotInto(path.join(dir, 'b'), (async function* () {
      // re-chunk at odd sizes to exercise the parser's buffering
      const all = Buffer.concat(collected);
      for (let off = 0; off < all.length; off += 777) yield all.subarray(off, off + 777);
    })());
    assert.deepEqual(restoredMeta, meta);
    const b = await Backend.open(path.join(dir, 'b'));
    const loaded = await b.load();
    assert.equal(loaded.appliedIndex, last);
    assert.equal(loaded.store.range(B('after'), undefined).kvs.length, 0);
    const txn2 = loaded.store.write();
    txn2.put(B('after'), B('x'), 0n);
    txn2.end();
    assert.deepEqual(loaded.store.hashKV(), store.hashKV());
    await b.close();
    await backend.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('versions loaded while a snapshot is restored (loadImported) give the state, counts and compaction a load of the restored backend gives', async () => {
    const { restoreSnapshotInto } = await import('../../src/storage/backend/snapshot');
    const dir = tmp();
    const store = new MvccStore();
    const backend = await Backend.open(path.join(dir, 'a'));
    let last = await writeSome(store, backend, 400, 10);
    store.compact(store.currentRevision - 50);
    backend.stageCompaction(store.compactRevision);
    last = await writeSome(store, backend, 100, last);
    await backend.commit(last, 3, true);
    const { chunks } = await backend.openSnapshot();
    const loader = new KvRecordLoader();
    let batches = 0;
    await restoreSnapshotInto(path.join(dir, 'b'), chunks, undefined, (batch) => {
      batches++;
      loader.add(batch);
    });
    assert.ok(batches > 0);
    const streamed = await Backend.open(path.join(dir, 'b'));
    const imported = await streamed.loadImported(loader);
    await streamed.close();
    const again = await Backend.open(path.join(dir, 'b'));
    const loaded = await again.load();
    assert.equal(imported.appliedIndex, last);
    assert.equal(imported.store.currentRevision, store.currentRevision);
    assert.equal(imported.store.compactRevision, store.compactRevision);
    assert.deepEqual(imported.store.hashKV(), loaded.store.hashKV());
    assert.deepEqual(imported.store.hashKV(), store.hashKV());
    assert.equal(streamed.liveBytes, again.liveBytes);
    assert.deepEqual([...imported.leases.keys()], [...loaded.leases.keys()]);
    assert.throws(() => loader.add([]), /records after finish/);
    await again.close();
    await backend.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a corrupted or truncated snapshot is refused', async () => {
    const { restoreSnapshotInto } = await import('../../src/storage/backend/snapshot');
    const dir = tmp();
    const store = new MvccStore();
    const backend = await Backend.open(path.join(dir, 'a'));
    await writeSome(store, backend, 50, 0);
    const { chunks } = await backend.openSnapshot();
    const parts: Buffer[] = [];
    for await (const c of chunks) parts.push(c);
    const all = Buffer.concat(parts);
    await backend.close();
    const flipped = Buffer.from(all);
    flipped[100] ^= 0x01;
    await assert.rejects(restoreSnapshotInto(path.join(dir, 'c'), (async function* () { yield flipped; })()), /checksum mismatch|corrupt|count mismatch/);
    await assert.rejects(restoreSnapshotInto(path.join(dir, 'd'), (async function* () { yield all.subarray(0, all.length - 20); })()), /truncated/);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('the parsed records are batched to RECORD_BATCH_BYTES_MIN whatever the pieces (a 1 MiB cut of a chunk a bit over 1 MiB leaves a small piece), and stay valid when the caller reuses its piece', async () => {
    const { readSnapshotStream, snapshotHeader, encodeSnapshotRecords, snapshotTrailer, RECORD_BATCH_BYTES_MIN } = await import('../../src/storage/backend/snapshot');
    const sum = { count: 0n, crc: 0 };
    const records: [Buffer, Buffer][] = [];
    for (let i = 0; i < 1200; i++) records.push([kvRecordKey(i + 1, 0), Buffer.alloc(4096, i & 255)]);
    // The leader's chunks: one LevelDB read's records each (~1 MiB + one record), cut at 1 MiB.
    const chunks = [snapshotHeader({ appliedIndex: 7, appliedTerm: 2 })];
    for (let i = 0; i < records.length; i += 257) chunks.push(encodeSnapshotRecords(records.slice(i, i + 257), sum));
    chunks.push(snapshotTrailer(sum));
    const pieceBytes = 1024 * 1024;
    const pieces: Buffer[] = [];
    for (const c of chunks) for (let off = 0; off < c.length; off += pieceBytes) pieces.push(c.subarray(off, off + pieceBytes));
    assert.ok(pieces.some((p) => p.length < 64 * 1024 && p.length > 100), 'the input has small pieces between the large ones');
    // Each piece is handed over in one buffer that the caller overwrites after the parser had it.
    const scratch = Buffer.alloc(pieceBytes);
    const input = (async function* () {
      for (const p of pieces) {
        p.copy(scratch);
        yield scratch.subarray(0, p.length);
        scratch.fill(0xee);
      }
    })();
    const batches: [Buffer, Buffer][][] = [];
    let meta: { appliedIndex: number } | undefined;
    for await (const b of readSnapshotStream(input, (m) => (meta = m))) batches.push(b);
    assert.equal(meta?.appliedIndex, 7);
    const got = batches.flat();
    assert.equal(got.length, records.length);
    got.forEach(([k, v], i) => {
      assert.ok(k.equals(records[i]![0]) && v.equals(records[i]![1]), `record ${i} as sent`);
    });
    const bytes = (b: [Buffer, Buffer][]) => b.reduce((a, [k, v]) => a + k.length + v.length, 0);
    batches.slice(0, -1).forEach((b, i) => assert.ok(bytes(b) >= RECORD_BATCH_BYTES_MIN, `batch ${i} of ${bytes(b)} bytes`));
    assert.ok(batches.length <= Math.ceil((records.length * 4109) / RECORD_BATCH_BYTES_MIN), `${batches.length} batches for ${pieces.length} pieces`);
  });

  it('the stream is read in chunks of about 1 MiB (never the whole backend), restored in bounded batches, and a stream never read is released by close()', async () => {
    const { restoreSnapshotInto, SNAPSHOT_READ_BYTES_MAX } = await import('../../src/storage/backend/snapshot');
    const dir = tmp();
    const store = new MvccStore();
    const backend = await Backend.open(path.join(dir, 'a'));
    const valueBytes = 4096;
    let index = 0;
    for (let i = 0; i < 3000; i++) {
      const txn = store.write();
      txn.put(B(`big${String(i).padStart(5, '0')}`), Buffer.alloc(valueBytes, i & 255), 0n);
      const r = txn.end();
      backend.stageEvents(r.events, r.revision);
      if (i % 100 === 99) await backend.commit(++index, 2);
    }
    await backend.commit(++index, 2, true);
    // Opened and dropped without reading: close() releases the LevelDB snapshot.
    const unread = await backend.openSnapshot();
    await unread.close();
    const { chunks, close } = await backend.openSnapshot();
    const sizes: number[] = [];
    const restored = await restoreSnapshotInto(path.join(dir, 'b'), (async function* () {
      for await (const c of chunks) {
        sizes.push(c.length);
        yield c;
      }
    })());
    await close(); // idempotent after the stream's own release
    assert.equal(restored.appliedIndex, index);
    const total = sizes.reduce((a, x) => a + x, 0);
    assert.ok(total > 12_000_000, `stream of ${total} bytes`);
    const recordMax = 8 + 13 + 28 + 8 + valueBytes;
    assert.ok(sizes.every((n) => n <= SNAPSHOT_READ_BYTES_MAX + recordMax), `largest chunk ${Math.max(...sizes)}`);
    assert.ok(sizes.length >= 12 && sizes.length < 40, `${sizes.length} chunks for ${total} bytes (neither whole nor tiny)`);
    const b = await Backend.open(path.join(dir, 'b'));
    const loaded = await b.load();
    assert.deepEqual(loaded.store.hashKV(), store.hashKV());
    await b.close();
    await backend.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

/** One put as the apply path makes it: a write txn on `store`, its events staged in `backend`
 *  (committed by the caller). Returns its revision. */
function stagePut(store: MvccStore, backend: Backend, key: Buffer, value: Buffer): number {
  const txn = store.write();
  txn.put(key, value, 0n);
  const r = txn.end();
  backend.stageEvents(r.events, r.revision);
  return r.revision;
}

describe('backend commit records (commit_record.ts)', function () {
  this.timeout(60_000);

  /** Every record of the LevelDB database at `dir` (the backend closed). */
  async function allRecords(dir: string): Promise<[Buffer, Buffer][]> {
    const db = new ClassicLevel<Buffer, Buffer>(dir, { keyEncoding: 'buffer', valueEncoding: 'buffer' });
    await db.open();
    try {
      return await db.iterator().all();
    } finally {
      await db.close();
    }
  }

  it('a commit writes its state as one record after its revision, never as meta records; a reload reads it', async () => {
    const dir = tmp();
    const store = new MvccStore();
    let backend = await Backend.open(dir);
    const last = await writeSome(store, backend, 120, 40);
    await backend.close();
    const records = await allRecords(dir);
    const metaNames = records.filter(([k]) => k[0] === 0x6d).map(([k]) => k.subarray(1).toString());
    for (const name of ['applied_index', 'applied_term', 'current_revision', 'allocated_bytes']) assert.ok(!metaNames.includes(name), `no meta record ${name}`);
    const kvNs = records.filter(([k]) => k[0] === 0x6b);
    const newest = kvNs[kvNs.length - 1]!;
    assert.ok(isCommitRecordKey(newest[0]), 'the last record of the version namespace is a commit record');
    assert.deepEqual(newest[0], commitRecordKey(store.currentRevision));
    const state = decodeCommitRecord(newest[1]);
    assert.equal(state.appliedIndex, last);
    assert.equal(state.appliedTerm, 3);
    assert.equal(state.currentRevision, store.currentRevision);
    assert.ok(state.allocatedBytes > 0);
    // Every commit record sits after the versions of its revision.
    for (let i = 0; i < kvNs.length; i++) {
      if (!isCommitRecordKey(kvNs[i]![0])) continue;
      const rev = Number(kvNs[i]![0].readBigUInt64BE(1));
      for (let j = i + 1; j < kvNs.length; j++) if (!isCommitRecordKey(kvNs[j]![0])) assert.ok(Number(kvNs[j]![0].readBigUInt64BE(1)) > rev);
    }
    backend = await Backend.open(dir);
    const loaded = await backend.load();
    assert.equal(loaded.appliedIndex, last);
    assert.equal(loaded.store.currentRevision, store.currentRevision);
    assert.equal(backend.allocatedBytes, state.allocatedBytes);
    assert.deepEqual(loaded.store.hashKV(), store.hashKV());
    // A commit that makes no revision rewrites the record at the same key.
    await backend.commit(last + 1, 4);
    await backend.close();
    const after = (await allRecords(dir)).filter(([k]) => isCommitRecordKey(k));
    assert.deepEqual(after[after.length - 1]![0], commitRecordKey(store.currentRevision));
    assert.equal(decodeCommitRecord(after[after.length - 1]![1]).appliedIndex, last + 1);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a backend written before commit records existed (meta records only) loads, and its next commit takes over', async () => {
    const dir = tmp();
    const store = new MvccStore();
    let backend = await Backend.open(dir);
    const last = await writeSome(store, backend, 60, 0);
    await backend.close();
    // Rewrite the database into the old layout: no commit record, the state in meta records.
    const db = new ClassicLevel<Buffer, Buffer>(dir, { keyEncoding: 'buffer', valueEncoding: 'buffer' });
    await db.open();
    const commitKeys = (await db.keys({ gte: Buffer.from([0x6b]), lt: Buffer.from([0x6c]) }).all()).filter(isCommitRecordKey);
    assert.ok(commitKeys.length > 0);
    const newest = decodeCommitRecord((await db.get(commitKeys[commitKeys.length - 1]!))!);
    const batch = db.batch();
    for (const k of commitKeys) batch.del(k);
    for (const [k, v] of commitStateMetaRecords(newest)) batch.put(k, v);
    await batch.write();
    await db.close();
    backend = await Backend.open(dir);
    let loaded = await backend.load();
    assert.equal(loaded.appliedIndex, last);
    assert.equal(loaded.store.currentRevision, store.currentRevision);
    assert.deepEqual(loaded.store.hashKV(), store.hashKV());
    const newRev = stagePut(loaded.store, backend, B('new'), B('v'));
    await backend.commit(last + 1, 5);
    await backend.close();
    backend = await Backend.open(dir);
    loaded = await backend.load();
    assert.equal(loaded.appliedIndex, last + 1, 'the commit record wins over the older meta records');
    assert.equal(loaded.appliedTerm, 5);
    assert.equal(loaded.store.currentRevision, newRev);
    await backend.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('physical compaction deletes the stale commit records below its revision and keeps the newest', async () => {
    const dir = tmp();
    const store = new MvccStore();
    let backend = await Backend.open(dir);
    let index = 0;
    for (let i = 0; i < 30; i++) {
      stagePut(store, backend, B(`k${i % 4}`), B(`v${i}`));
      await backend.commit(++index, 1, true); // one batch, so one commit record, per revision
    }
    const compactAt = store.currentRevision - 5;
    store.compact(compactAt);
    backend.stageCompaction(compactAt);
    await backend.commit(++index, 1);
    await backend.compactPhysical(store, compactAt);
    await backend.close();
    const commits = (await allRecords(dir)).filter(([k]) => isCommitRecordKey(k)).map(([k]) => Number(k.readBigUInt64BE(1)));
    assert.ok(commits.every((rev) => rev >= compactAt), `commit records left: ${commits.join(',')}`);
    assert.equal(commits[commits.length - 1], store.currentRevision);
    backend = await Backend.open(dir);
    const loaded = await backend.load();
    assert.equal(loaded.appliedIndex, index);
    assert.deepEqual(loaded.store.hashKV(), store.hashKV());
    await backend.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a snapshot stream carries the state as meta records and no commit record', async () => {
    const { restoreSnapshotInto } = await import('../../src/storage/backend/snapshot');
    const dir = tmp();
    const store = new MvccStore();
    const backend = await Backend.open(path.join(dir, 'a'));
    const last = await writeSome(store, backend, 200, 7);
    const { records, close } = await backend.openSnapshotRecords();
    const seen: [Buffer, Buffer][] = [];
    for await (const batch of records) seen.push(...batch);
    await close();
    assert.ok(!seen.some(([k]) => isCommitRecordKey(k)));
    const meta = new Map(seen.filter(([k]) => k[0] === 0x6d).map(([k, v]) => [k.subarray(1).toString(), Number(v.readBigUInt64BE(0))]));
    assert.equal(meta.get('applied_index'), last);
    assert.equal(meta.get('current_revision'), store.currentRevision);
    assert.equal(meta.get('allocated_bytes'), backend.allocatedBytes);
    const { chunks } = await backend.openSnapshot();
    const restored = await restoreSnapshotInto(path.join(dir, 'b'), chunks);
    assert.equal(restored.appliedIndex, last);
    const b = await Backend.open(path.join(dir, 'b'));
    const loaded = await b.load();
    assert.equal(loaded.appliedIndex, last);
    assert.equal(loaded.store.currentRevision, store.currentRevision);
    assert.deepEqual(loaded.store.hashKV(), store.hashKV());
    await b.close();
    await backend.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('4 KiB values committed in revision order are not rewritten by LevelDB compactions (write amplification)', async () => {
    // The cause of commit records: with the state in meta records, every flushed table overlapped
    // the older ones and was rewritten once per level. 12,000 x 4 KiB (47 MiB) through commit
    // groups, as a member's apply loop makes them; LevelDB's own statistics give the bytes its
    // compactions wrote (memtable flushes are level 0's). Before: ~2x the data; now: ~1x (flushes).
    const dir = tmp();
    const backend = await Backend.open(dir);
    const store = new MvccStore();
    const value = Buffer.alloc(4096);
    let index = 0;
    const commits: Promise<void>[] = [];
    for (let i = 0; i < 12_000; i++) {
      value.writeUInt32BE(i, 0);
      for (let j = 4; j < 4096; j += 4) value.writeUInt32BE((i * 2654435761 + j * 40503) >>> 0, j);
      stagePut(store, backend, B(`key-${i % 3000}`), value);
      commits.push(backend.commit(++index, 1));
      if (i % 300 === 299) await Promise.all(commits.splice(0));
    }
    await Promise.all(commits);
    await backend.flush();
    const db = (backend as unknown as { db: ClassicLevel<Buffer, Buffer> }).db;
    // Let background compactions run to the end before reading the statistics.
    await new Promise((r) => setTimeout(r, 500));
    const stats = db.getProperty('leveldb.stats');
    // Rows: "Level  Files Size(MB) Time(sec) Read(MB) Write(MB)".
    let written = 0;
    let read = 0;
    for (const line of stats.split('\n')) {
      const m = /^\s*(\d+)\s+\d+\s+[\d.]+\s+[\d.]+\s+([\d.]+)\s+([\d.]+)/.exec(line);
      if (m) {
        read += Number(m[2]);
        written += Number(m[3]);
      }
    }
    const dataMiB = (12_000 * 4096) / 2 ** 20;
    assert.ok(written < dataMiB * 1.3, `LevelDB wrote ${written.toFixed(1)} MiB in tables for ${dataMiB.toFixed(1)} MiB of values (read ${read.toFixed(1)} MiB in compactions)\n${stats}`);
    assert.ok(read < dataMiB * 0.3, `compactions read ${read.toFixed(1)} MiB\n${stats}`);
    await backend.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
