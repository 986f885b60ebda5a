// `quorumkv snapshot restore|status` on snapshot files (layout: storage/snapshot_file.ts): the
// integrity checks made before a data dir is touched, status of an earlier quorumkv file, and
// sizes printed as etcdctl prints them.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { paddingBytes } from '../../src/storage/snapshot_file';
import { humanizeBytes, restoreSnapshot, snapshotStatus } from '../../src/cli/snapshot';
import { tempDir } from '../integration/harness';
import { RECORDS, backendStream, fileBytes } from '../storage/snapshot_helpers';

describe('quorumkv snapshot restore|status', () => {
  describe('file checks', () => {
    let dir: string;
    beforeEach(() => (dir = tempDir('quorumkv-snapfile-')));
    afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

    it('status of an earlier quorumkv file: revision, record count and size; non-zero padding is refused', async () => {
      const f = path.join(dir, 's.db');
      fs.writeFileSync(f, fileBytes(backendStream(RECORDS)));
      const s = await snapshotStatus(f);
      assert.deepEqual({ revision: s.revision, totalKey: s.totalKey, totalSize: s.totalSize }, { revision: 42, totalKey: 4, totalSize: fs.statSync(f).size });
      const p = backendStream(RECORDS);
      const bad = Buffer.concat([p, Buffer.alloc(paddingBytes(p.length), 7)]);
      fs.writeFileSync(f, Buffer.concat([bad, createHash('sha256').update(bad).digest()]));
      await assert.rejects(snapshotStatus(f), /unexpected data after the snapshot payload/);
    });

    it('restore refuses a non-empty data dir before reading the file', async () => {
      const dataDir = path.join(dir, 'data');
      fs.mkdirSync(dataDir);
      fs.writeFileSync(path.join(dataDir, 'something'), 'x');
      const f = path.join(dir, 's.db');
      fs.writeFileSync(f, fileBytes(backendStream(RECORDS)));
      const opts = { dataDir, name: 'default', initialCluster: new Map([['default', ['http://127.0.0.1:2380']]]), initialClusterToken: 'etcd-cluster' };
      await assert.rejects(restoreSnapshot(f, opts), /exists and is not empty/);
      assert.deepEqual(fs.readdirSync(dataDir), ['something']);
    });

    it('a failed restore leaves no data dir behind', async () => {
      const dataDir = path.join(dir, 'data');
      const f = path.join(dir, 's.db');
      // Valid hash and framing, but the record count in the trailer is wrong.
      const p = backendStream(RECORDS);
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
