// Restore and status of snapshot files (server/restore.ts, behind `quorumkv snapshot
// restore|status`): the integrity checks made before a data dir is touched, a restore of an
// earlier quorumkv file that a member can start from (backend at the snapshot's index, membership
// from --initial-cluster, a WAL that starts at the snapshot), and status of such a file.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { paddingBytes } from '../../src/storage/snapshot_file';
import { Backend, encodeKv, kvRecordKey } from '../../src/storage/backend/backend';
import { META_APPLIED_INDEX, META_APPLIED_TERM, META_CURRENT_REV, NS_MEMBER, idKey, u64 } from '../../src/storage/backend/records';
import { Wal } from '../../src/storage/wal';
import { restoreSnapshot, snapshotStatus } from '../../src/server/restore';
import { lockDataDir } from '../../src/storage/lock';
import { tempDir } from '../integration/harness';
import { RECORDS, backendStream, fileBytes } from '../storage/snapshot_helpers';

const INITIAL = { name: 'default', initialCluster: new Map([['default', ['http://127.0.0.1:2380']]]), initialClusterToken: 'etcd-cluster' };

describe('snapshot restore and status', function () {
  this.timeout(30_000);
  let dir: string;
  beforeEach(() => (dir = tempDir('quorumkv-restore-')));
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

  it('an earlier quorumkv file restores into a backend at its index, with --initial-cluster as membership and a WAL from the snapshot', async () => {
    const kv = { key: 'a', value: '1', createRevision: 2, modRevision: 2, version: 1, lease: 0n };
    const records: [Buffer, Buffer][] = [
      [kvRecordKey(2, 0), encodeKv(kv)],
      [idKey(NS_MEMBER, 99n), Buffer.from('{"id":"99","name":"old","peerURLs":[],"clientURLs":[],"isLearner":false}')],
      [META_APPLIED_INDEX, u64(7)],
      [META_APPLIED_TERM, u64(2)],
      [META_CURRENT_REV, u64(2)],
    ].sort((x, y) => Buffer.compare(x[0] as Buffer, y[0] as Buffer)) as [Buffer, Buffer][];
    const f = path.join(dir, 's.db');
    fs.writeFileSync(f, fileBytes(backendStream(records, 7, 2)));
    const dataDir = path.join(dir, 'data');
    const progress: number[] = [];
    const r = await restoreSnapshot(f, { ...INITIAL, dataDir, onProgress: (done, total) => progress.push(done / total) });
    assert.deepEqual({ meta: r.meta, revision: r.revision }, { meta: { appliedIndex: 7, appliedTerm: 2 }, revision: 2 });
    assert.equal(progress.at(-1), 1);
    const backend = await Backend.open(path.join(dataDir, 'member', 'backend'));
    try {
      const loaded = await backend.load();
      assert.equal(loaded.appliedIndex, 7);
      assert.deepEqual(loaded.store.range(Buffer.from('a'), undefined).kvs.map((x) => x.value), ['1']);
      assert.deepEqual(loaded.members.map((b) => JSON.parse(b.toString()).id), [r.memberId.toString()], 'the snapshot\'s members are dropped');
    } finally {
      await backend.close();
    }
    const wal = await Wal.open(path.join(dataDir, 'member', 'wal'));
    try {
      assert.deepEqual(wal.state.snapshot, { index: 7, term: 2 });
      assert.equal(wal.state.hardState.commit, 7);
    } finally {
      await wal.wal.close();
    }
  });

  it('restore refuses a non-empty data dir before reading the file', async () => {
    const dataDir = path.join(dir, 'data');
    fs.mkdirSync(dataDir);
    fs.writeFileSync(path.join(dataDir, 'something'), 'x');
    const f = path.join(dir, 's.db');
    fs.writeFileSync(f, fileBytes(backendStream(RECORDS)));
    await assert.rejects(restoreSnapshot(f, { ...INITIAL, dataDir }), /exists and is not empty/);
    assert.deepEqual(fs.readdirSync(dataDir), ['something']);
  });

  it('a failed restore leaves no data dir behind', async () => {
    const dataDir = path.join(dir, 'data');
    const f = path.join(dir, 's.db');
    // Valid hash and framing, but the record count in the trailer is wrong.
    const p = backendStream(RECORDS);
    p.writeBigUInt64BE(99n, p.length - 12);
    fs.writeFileSync(f, fileBytes(p));
    await assert.rejects(restoreSnapshot(f, { ...INITIAL, dataDir }), /record count/);
    assert.equal(fs.existsSync(dataDir), false);
  });

  it('a failed restore into an existing empty dir leaves it empty (its lock too), so it can be rerun', async () => {
    const dataDir = path.join(dir, 'data');
    fs.mkdirSync(dataDir);
    const f = path.join(dir, 's.db');
    const p = backendStream(RECORDS);
    p.writeBigUInt64BE(99n, p.length - 12);
    fs.writeFileSync(f, fileBytes(p));
    await assert.rejects(restoreSnapshot(f, { ...INITIAL, dataDir }), /record count/);
    assert.deepEqual(fs.readdirSync(dataDir), []);
  });

  it('restore takes the data-dir lock: with the dir locked (a member starting on it) it is refused', async () => {
    const dataDir = path.join(dir, 'data');
    fs.mkdirSync(dataDir);
    const lock = await lockDataDir(dataDir);
    try {
      const f = path.join(dir, 's.db');
      fs.writeFileSync(f, fileBytes(backendStream(RECORDS)));
      // The lock database itself is the only thing in the dir: the refusal is the lock's.
      await assert.rejects(restoreSnapshot(f, { ...INITIAL, dataDir }), /in use/);
      assert.equal(fs.existsSync(path.join(dataDir, 'member')), false);
    } finally {
      lock.release();
    }
  });
});
