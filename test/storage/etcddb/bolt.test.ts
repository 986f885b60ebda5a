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

  it('bytes of a page that no element covers are zeros, though page images are built in one reused buffer', async () => {
    // A leaf of large values (three pages) first, then small leaves and branch pages in the same
    // buffer: what an earlier image left there must not reach the file.
    const rng = new Rng(11);
    const entries: [Buffer, Buffer][] = [];
    for (let i = 0; i < 3000; i++) entries.push([Buffer.from(String(i).padStart(6, '0')), Buffer.alloc(i < 2 ? 5000 : rng.int(60), 0xee)]);
    const file = path.join(dir, 'zeros.db');
    const size = await writeDb(file, new Map([['big-then-small', entries]]));
    const bytes = fs.readFileSync(file);
    let checked = 0;
    for (let id = 3; id < size / PAGE_BYTES; ) {
      const base = id * PAGE_BYTES;
      const flags = bytes.readUInt16LE(base + 8);
      const count = bytes.readUInt16LE(base + 10);
      const pages = bytes.readUInt32LE(base + 12) + 1;
      // The end of what the page's elements cover: the last element's key (and value).
      const last = base + 16 + (count - 1) * 16;
      const end = flags & 0x02 ? last + bytes.readUInt32LE(last + 4) + bytes.readUInt32LE(last + 8) + bytes.readUInt32LE(last + 12) : last + bytes.readUInt32LE(last) + bytes.readUInt32LE(last + 4);
      assert.ok(bytes.subarray(end, base + pages * PAGE_BYTES).every((b) => b === 0), `page ${id}: bytes past its elements are zeros`);
      checked++;
      id += pages;
    }
    assert.ok(checked > 10, `${checked} pages checked`);
    const db = BoltReader.open(file);
    try {
      assert.equal([...db.entries('big-then-small')].length, entries.length);
    } finally {
      db.close();
    }
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
