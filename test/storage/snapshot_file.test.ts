// etcd's snapshot file layout (storage/snapshot_file.ts): payload, zero padding to 512 bytes,
// SHA-256. The writer's chunks make a file the readers accept; the readers refuse what etcd's
// clients refuse; the one stream parser finds the end of an earlier quorumkv file's payload
// whatever the piece sizes.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import {
  SNAPSHOT_ALIGN_BYTES,
  SNAPSHOT_SHA256_BYTES,
  SnapshotFileVerifier,
  emptyBackendStreamFileStats,
  paddingBytes,
  readBackendStreamFile,
  snapshotFileBytes,
  snapshotFileChunks,
  verifySnapshotFile,
} from '../../src/storage/snapshot_file';
import { SnapshotStreamParser } from '../../src/storage/backend/snapshot';
import { tempDir } from '../integration/harness';
import { RECORDS, backendStream, fileBytes } from './snapshot_helpers';

async function collect(gen: AsyncIterable<Buffer>): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const b of gen) out.push(b);
  return out;
}

async function* pieces(b: Buffer, pieceBytes: number): AsyncGenerator<Buffer> {
  for (let off = 0; off < b.length; off += pieceBytes) yield b.subarray(off, off + pieceBytes);
}

describe('snapshot files (etcdctl snapshot save layout)', () => {
  it('padding brings the payload to a multiple of 512 bytes, so size % 512 == 32 with the hash', () => {
    for (const n of [1, 24, 511, 512, 513, 100_000]) {
      const total = n + paddingBytes(n) + SNAPSHOT_SHA256_BYTES;
      assert.equal(total % SNAPSHOT_ALIGN_BYTES, SNAPSHOT_SHA256_BYTES, `payload of ${n} bytes`);
      assert.equal(snapshotFileBytes(n), total);
      assert.ok(paddingBytes(n) < SNAPSHOT_ALIGN_BYTES);
    }
  });

  it('the writer cuts the file into chunks of the asked size, the hash last on its own; the verifier accepts it', async () => {
    const payload = Buffer.from(Array.from({ length: 10_000 }, (_, i) => i & 0xff));
    for (const pieceBytes of [1, 1000, 4096, 10_000]) {
      const chunks = await collect(snapshotFileChunks(pieces(payload, pieceBytes), 4096));
      assert.deepEqual(chunks.map((c) => c.length), [4096, 4096, 10_240 - 8192, 32], `pieces of ${pieceBytes}`);
      const file = Buffer.concat(chunks);
      assert.deepEqual(file, fileBytes(payload));
      for (const feed of [1, 31, 32, 33, 5000]) {
        const v = new SnapshotFileVerifier();
        for (let off = 0; off < file.length; off += feed) v.push(file.subarray(off, off + feed));
        assert.equal(v.finish(), 10_240, `verifier fed ${feed} bytes at a time`);
      }
    }
  });

  it('the verifier gives etcd\'s messages: no checksum for a wrong size, a mismatch for a changed byte', () => {
    const file = fileBytes(Buffer.from('payload'));
    const short = new SnapshotFileVerifier();
    short.push(file.subarray(0, file.length - 1));
    assert.throws(() => short.finish(), /sha256 checksum not found/);
    const changed = Buffer.from(file);
    changed[3]! ^= 1;
    const bad = new SnapshotFileVerifier();
    bad.push(changed);
    assert.throws(() => bad.finish(), /integrity check failed: expected sha256 [0-9a-f]{64}, got [0-9a-f]{64}/);
  });

  it('the stream parser finds the end of the payload whatever the piece sizes, and reads its meta', () => {
    const p = backendStream(RECORDS);
    const withPadding = Buffer.concat([p, Buffer.alloc(paddingBytes(p.length))]);
    for (const pieceBytes of [1, 3, 17, 4096]) {
      const parser = new SnapshotStreamParser();
      let used = 0;
      let records = 0;
      for (let off = 0; off < withPadding.length; off += pieceBytes) {
        const r = parser.push(withPadding.subarray(off, off + pieceBytes));
        used += r.usedBytes;
        records += r.records.length;
      }
      parser.finish();
      assert.ok(parser.done);
      assert.equal(used, p.length, `pieces of ${pieceBytes}`);
      assert.equal(records, RECORDS.length);
      assert.equal(parser.records, RECORDS.length);
      assert.deepEqual(parser.meta, { appliedIndex: 7, appliedTerm: 2 });
    }
  });

  it('the stream parser rejects a stream that is not a quorumkv snapshot, or one cut short', () => {
    assert.throws(() => new SnapshotStreamParser().push(Buffer.alloc(64, 1)), /bad magic/);
    const cut = new SnapshotStreamParser();
    cut.push(backendStream(RECORDS).subarray(0, 40));
    assert.throws(() => cut.finish(), /truncated/);
  });

  describe('files on disk', () => {
    let dir: string;
    beforeEach(() => (dir = tempDir('quorumkv-snapfile-')));
    afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

    it('a file whose size is not n % 512 == 32 has no checksum (etcdctl: "sha256 checksum not found")', async () => {
      const f = path.join(dir, 's.db');
      fs.writeFileSync(f, backendStream(RECORDS));
      await assert.rejects(verifySnapshotFile(f), /sha256 checksum not found/);
    });

    it('a flipped byte fails the SHA-256 check', async () => {
      const f = path.join(dir, 's.db');
      const bytes = fileBytes(backendStream(RECORDS));
      bytes[30] = bytes[30]! ^ 0x01;
      fs.writeFileSync(f, bytes);
      await assert.rejects(verifySnapshotFile(f), /integrity check failed: expected sha256/);
    });

    it('an earlier quorumkv file: records, meta, revision and payload CRC; non-zero padding is refused', async () => {
      const f = path.join(dir, 's.db');
      const p = backendStream(RECORDS);
      fs.writeFileSync(f, fileBytes(p));
      const stats = emptyBackendStreamFileStats();
      const batches: [Buffer, Buffer][][] = [];
      for await (const b of readBackendStreamFile(f, await verifySnapshotFile(f), stats)) batches.push(b);
      assert.deepEqual(batches.flat(), RECORDS);
      assert.deepEqual(stats.meta, { appliedIndex: 7, appliedTerm: 2 });
      assert.equal(stats.records, RECORDS.length);
      assert.equal(stats.currentRevision, 42);
      const bad = Buffer.concat([p, Buffer.alloc(paddingBytes(p.length), 7)]);
      fs.writeFileSync(f, Buffer.concat([bad, createHash('sha256').update(bad).digest()]));
      const read = async () => {
        for await (const _ of readBackendStreamFile(f, await verifySnapshotFile(f), emptyBackendStreamFileStats())) {
          // reading is the check
        }
      };
      await assert.rejects(read(), /unexpected data after the snapshot payload/);
    });
  });
});
