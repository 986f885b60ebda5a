// The spill file (storage/spill_file.ts) and its SpillRef encoding (mvcc/spill.ts): values come
// back byte for byte whatever their length, garbage accounting triggers a rewrite into the other
// generation, and a failed write leaves the values with the caller (and backs off) instead of
// throwing or corrupting anything. The store-level behaviour is in test/mvcc/model.test.ts.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  MvccStore,
  NO_LEASE,
  SPILL_FILE_BYTES_MAX,
  spillRef,
  spillRefGeneration,
  spillRefPosition,
} from '../../src/mvcc';
import { SpillFile, WRITE_RETRY_MS } from '../../src/storage/spill_file';

const tmp = () => path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'qkv-spill-')), 'spill');
const latin1 = (n: number, seed: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff)).toString('latin1');

describe('SpillRef encoding', () => {
  it('round-trips position and generation up to the limit, as exact integers', () => {
    const cases: [number, 0 | 1][] = [
      [0, 0],
      [8, 1],
      [4096, 0],
      [2 ** 33 + 64, 1],
      [SPILL_FILE_BYTES_MAX - 8, 1],
    ];
    for (const [pos, gen] of cases) {
      const ref = spillRef(pos, gen);
      assert.ok(Number.isSafeInteger(ref), `${pos}/${gen} → ${ref}`);
      assert.deepEqual([spillRefPosition(ref), spillRefGeneration(ref)], [pos, gen]);
    }
  });

  it('is a V8 small integer (no heap object per spilled value) below 8 GiB of file', () => {
    assert.ok(spillRef(8 * 2 ** 30 - 8, 1) <= 2 ** 31 - 1);
  });
});

describe('SpillFile', () => {
  it('reads back every value byte for byte (empty, one byte, all 256 byte values, beyond the read buffer)', () => {
    const spill = SpillFile.open(tmp());
    try {
      const values = [latin1(0, 0), latin1(1, 1), latin1(256, 2), latin1(5000, 3), latin1(200_000, 4), latin1(7, 5), latin1(508, 6), latin1(509, 7)];
      const refs = spill.append(values)!;
      const more = spill.append([latin1(2_000_000, 8)])!;
      for (const [i, v] of values.entries()) assert.equal(spill.read(refs[i]!), v, `value ${i}`);
      assert.equal(spill.read(more[0]!), latin1(2_000_000, 8));
      for (const r of [...refs, ...more]) assert.equal(spillRefPosition(r) % 8, 0);
      // Together, in any order (grouped reads; values longer than the first read's guess).
      const all = [...values, latin1(2_000_000, 8)];
      const allRefs = [...refs, ...more];
      const shuffled = [5, 0, 8, 2, 7, 1, 6, 4, 3];
      assert.deepEqual(spill.readMany(shuffled.map((i) => allRefs[i]!)), shuffled.map((i) => all[i]!));
      assert.deepEqual(spill.readMany(allRefs), all);
      // releaseMany reads the lengths back.
      assert.equal(spill.releaseMany(allRefs), all.reduce((n, v) => n + v.length, 0));
      assert.equal(spill.liveBytes, 0);
    } finally {
      spill.close();
    }
  });

  it('starts empty (a stale file from before is dropped) and removes its directory on close', () => {
    const dir = tmp();
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'values.0'), 'stale');
    const spill = SpillFile.open(dir);
    assert.equal(fs.statSync(path.join(dir, 'values.0')).size, 0);
    assert.equal(spill.fileBytes, 0);
    spill.close();
    assert.equal(fs.existsSync(dir), false);
  });

  it('counts garbage: released values make a rewrite due; the rewrite empties the old generation', () => {
    const dir = tmp();
    const spill = SpillFile.open(dir, undefined, { rewriteGarbageBytesMin: 1000 });
    const gen0 = path.join(dir, 'values.0');
    try {
      const refs = spill.append(Array.from({ length: 20 }, (_, i) => latin1(100, i)))!;
      assert.equal(spill.liveBytes, 20 * 104);
      assert.equal(spill.rewriteDue, false);
      for (const r of refs.slice(0, 15)) spill.release(r, 100);
      assert.equal(spill.rewriteDue, true);
      spill.beginRewrite();
      assert.equal(spill.rewriting, 0);
      assert.equal(spill.rewriteDue, false);
      const moved = spill.append(refs.slice(15).map((r) => spill.read(r)))!;
      for (const r of refs.slice(15)) spill.release(r, 100);
      assert.ok(moved.every((r) => spillRefGeneration(r) === 1));
      const inodeBefore = fs.statSync(gen0).ino;
      assert.equal(fs.statSync(gen0).size, 20 * 104);
      spill.finishRewrite();
      assert.equal(spill.rewriting, undefined);
      assert.equal(spill.fileBytes, 5 * 104);
      assert.equal(spill.liveBytes, 5 * 104);
      for (const [i, r] of moved.entries()) assert.equal(spill.read(r), latin1(100, 15 + i));
      // The emptied generation is a fresh file (the old one's blocks are freed when its descriptor
      // closes in the thread pool, not by a truncation on the event loop), and it is used again.
      assert.notEqual(fs.statSync(gen0).ino, inodeBefore);
      assert.equal(fs.statSync(gen0).size, 0);
      assert.deepEqual(fs.readdirSync(dir).sort(), ['values.0', 'values.1']);
      spill.beginRewrite();
      const back = spill.append(moved.map((r) => spill.read(r)))!;
      assert.ok(back.every((r) => spillRefGeneration(r) === 0));
      for (const [i, r] of back.entries()) assert.equal(spill.read(r), latin1(100, 15 + i));
    } finally {
      spill.close();
    }
  });

  it('a failed write returns undefined and backs off; the store keeps those values in the heap and serves them', () => {
    const warnings: string[] = [];
    const spill = SpillFile.open(tmp(), { warn: (m) => warnings.push(m) });
    const st = new MvccStore();
    st.attachSpill(spill, 0);
    const realWrite = fs.writeSync;
    let now = Date.now();
    const realNow = Date.now;
    try {
      const t = st.write();
      for (let i = 0; i < 10; i++) t.put(`k${i}`, latin1(300, i), NO_LEASE);
      t.end();
      (fs as { writeSync: unknown }).writeSync = () => {
        throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
      };
      Date.now = () => now;
      assert.equal(st.spillStep(), false); // nothing more to do until the back-off ends
      assert.equal(warnings.length, 1);
      assert.equal(spill.writable, false);
      assert.equal(spill.fileBytes, 0);
      for (let i = 0; i < 10; i++) assert.equal(st.range(`k${i}`, undefined).kvs[0]!.value, latin1(300, i));
      (fs as { writeSync: unknown }).writeSync = realWrite;
      now += WRITE_RETRY_MS;
      assert.equal(st.spillPending, true);
      while (st.spillStep()) {
        // until every value is out
      }
      assert.equal(st.heapValueBytes, 0);
      assert.equal(spill.liveBytes, 10 * 304);
      for (let i = 0; i < 10; i++) assert.equal(st.range(`k${i}`, undefined).kvs[0]!.value, latin1(300, i));
    } finally {
      (fs as { writeSync: unknown }).writeSync = realWrite;
      Date.now = realNow;
      spill.close();
    }
  });
});
