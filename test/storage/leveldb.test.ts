// LevelDB maps the table files it opens and keeps them mapped while they sit in its table cache:
// a pass over the whole database must not leave the whole database in the process's RSS
// (issue 17: a member's load at start, and a snapshot sent, grew RSS by the database's size).
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LEVELDB_WRITE_BUFFER_BYTES, levelDb } from '../../src/storage/leveldb';

/** File-backed resident pages of this process (mapped files), in bytes; undefined off Linux. */
function rssFileBytes(): number | undefined {
  if (!fs.existsSync('/proc/self/status')) return undefined;
  const m = /RssFile:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : undefined;
}

describe('levelDb', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'quorumkv-leveldb-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('keeps at most its table cache of table files mapped after a pass over the whole database', async function () {
    if (rssFileBytes() === undefined) this.skip();
    // The smallest table files LevelDB allows (it clips max_file_size to >= 1 MiB), so that the
    // database has ~2.5x the tables the table cache holds: 160 MiB (uncompressed) in 1 MiB tables.
    const tableBytes = 1024 * 1024;
    const totalBytes = 160 * 1024 * 1024;
    const valueBytes = 4096;
    const db = levelDb(dir, { maxFileSize: tableBytes, compression: false });
    await db.open();
    try {
      const perBatch = 256;
      for (let i = 0; i < totalBytes / valueBytes; i += perBatch) {
        const batch = db.batch();
        for (let j = i; j < i + perBatch; j++) {
          const key = Buffer.alloc(8);
          key.writeUInt32BE(j, 4);
          batch.put(key, Buffer.alloc(valueBytes, j & 0xff));
        }
        await batch.write();
      }
      await db.compactRange(Buffer.alloc(8), Buffer.alloc(8, 0xff)); // the memtable into tables
      const tables = fs.readdirSync(dir).filter((f) => f.endsWith('.ldb')).length;
      assert.ok(tables > 128, `${tables} tables (the test needs many more than the cache holds)`);
      const before = rssFileBytes()!;
      let read = 0;
      for await (const [, v] of db.iterator({ highWaterMarkBytes: 1024 * 1024 })) read += v.length;
      assert.equal(read, totalBytes);
      const grown = rssFileBytes()! - before;
      // Bound: the cache's tables (LevelDB keeps up to max_open_files - 10 tables open, and at
      // leveldb.ts's LEVELDB_MAX_OPEN_FILES, its minimum, that is 64) with room
      // for the node binary's own pages touched meanwhile; with classic-level's default of 1000
      // open files every table stays mapped and this grows by ~160 MiB.
      const bound = 64 * tableBytes + 12 * 1024 * 1024;
      assert.ok(grown < bound, `RssFile grew by ${(grown / 1048576).toFixed(1)} MiB reading ${totalBytes / 1048576} MiB (bound ${(bound / 1048576).toFixed(1)} MiB)`);
    } finally {
      await db.close();
    }
  });

  it('writes records that arrive in key order as tables of about the memtable size, not 4 MiB ones', async () => {
    // A member's backend (and a restore) writes in key order: LevelDB moves each flushed memtable
    // down as it is, so the memtable size is the table size that the table cache maps (above).
    const db = levelDb(dir);
    await db.open();
    try {
      for (let i = 0; i < 6000; i += 200) {
        const batch = db.batch();
        for (let j = i; j < i + 200; j++) {
          const key = Buffer.alloc(8);
          key.writeUInt32BE(j, 4);
          batch.put(key, crypto.randomBytes(4096)); // incompressible, as Snappy would shrink a pattern
        }
        await batch.write();
      }
    } finally {
      await db.close();
    }
    const sizes = fs.readdirSync(dir).filter((f) => f.endsWith('.ldb')).map((f) => fs.statSync(path.join(dir, f)).size);
    assert.ok(sizes.length >= 4, `${sizes.length} tables`);
    assert.ok(Math.max(...sizes) <= LEVELDB_WRITE_BUFFER_BYTES * 1.5, `largest table ${Math.max(...sizes)} bytes`);
  });
});
