// hashKV and the snapshot stream: equal histories hash equal, and export -> import rebuilds the same store.
import { strict as assert } from 'node:assert';
import { MvccStore, NO_LEASE, MvccSnapshotRecord, SnapshotImporter, crc32c } from '../../src/mvcc';
import { Errors } from '../../src/util/errors';
import { AssertionError } from '../../src/util/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SpillFile } from '../../src/storage/spill_file';
import { b, s, put, del, rng, runHashJob } from './helpers';

/** Applies a seeded random workload (puts, deletes, multi-op txns, compactions). */
function workload(st: MvccStore, seed: number, ops: number, compact = true): void {
  const r = rng(seed);
  for (let i = 0; i < ops; i++) {
    const k = `k${Math.floor(r() * 30)}`;
    const x = r();
    if (x < 0.6) put(st, k, `v${i}`, BigInt(Math.floor(r() * 3)));
    else if (x < 0.75) del(st, k, r() < 0.3 ? `k${Math.floor(r() * 30)}` : undefined);
    else if (x < 0.95) {
      const txn = st.write();
      txn.put(b(k), b(`t${i}`), NO_LEASE);
      txn.put(b(k), b(`u${i}`), NO_LEASE);
      if (r() < 0.5) txn.deleteRange(b('k1'), b('k2'));
      txn.end();
    } else if (compact && st.currentRevision > st.compactRevision + 5) {
      st.compact(st.currentRevision - Math.floor(r() * 5));
    }
  }
}

function allReads(st: MvccStore): string[] {
  const out: string[] = [];
  for (let rev = Math.max(st.compactRevision, 1); rev <= st.currentRevision; rev++) {
    for (const kv of st.range(b('\0'), b('\0'), { revision: rev }).kvs) {
      out.push(`${rev}:${s(kv.key)}=${s(kv.value)}/${kv.version}/${kv.createRevision}/${kv.modRevision}/${kv.lease}`);
    }
  }
  return out;
}

function allEvents(st: MvccStore): string[] {
  return st.eventsBetween(st.compactRevision, st.currentRevision).events.map(
    (e) => `${e.type}:${s(e.kv.key)}@${e.kv.modRevision}/${e.kv.version}=${s(e.kv.value)}<${e.prevKv ? s(e.prevKv.value) : '-'}`,
  );
}

describe('mvcc hashKV in slices (hashKVJob)', () => {
  it('equals the synchronous hashKV on random histories, with writes and spill work between slices (seeded)', () => {
    for (let seed = 1; seed <= 40; seed++) {
      const r = rng(seed * 7919);
      const st = new MvccStore();
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkv-hash-slices-'));
      const spill = seed % 2 === 0 ? SpillFile.open(dir, undefined, { rewriteGarbageBytesMin: 256 }) : undefined;
      if (spill) st.attachSpill(spill, 64);
      try {
        workload(st, seed, 200 + Math.floor(r() * 400));
        while (st.spillStep()) {
          // some values spilled, some in the heap
        }
        const rev = r() < 0.5 ? 0 : st.compactRevision + Math.floor(r() * (st.currentRevision - st.compactRevision + 1));
        const expected = st.hashKVFullPass(rev);
        const maxVersions = 1 + Math.floor(r() * 20);
        let i = 0;
        const got = runHashJob(st, rev, maxVersions, () => {
          // Writes (above the hash revision) and spill steps between slices do not change the answer.
          put(st, `k${Math.floor(r() * 40)}`, `between${i++}`);
          if (r() < 0.3) del(st, `k${Math.floor(r() * 40)}`);
          st.spillStep();
        });
        assert.deepEqual(got, expected, `seed ${seed}`);
        assert.deepEqual(st.hashKV(expected.hashRevision), expected, `seed ${seed}: the synchronous hash at that revision is unchanged`);
      } finally {
        spill?.close();
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }
  });

  it('a compaction between slices makes the job stale; a job below the compaction point fails as hashKV does', () => {
    const st = new MvccStore();
    workload(st, 5, 300, false);
    const rev = st.currentRevision;
    let compacted = false;
    const got = runHashJob(st, rev - 10, 1, () => {
      if (!compacted) st.compact(rev - 20);
      compacted = true;
    });
    assert.equal(got, 'stale');
    assert.deepEqual(runHashJob(st, rev - 10, 3, () => undefined), st.hashKVFullPass(rev - 10));
    assert.throws(() => st.hashKVJob(rev - 30), (e) => e === Errors.Compacted);
    assert.throws(() => st.hashKVJob(st.currentRevision + 1), (e) => e === Errors.FutureRev);
  });

  it('a replaced state makes the job stale', () => {
    const st = new MvccStore();
    workload(st, 9, 200, false);
    const other = new MvccStore();
    workload(other, 10, 200, false);
    let replaced = false;
    const got = runHashJob(st, 0, 1, () => {
      if (!replaced) st.replaceWith(other);
      replaced = true;
    });
    assert.equal(got, 'stale');
  });
});

describe('mvcc hashKV', () => {
  it('crc32c matches the standard check value', () => {
    assert.equal(crc32c(0, b('123456789')), 0xe3069283);
  });

  it('is equal for equal histories and differs for different ones', () => {
    const x = new MvccStore();
    const y = new MvccStore();
    workload(x, 7, 300);
    workload(y, 7, 300);
    assert.deepEqual(x.hashKV(), y.hashKV());
    const z = new MvccStore();
    workload(z, 8, 300);
    assert.notEqual(z.hashKV().hash, x.hashKV().hash);
    put(y, 'k1', 'different');
    assert.notEqual(y.hashKV().hash, x.hashKV().hash);
  });

  it('a hash at a past revision is stable as the store moves on', () => {
    const st = new MvccStore();
    workload(st, 3, 100, false);
    const rev = st.currentRevision;
    const h = st.hashKV(rev);
    assert.equal(h.hashRevision, rev);
    workload(st, 4, 100, false);
    assert.deepEqual(st.hashKV(rev), h);
  });

  it('differs by value, lease and deletion', () => {
    const hashOf = (f: (st: MvccStore) => void) => {
      const st = new MvccStore();
      f(st);
      return st.hashKV().hash;
    };
    const base = hashOf((st) => put(st, 'a', '1'));
    assert.notEqual(hashOf((st) => put(st, 'a', '2')), base);
    assert.notEqual(hashOf((st) => put(st, 'a', '1', 5n)), base);
    assert.notEqual(hashOf((st) => { put(st, 'a', '1'); del(st, 'a'); }), hashOf((st) => { put(st, 'a', '1'); put(st, 'b', ''); }));
  });

  it('hashes the documented byte layout, spilled values included (the same hash as every earlier build)', () => {
    // Members of one cluster compare hashes (the corruption check): a build that hashed other
    // bytes would raise a false CORRUPT alarm in a cluster upgraded one member at a time.
    const reference = (st: MvccStore, rev: number): number => {
      let crc = 0;
      const int64 = (n: bigint) => {
        const x = Buffer.alloc(8);
        x.writeBigInt64BE(BigInt.asIntN(64, n));
        return x;
      };
      for (const kv of st.eventsBetween(st.compactRevision, rev).events.map((e) => e.kv).sort((x, y) => Buffer.compare(Buffer.from(x.key, 'latin1'), Buffer.from(y.key, 'latin1')) || x.modRevision - y.modRevision)) {
        const len = Buffer.alloc(4);
        len.writeUInt32BE(kv.key.length);
        crc = crc32c(crc, len);
        crc = crc32c(crc, Buffer.from(kv.key, 'latin1'));
        const vlen = Buffer.alloc(4);
        vlen.writeUInt32BE(kv.value.length);
        const tomb = Buffer.from([kv.version === 0 ? 1 : 0]);
        crc = crc32c(crc, Buffer.concat([int64(BigInt(kv.modRevision)), int64(BigInt(kv.createRevision)), int64(BigInt(kv.version)), tomb, int64(kv.lease), vlen]));
        crc = crc32c(crc, Buffer.from(kv.value, 'latin1'));
      }
      return crc;
    };
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qkv-hash-layout-'));
    const spill = SpillFile.open(dir);
    try {
      const st = new MvccStore();
      st.attachSpill(spill, 1024);
      const big = 'x'.repeat(3000);
      for (let i = 0; i < 200; i++) put(st, `key/${i % 70}`, `${big}${i}`, i % 5 === 0 ? 0x7fff_ffff_ffffn + BigInt(i) : NO_LEASE);
      del(st, 'key/3');
      put(st, 'key/3', '');
      put(st, '\xff\x00bin', 'v', 2n ** 63n + 5n);
      while (st.spillStep()) {
        // most values spilled, the newest in the heap
      }
      // No compaction: every version is in the events (a compacted key's base is not).
      assert.equal(st.compactRevision, 0);
      assert.equal(st.hashKV().hash, reference(st, st.currentRevision));
      assert.equal(st.hashKV(150).hash, reference(st, 150));
      // Extended from the cached per-key CRCs: the same bytes.
      for (let i = 0; i < 30; i++) put(st, `key/${(i * 7) % 90}`, `${big}again${i}`);
      while (st.spillStep()) {
        // the overwritten values spilled too
      }
      assert.equal(st.hashKVJob().fromCache, false);
      assert.equal(st.hashKV().hash, reference(st, st.currentRevision));
    } finally {
      spill.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('checks the revision like range does', () => {
    const st = new MvccStore();
    workload(st, 5, 50, false);
    st.compact(10);
    assert.throws(() => st.hashKV(9), (e) => e === Errors.Compacted);
    assert.throws(() => st.hashKV(st.currentRevision + 1), (e) => e === Errors.FutureRev);
    assert.equal(st.hashKV().hashRevision, st.currentRevision);
    assert.equal(st.hashKV().compactRevision, 10);
  });
});

describe('mvcc snapshot', () => {
  const roundTrip = (st: MvccStore): MvccStore => MvccStore.fromSnapshot(st.exportSnapshot());

  it('an empty store round-trips', () => {
    const copy = roundTrip(new MvccStore());
    assert.equal(copy.currentRevision, 1);
    assert.equal(copy.keyCount, 0);
  });

  for (const seed of [1, 2, 3]) {
    it(`export -> import gives equal hashKV, ranges, events and counters (seed ${seed})`, () => {
      const st = new MvccStore();
      workload(st, seed, 3000);
      assert.ok(st.compactRevision > 0);
      const copy = roundTrip(st);
      assert.equal(copy.currentRevision, st.currentRevision);
      assert.equal(copy.compactRevision, st.compactRevision);
      assert.deepEqual(copy.hashKV(), st.hashKV());
      assert.deepEqual(allReads(copy), allReads(st));
      assert.deepEqual(allEvents(copy), allEvents(st));
      assert.equal(copy.keyCount, st.keyCount);
      assert.equal(copy.sizeBytes, st.sizeBytes);
      // and both continue identically
      workload(st, seed + 100, 200);
      workload(copy, seed + 100, 200);
      assert.deepEqual(copy.hashKV(), st.hashKV());
    });
  }

  it('exports the logical state even while physical compaction is pending', () => {
    const st = new MvccStore();
    workload(st, 11, 500, false);
    st.scheduleCompaction(st.currentRevision - 20);
    st.compactStep(3);
    const copy = roundTrip(st);
    assert.deepEqual(copy.hashKV(), st.hashKV());
    assert.deepEqual(allReads(copy), allReads(st));
  });

  it('streams in bounded chunks, header first and end last', () => {
    const st = new MvccStore();
    workload(st, 12, 3000, false);
    const chunks = [...st.exportSnapshot()];
    assert.ok(chunks.length > 1);
    for (const c of chunks) assert.ok(c.length <= 1025);
    const flat = chunks.flat();
    assert.equal(flat[0].type, 'header');
    const last = flat[flat.length - 1];
    assert.equal(last.type, 'end');
    assert.equal((last as { kvCount: number }).kvCount, flat.length - 2);
  });

  it('refuses a store that changes during export and a truncated stream', () => {
    const st = new MvccStore();
    workload(st, 13, 3000, false);
    const gen = st.exportSnapshot();
    gen.next();
    put(st, 'zz', '1');
    assert.throws(() => gen.next(), AssertionError);
    const chunks: MvccSnapshotRecord[][] = [...st.exportSnapshot()];
    const imp = new SnapshotImporter();
    imp.importRecords(chunks[0]);
    assert.throws(() => imp.finish(), AssertionError);
  });
});

describe('SnapshotImporter without the current revision up front', () => {
  it('imports versions as they come and checks them against the current revision given at the end', () => {
    const src = new MvccStore();
    workload(src, 7, 200, false);
    const kvs = [...src.exportSnapshot()].flat().filter((r) => r.type === 'kv');
    assert.ok(kvs.length > 10 && kvs.every((r) => !r.base));
    const importer = new SnapshotImporter();
    importer.startWithoutCurrentRevision();
    importer.importRecords(kvs);
    importer.importRecords([{ type: 'end', kvCount: kvs.length }]);
    assert.throws(() => importer.finish(), AssertionError);
    const store = importer.finishAt(src.currentRevision);
    assert.deepEqual(store.hashKV(), src.hashKV());
    assert.equal(store.currentRevision, src.currentRevision);
  });

  it('refuses a current revision below a version it imported', () => {
    const src = new MvccStore();
    workload(src, 8, 50, false);
    const kvs = [...src.exportSnapshot()].flat().filter((r) => r.type === 'kv');
    assert.ok(kvs.length > 10 && kvs.every((r) => !r.base));
    const importer = new SnapshotImporter();
    importer.startWithoutCurrentRevision();
    importer.importRecords(kvs);
    importer.importRecords([{ type: 'end', kvCount: kvs.length }]);
    assert.throws(() => importer.finishAt(src.currentRevision - 1), /version above the current revision/);
  });
});
