// The Wal API: round trips, Raft's overwrite rule, rotation, snapshot markers and releaseTo, group
// commit, and failing for good after an I/O error.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { AssertionError } from '../../../src/util/assert';
import { Rng } from '../../../src/util/rng';
import { Wal, WalError, WalFailedError } from '../../../src/storage/wal';
import { parseSegmentName } from '../../../src/storage/wal/format';
import { META, Model, SMALL, cleanup, ent, ents, hs, segmentFiles, summary, tmpDir } from './helpers';

const TINY = { segmentBytes: 16 * 1024, fsync: false };

function eio(): Error {
  return Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' });
}

async function reopen(dir: string, opts = SMALL) {
  return Wal.open(dir, opts);
}

describe('wal', () => {
  after(cleanup);

  it('round trip: batches of entries and hard states come back exactly, with the metadata', async () => {
    const dir = path.join(tmpDir('roundtrip'), 'member', 'wal');
    assert.equal(await Wal.exists(dir), false);
    const wal = await Wal.create(dir, META, SMALL);
    assert.equal(await Wal.exists(dir), true);
    const m = new Model();
    for (let b = 0; b < 20; b++) {
      const es = ents(b * 5 + 1, b * 5 + 5, 1 + (b >> 3), 10 + b * 7);
      const h = b % 3 === 0 ? undefined : hs(1 + (b >> 3), b * 5);
      await wal.save(h, es);
      m.save(h, es);
    }
    await wal.save(hs(3, 100, 0xfedcba9876543210n), []);
    m.save(hs(3, 100, 0xfedcba9876543210n), []);
    await wal.close();
    const { wal: w2, state } = await reopen(dir);
    assert.deepEqual(summary(state), summary(m));
    assert.deepEqual(Buffer.from(state.metadata!), META);
    assert.equal(state.tornTail, undefined);
    await w2.close();
  });

  it('create refuses a directory that already holds a WAL or other files', async () => {
    const dir = path.join(tmpDir('create'), 'wal');
    await (await Wal.create(dir, META, SMALL)).close();
    await assert.rejects(Wal.create(dir, META, SMALL), WalError);
    const other = path.join(tmpDir('create2'), 'wal');
    fs.mkdirSync(other);
    fs.writeFileSync(path.join(other, 'notes.txt'), 'x');
    await assert.rejects(Wal.create(other, META, SMALL), /holds other files/);
    assert.equal(fs.existsSync(other + '.tmp'), true); // left for inspection, removed by the next create
  });

  it('a later entry at an index <= the last replaces the tail from there (conflicting suffix)', async () => {
    const dir = path.join(tmpDir('overwrite'), 'wal');
    const wal = await Wal.create(dir, META, SMALL);
    await wal.save(hs(1, 0), ents(1, 10, 1));
    await wal.save(hs(2, 5), ents(6, 8, 2));
    await wal.save(undefined, ents(9, 9, 2));
    await wal.save(hs(3, 5), ents(4, 4, 3)); // a leader of term 3 overwrites from 4
    await wal.close();
    const { wal: w2, state } = await reopen(dir);
    assert.deepEqual(state.entries.map((e) => `${e.index}/${e.term}`), ['1/1', '2/1', '3/1', '4/3']);
    assert.deepEqual(summary(state), summary(Object.assign(new Model(), { hardState: hs(3, 5), entries: [...ents(1, 3, 1), ent(4, 3)] })));
    await w2.save(undefined, ents(5, 6, 3));
    await w2.close();
    const { wal: w3, state: s3 } = await reopen(dir);
    assert.deepEqual(s3.entries.map((e) => `${e.index}/${e.term}`), ['1/1', '2/1', '3/1', '4/3', '5/3', '6/3']);
    await w3.close();
  });

  it('rotates across many small segments and recovers across them; names carry seq and the next index', async () => {
    const dir = path.join(tmpDir('rotate'), 'wal');
    let wal = await Wal.create(dir, META, TINY);
    const m = new Model();
    let next = 1;
    for (let b = 0; b < 120; b++) {
      const term = 1 + Math.floor(b / 40);
      const back = b % 17 === 16 ? 3 : 0; // now and then overwrite the last 3 entries, across segments too
      const es = ents(next - back, next - back + 9, term, 100);
      await wal.save(hs(term, Math.max(0, next - 20)), es);
      m.save(hs(term, Math.max(0, next - 20)), es);
      next = next - back + 10;
      if (b === 60) {
        await wal.close();
        const r = await Wal.open(dir, TINY);
        assert.deepEqual(summary(r.state), summary(m));
        wal = r.wal;
      }
    }
    await wal.close();
    const files = segmentFiles(dir);
    assert.ok(files.length >= 8, `only ${files.length} segments`);
    files.forEach((f, i) => assert.equal(parseSegmentName(f)!.seq, i));
    for (const f of files) assert.equal(fs.statSync(path.join(dir, f)).size, TINY.segmentBytes, 'preallocated');
    const { wal: w2, state } = await Wal.open(dir, TINY);
    assert.deepEqual(summary(state), summary(m));
    await w2.close();
  });

  it('a batch larger than a segment is written whole (the segment grows) and recovered', async () => {
    const dir = path.join(tmpDir('oversize'), 'wal');
    const wal = await Wal.create(dir, META, TINY);
    await wal.save(hs(1, 0), ents(1, 2, 1));
    await wal.save(hs(1, 2), ents(3, 12, 1, 4000)); // ~40 KiB into 16 KiB segments
    await wal.save(hs(1, 12), ents(13, 13, 1));
    await wal.close();
    const { wal: w2, state } = await Wal.open(dir, TINY);
    assert.equal(state.entries.length, 13);
    assert.equal(state.hardState.commit, 12);
    await w2.close();
  });

  it('snapshot marker + releaseTo removes old segments; recovery gives the entries after the snapshot', async () => {
    const dir = path.join(tmpDir('release'), 'wal');
    const wal = await Wal.create(dir, META, TINY);
    const m = new Model();
    for (let b = 0; b < 60; b++) {
      const es = ents(b * 10 + 1, b * 10 + 10, 2, 120);
      await wal.save(hs(2, b * 10), es);
      m.save(hs(2, b * 10), es);
    }
    const before = segmentFiles(dir);
    await assert.rejects(wal.releaseTo(400), AssertionError); // no snapshot covers it yet
    await wal.saveSnapshot({ index: 450, term: 2 });
    m.saveSnapshot({ index: 450, term: 2 });
    await wal.releaseTo(400);
    const after = segmentFiles(dir);
    assert.ok(after.length <= before.length - 2, `${before.length} -> ${after.length} segments`);
    assert.ok(parseSegmentName(after[0]!)!.firstIndex <= 400, 'the first kept segment starts at or below the release point');
    assert.equal(after[after.length - 1], before[before.length - 1]);
    await wal.save(hs(3, 455), ents(601, 605, 3));
    m.save(hs(3, 455), ents(601, 605, 3));
    await wal.close();
    const { wal: w2, state } = await Wal.open(dir, TINY);
    assert.deepEqual(summary(state), summary(m));
    assert.equal(state.entries[0]!.index, 451);
    assert.deepEqual(Buffer.from(state.metadata!), META, 'metadata survives in the start batch of the first kept segment');
    await w2.close();
  });

  it('a snapshot beyond the last entry (installed from the leader) restarts the log after it', async () => {
    const dir = path.join(tmpDir('snapinstall'), 'wal');
    const wal = await Wal.create(dir, META, SMALL);
    await wal.save(hs(1, 3), ents(1, 5, 1));
    await wal.saveSnapshot({ index: 100, term: 4 });
    await assert.rejects(wal.save(undefined, ents(50, 50, 4)), AssertionError);
    await wal.save(hs(4, 100), ents(101, 102, 4));
    await wal.close();
    const { wal: w2, state } = await reopen(dir);
    assert.deepEqual(state.snapshot, { index: 100, term: 4 });
    assert.deepEqual(state.entries.map((e) => e.index), [101, 102]);
    await w2.close();
  });

  it('group commit: one save is one write and one fdatasync, whatever the batch size; an empty save is none', async () => {
    const dir = path.join(tmpDir('fsync'), 'wal');
    const wal = await Wal.create(dir, META, { segmentBytes: 1024 * 1024, fsync: true });
    let next = 1;
    for (const n of [1, 10, 100]) {
      const before = { ...wal.stats };
      const offset = wal.tail.offset;
      await wal.save(hs(1, next - 1), ents(next, next + n - 1, 1, 256));
      next += n;
      assert.equal(wal.stats.fsyncs - before.fsyncs, 1);
      assert.equal(wal.stats.batches - before.batches, 1);
      assert.equal(wal.stats.bytes - before.bytes, wal.tail.offset - offset);
      assert.ok(wal.stats.lastFsyncMs >= 0);
    }
    const before = { ...wal.stats };
    await wal.save(undefined, []);
    assert.deepEqual(wal.stats, before);
    await wal.close();
  });

  it('calls must not overlap: a second save while one is in flight is an assertion failure', async () => {
    const dir = path.join(tmpDir('overlap'), 'wal');
    const wal = await Wal.create(dir, META, SMALL);
    const first = wal.save(hs(1, 0), ents(1, 1, 1));
    await assert.rejects(wal.save(hs(1, 0), ents(2, 2, 1)), /calls must not overlap/);
    await first;
    await wal.save(hs(1, 1), ents(2, 2, 1));
    await wal.close();
  });

  it('entries that would break the log (a gap, terms going backwards) are assertion failures', async () => {
    const dir = path.join(tmpDir('asserts'), 'wal');
    const wal = await Wal.create(dir, META, SMALL);
    await wal.save(hs(2, 0), ents(1, 3, 2));
    await assert.rejects(wal.save(undefined, ents(5, 5, 2)), /gap/);
    await assert.rejects(wal.save(undefined, [ent(4, 3), ent(5, 2)]), /terms go backwards/);
    await assert.rejects(wal.save(undefined, [ent(4, 3), ent(6, 3)]), /not contiguous/);
    await wal.close();
  });

  for (const hook of ['beforeWrite', 'beforeSync'] as const) {
    it(`after a failed ${hook === 'beforeWrite' ? 'write' : 'fdatasync'} every later call is refused; a restart recovers what was synced`, async () => {
      const dir = path.join(tmpDir('fail'), 'wal');
      let armed = false;
      const faults = { [hook]: () => { if (armed) throw eio(); } };
      const wal = await Wal.create(dir, META, { ...SMALL, fsync: true, faults });
      await wal.save(hs(1, 0), ents(1, 5, 1));
      armed = true;
      const err = await wal.save(hs(1, 5), ents(6, 6, 1)).catch((e: unknown) => e);
      assert.ok(err instanceof WalFailedError, String(err));
      assert.match(err.message, /EIO/);
      assert.equal((err.cause as NodeJS.ErrnoException).code, 'EIO');
      armed = false;
      await assert.rejects(wal.save(hs(1, 5), ents(6, 6, 1)), WalFailedError);
      await assert.rejects(wal.saveSnapshot({ index: 3, term: 1 }), WalFailedError);
      await wal.close();
      const { wal: w2, state } = await reopen(dir);
      // The failed batch never reached the file (write) or reached only the page cache (fdatasync):
      // either way everything synced before it is there.
      assert.deepEqual(state.entries.slice(0, 5).map((e) => e.index), [1, 2, 3, 4, 5]);
      assert.equal(state.entries.length, hook === 'beforeWrite' ? 5 : 6);
      await w2.save(hs(1, 6), ents(7, 7, 1).map((e) => ({ ...e, index: state.entries.length + 1 })));
      await w2.close();
    });
  }

  it('a failure while starting a new segment fails the Wal; the half-made segment is discarded on restart', async () => {
    const dir = path.join(tmpDir('failrotate'), 'wal');
    let armed = false;
    const wal = await Wal.create(dir, META, { ...TINY, faults: { beforeWrite: () => { if (armed) throw eio(); } } });
    const m = new Model();
    while (segmentFiles(dir).length === 1 && wal.tail.offset + 2000 < TINY.segmentBytes) {
      const next = m.lastIndex() + 1;
      await wal.save(hs(1, 0), ents(next, next + 4, 1, 300));
      m.save(hs(1, 0), ents(next, next + 4, 1, 300));
    }
    armed = true;
    await assert.rejects(wal.save(hs(1, 1), ents(m.lastIndex() + 1, m.lastIndex() + 20, 1, 300)), WalFailedError);
    await wal.close();
    assert.equal(fs.readdirSync(dir).filter((f) => f.endsWith('.tmp')).length, 1);
    const { wal: w2, state } = await Wal.open(dir, TINY);
    assert.deepEqual(summary(state), summary(m));
    assert.equal(fs.readdirSync(dir).filter((f) => f.endsWith('.tmp')).length, 0);
    await w2.close();
  });

  // A seeded random walk over saves (appends, overwrites), hard states, snapshots, releases and
  // restarts, checked against the reference model after every restart.
  for (const seed of [1, 2, 3, 4]) {
    it(`random operations against the model, seed ${seed}`, async () => {
      const rng = new Rng(seed);
      const dir = path.join(tmpDir('model'), 'wal');
      let wal = await Wal.create(dir, META, TINY);
      const m = new Model();
      let term = 1;
      let releases = 0;
      let reopens = 0;
      for (let op = 0; op < 400; op++) {
        const snap = m.snapshot?.index ?? 0;
        const last = m.lastIndex();
        const p = rng.int(100);
        if (p < 70) {
          if (rng.chance(0.1)) term++;
          const from = rng.chance(0.15) && last > snap ? snap + 1 + rng.int(last - snap) : last + 1;
          const es = ents(from, from + rng.int(12), term, rng.int(400));
          const h = rng.chance(0.7) ? hs(term, Math.min(from - 1, rng.int(last + 1))) : undefined;
          await wal.save(h, es);
          m.save(h, es);
        } else if (p < 78) {
          const h = hs(term, rng.int(last + 1));
          await wal.save(h, []);
          m.save(h, []);
        } else if (p < 86 && last > snap) {
          releases++;
          // Mostly local compaction (inside the log); now and then a snapshot from the leader past its end.
          const s = { index: rng.chance(0.2) ? last + 1 + rng.int(30) : snap + 1 + rng.int(last - snap), term };
          await wal.saveSnapshot(s);
          m.saveSnapshot(s);
          await wal.releaseTo(s.index - rng.int(20));
        } else {
          await wal.close();
          const r = await Wal.open(dir, TINY);
          assert.deepEqual(summary(r.state), summary(m), `seed ${seed} op ${op}`);
          reopens++;
          wal = r.wal;
        }
      }
      await wal.close();
      const r = await Wal.open(dir, TINY);
      assert.deepEqual(summary(r.state), summary(m));
      await r.wal.close();
      assert.ok(releases > 5 && reopens > 5, `the walk exercised ${releases} snapshots and ${reopens} restarts`);
      assert.ok(parseSegmentName(segmentFiles(dir)[0]!)!.seq > 0, 'old segments were released');
    });
  }
});
