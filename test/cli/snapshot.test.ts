// Snapshot files as `etcdctl snapshot save` stores them (payload, zero padding to 512 bytes,
// SHA-256): the framing walk that finds the end of the payload, and the integrity checks that
// `quorumkv snapshot restore|status` make before touching a data dir.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { SNAPSHOT_ALIGN_BYTES, SNAPSHOT_SHA256_BYTES, SnapshotFraming, paddingBytes } from '../../src/api/maintenance_service';
import { SNAPSHOT_MAGIC } from '../../src/storage/backend/snapshot';
import { humanizeBytes, restoreSnapshot, snapshotStatus, verifySnapshotFile } from '../../src/cli/snapshot';
import { tempDir } from '../integration/harness';

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}
function u64(n: number | bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

/** A backend snapshot stream in storage/backend/snapshot.ts's format. */
function payload(records: [Buffer, Buffer][], appliedIndex = 7, appliedTerm = 2): Buffer {
  const parts = [SNAPSHOT_MAGIC, u64(appliedIndex), u64(appliedTerm)];
  for (const [k, v] of records) parts.push(u32(k.length), k, u32(v.length), v);
  parts.push(u32(0xffffffff), u64(records.length), u32(0)); // CRC unchecked by the framing walk
  return Buffer.concat(parts);
}

function fileBytes(p: Buffer): Buffer {
  const padded = Buffer.concat([p, Buffer.alloc(paddingBytes(p.length))]);
  return Buffer.concat([padded, createHash('sha256').update(padded).digest()]);
}

const currentRevKey = Buffer.concat([Buffer.from([0x6d]), Buffer.from('current_revision')]);
const RECORDS: [Buffer, Buffer][] = [
  [Buffer.from('k0000000000001'), Buffer.from('value one')],
  [Buffer.from('k0000000000002'), Buffer.alloc(0)],
  [currentRevKey, u64(42)],
  [Buffer.from('m_applied_index'), u64(7)],
];

describe('snapshot files (etcdctl snapshot save layout)', () => {
  it('padding brings the payload to a multiple of 512 bytes, so size % 512 == 32 with the hash', () => {
    for (const n of [1, 24, 511, 512, 513, 100_000]) {
      const total = n + paddingBytes(n) + SNAPSHOT_SHA256_BYTES;
      assert.equal(total % SNAPSHOT_ALIGN_BYTES, SNAPSHOT_SHA256_BYTES, `payload of ${n} bytes`);
      assert.ok(paddingBytes(n) < SNAPSHOT_ALIGN_BYTES);
    }
  });

  it('the framing walk finds the end of the payload whatever the piece sizes, and reads its meta', () => {
    const p = payload(RECORDS);
    const withPadding = Buffer.concat([p, Buffer.alloc(paddingBytes(p.length))]);
    for (const pieceBytes of [1, 3, 17, 4096]) {
      const f = new SnapshotFraming();
      let taken = 0;
      for (let off = 0; off < withPadding.length; off += pieceBytes) taken += f.push(withPadding.subarray(off, off + pieceBytes));
      assert.ok(f.done);
      assert.equal(taken, p.length, `pieces of ${pieceBytes}`);
      assert.equal(f.payloadBytes, p.length);
      assert.equal(f.records, RECORDS.length);
      assert.equal(f.currentRevision, 42);
      assert.equal(f.appliedIndex, 7);
      assert.equal(f.appliedTerm, 2);
    }
  });

  it('the framing walk rejects a stream that is not a quorumkv snapshot', () => {
    assert.throws(() => new SnapshotFraming().push(Buffer.alloc(64, 1)), /bad magic/);
  });

  describe('file checks', () => {
    let dir: string;
    beforeEach(() => (dir = tempDir('quorumkv-snapfile-')));
    afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

    it('a file whose size is not n % 512 == 32 has no checksum (etcdctl: "sha256 checksum not found")', async () => {
      const f = path.join(dir, 's.db');
      fs.writeFileSync(f, payload(RECORDS));
      await assert.rejects(verifySnapshotFile(f), /sha256 checksum not found/);
    });

    it('a flipped byte fails the SHA-256 check', async () => {
      const f = path.join(dir, 's.db');
      const bytes = fileBytes(payload(RECORDS));
      bytes[30] = bytes[30]! ^ 0x01;
      fs.writeFileSync(f, bytes);
      await assert.rejects(verifySnapshotFile(f), /integrity check failed: expected sha256/);
    });

    it('status reads revision, record count and size; non-zero padding is refused', async () => {
      const f = path.join(dir, 's.db');
      fs.writeFileSync(f, fileBytes(payload(RECORDS)));
      const s = await snapshotStatus(f);
      assert.deepEqual({ revision: s.revision, totalKey: s.totalKey, totalSize: s.totalSize }, { revision: 42, totalKey: 4, totalSize: fs.statSync(f).size });
      const p = payload(RECORDS);
      const bad = Buffer.concat([p, Buffer.alloc(paddingBytes(p.length), 7)]);
      fs.writeFileSync(f, Buffer.concat([bad, createHash('sha256').update(bad).digest()]));
      await assert.rejects(snapshotStatus(f), /unexpected data after the snapshot payload/);
    });

    it('restore refuses a non-empty data dir before reading the file', async () => {
      const dataDir = path.join(dir, 'data');
      fs.mkdirSync(dataDir);
      fs.writeFileSync(path.join(dataDir, 'something'), 'x');
      const f = path.join(dir, 's.db');
      fs.writeFileSync(f, fileBytes(payload(RECORDS)));
      const opts = { dataDir, name: 'default', initialCluster: new Map([['default', ['http://127.0.0.1:2380']]]), initialClusterToken: 'etcd-cluster' };
      await assert.rejects(restoreSnapshot(f, opts), /exists and is not empty/);
      assert.deepEqual(fs.readdirSync(dataDir), ['something']);
    });

    it('a failed restore leaves no data dir behind', async () => {
      const dataDir = path.join(dir, 'data');
      const f = path.join(dir, 's.db');
      // Valid hash and framing, but the record count in the trailer is wrong.
      const p = payload(RECORDS);
      p.writeBigUInt64BE(99n, p.length - 12);
      fs.writeFileSync(f, fileBytes(p));
      const opts = { dataDir, name: 'default', initialCluster: new Map([['default', ['http://127.0.0.1:2380']]]), initialClusterToken: 'etcd-cluster' };
      await assert.rejects(restoreSnapshot(f, opts), /record count/);
      assert.equal(fs.existsSync(dataDir), false);
    });
  });

  it('sizes print as etcdctl prints them (go-humanize, SI units)', () => {
    assert.equal(humanizeBytes(0), '0 B');
    assert.equal(humanizeBytes(544), '544 B');
    assert.equal(humanizeBytes(20480), '20 kB');
    assert.equal(humanizeBytes(1500), '1.5 kB');
    assert.equal(humanizeBytes(2_500_000), '2.5 MB');
  });
});
