// The bbolt writer and reader: what one writes, the other reads back byte for byte, whatever the
// tree's depth, element sizes and values larger than a page; bad files are refused clearly.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BoltFormatError, BoltReader, BoltWriter, PAGE_BYTES, bufferedSink, isBoltHeader } from '../../../src/storage/etcddb/bolt';
import { Rng } from '../../../src/util/rng';

async function writeDb(file: string, buckets: Map<string, [Buffer, Buffer][]>): Promise<number> {
  const fd = fs.openSync(file, 'w');
  try {
    const sink = bufferedSink(async (bytes, position) => void fs.writeSync(fd, bytes, 0, bytes.length, position), 64 * 1024);
    const w = new BoltWriter(sink);
    for (const [name, entries] of buckets) {
      const b = w.bucket(name);
      for (const [k, v] of entries) await b.add(k, v);
      await b.close();
    }
    const size = await w.finish();
    await sink.flush();
    return size;
  } finally {
    fs.closeSync(fd);
  }
}

describe('bbolt format (storage/backend/bolt.ts)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'quorumkv-bolt-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  for (const seed of [1, 2, 3]) {
    it(`seed ${seed}: buckets of random sizes (deep trees, overflow values, an empty bucket) read back in order`, async () => {
      const rng = new Rng(seed);
      const buckets = new Map<string, [Buffer, Buffer][]>();
      for (const name of ['zeta', 'key', 'alpha', 'empty', 'big', 'huge']) {
        const n = name === 'empty' ? 0 : name === 'key' ? 20_000 + rng.int(5000) : name === 'huge' ? 6 : rng.int(300) + 1;
        const keys = new Set<string>();
        while (keys.size < n) keys.add(rng.int(1e9).toString(36).padStart(6, '0') + (rng.int(4) === 0 ? 'x'.repeat(rng.int(200)) : ''));
        const entries = [...keys]
          .map((k) => Buffer.from(k))
          .sort(Buffer.compare)
          // 'huge': leaves larger than the sink's 64 KiB buffer (written on their own).
          .map((k): [Buffer, Buffer] => [k, Buffer.alloc(name === 'big' ? rng.int(3 * PAGE_BYTES) : name === 'huge' ? 60 * 1024 + rng.int(80 * 1024) : rng.int(100), rng.int(256))]);
        buckets.set(name, entries);
      }
      const file = path.join(dir, `s${seed}.db`);
      const size = await writeDb(file, buckets);
      assert.equal(fs.statSync(file).size, size);
      const db = BoltReader.open(file);
      try {
        assert.deepEqual(db.buckets(), [...buckets.keys()].sort());
        for (const [name, entries] of buckets) {
          const got = [...db.entries(name)].map(([k, v]) => [Buffer.from(k), Buffer.from(v)]);
          assert.equal(got.length, entries.length, name);
          for (let i = 0; i < got.length; i++) {
            assert.ok(got[i]![0]!.equals(entries[i]![0]) && got[i]![1]!.equals(entries[i]![1]), `${name}[${i}]`);
          }
        }
        assert.deepEqual([...db.entries('no-such-bucket')], []);
        assert.equal(db.size, size);
      } finally {
        db.close();
      }
    });
  }

  /** Writes `buckets` with `w`, returns its size. */
  async function fill(w: BoltWriter, buckets: Map<string, [Buffer, Buffer][]>): Promise<number> {
    for (const [name, entries] of buckets) {
      const b = w.bucket(name);
      for (const [k, v] of entries) await b.add(k, v);
      await b.close();
    }
    return w.finish();
  }

  it('a layout-only pass places the pages as writing does; given that layout, the file comes out in page order, meta pages first, byte for byte the same', async () => {
    const rng = new Rng(7);
    const buckets = new Map<string, [Buffer, Buffer][]>();
    for (const name of ['key', 'meta', 'lease']) {
      const n = name === 'key' ? 6000 : 40;
      const entries: [Buffer, Buffer][] = [];
      // Values around a page and beyond (two share an overflow leaf), small ones between.
      for (let i = 0; i < n; i++) entries.push([Buffer.from(String(i).padStart(7, '0')), Buffer.alloc(rng.int(3) === 0 ? rng.int(9000) : rng.int(200), i & 0xff)]);
      buckets.set(name, entries);
    }
    const asFile = Buffer.alloc(64 * 2 ** 20);
    const fileSize = await fill(new BoltWriter(async (bytes, position) => void bytes.copy(asFile, position)), buckets);

    const plan = new BoltWriter(undefined);
    assert.equal(await fill(plan, buckets), fileSize);
    const layout = plan.layout!;
    assert.ok(layout.rootPage > 3 && layout.highWater * PAGE_BYTES === fileSize);

    const pieces: Buffer[] = [];
    let next = 0;
    const streamed = new BoltWriter(async (bytes, position) => {
      assert.equal(position, next, 'pages arrive in order, from page 0');
      next += bytes.length;
      pieces.push(Buffer.from(bytes)); // the writer reuses its buffer
    }, layout);
    assert.equal(await fill(streamed, buckets), fileSize);
    assert.equal(next, fileSize);
    assert.ok(Buffer.concat(pieces).equals(asFile.subarray(0, fileSize)), 'the stream is the file');
    const file = path.join(dir, 'streamed.db');
    fs.writeFileSync(file, Buffer.concat(pieces));
    const db = BoltReader.open(file);
    try {
      for (const [name, entries] of buckets) assert.equal([...db.entries(name)].length, entries.length, name);
    } finally {
      db.close();
    }

    // A layout that is not the one written: the writer says so at the end (its meta pages,
    // already sent, would point elsewhere).
    const wrong = new BoltWriter(async () => undefined, { rootPage: layout.rootPage, highWater: layout.highWater + 1 });
    await assert.rejects(fill(wrong, buckets), /meta pages sent say/);
  });

  it('refuses keys out of order, and files that are not bbolt or are truncated', async () => {
    const w = new BoltWriter(async () => undefined);
    const b = w.bucket('b');
    await b.add(Buffer.from('b'), Buffer.alloc(0));
    await assert.rejects(b.add(Buffer.from('a'), Buffer.alloc(0)), /keys out of order/);
    const notBolt = path.join(dir, 'not.db');
    fs.writeFileSync(notBolt, Buffer.alloc(8192, 7));
    assert.equal(isBoltHeader(fs.readFileSync(notBolt)), false);
    assert.throws(() => BoltReader.open(notBolt), BoltFormatError);
    const file = path.join(dir, 'trunc.db');
    await writeDb(file, new Map([['k', Array.from({ length: 2000 }, (_, i): [Buffer, Buffer] => [Buffer.from(String(i).padStart(5, '0')), Buffer.alloc(50)])]]));
    assert.equal(isBoltHeader(fs.readFileSync(file).subarray(0, 4096)), true);
    fs.truncateSync(file, fs.statSync(file).size - PAGE_BYTES);
    assert.throws(() => BoltReader.open(file), /truncated/);
  });
});
