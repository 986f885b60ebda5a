// Opening a data dir (src/server/bootstrap.ts openStorage): the backend is loaded and the WAL read
// at the same time, and a restart recovers exactly what was saved; when either fails, the start
// is refused with that failure, and whatever had opened (the other one, the data-dir lock) is
// closed, so that the same process can try again.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseServerFlags } from '../../src/config/flags';
import { openStorage, type OpenedStorage } from '../../src/server/bootstrap';
import { WalCorruptionError } from '../../src/storage/wal';
import { Logger } from '../../src/util/log';

const log = new Logger('error');

function config(dataDir: string) {
  return parseServerFlags(['--name=m1', `--data-dir=${dataDir}`, '--initial-cluster=m1=http://127.0.0.1:2380', '--initial-advertise-peer-urls=http://127.0.0.1:2380'], {});
}

async function close(st: OpenedStorage): Promise<void> {
  await st.wal.close();
  await st.backend.close();
  st.lock.release();
}

describe('openStorage: the backend and the WAL of a data dir', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'quorumkv-bootstrap-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('a restart recovers the identity, the hard state and the entries the first start wrote', async () => {
    const first = await openStorage(config(dir), log);
    assert.equal(first.recovered.entries.length, 1, 'the bootstrap log of a one-member cluster');
    await first.wal.save({ term: 2, vote: first.memberId, commit: 1 }, [{ term: 2, index: 2, type: 0, data: Buffer.from('payload') }]);
    await close(first);
    const again = await openStorage(config(dir), log);
    try {
      assert.equal(again.memberId, first.memberId);
      assert.equal(again.clusterId, first.clusterId);
      assert.deepEqual(again.recovered.hardState, { term: 2, vote: first.memberId, commit: 1 });
      assert.deepEqual(
        again.recovered.entries.map((e) => [e.index, e.term]),
        [
          [1, 1],
          [2, 2],
        ],
      );
      assert.equal(Buffer.from(again.recovered.entries[1]!.data).toString(), 'payload');
      assert.equal(again.recovered.appliedIndex, 0, 'nothing was applied to the backend');
    } finally {
      await close(again);
    }
  });

  it('a corrupt WAL refuses the start with its error, and leaves the backend and the lock closed (a second try gets the same error)', async () => {
    await close(await openStorage(config(dir), log));
    const walDir = path.join(dir, 'member', 'wal');
    const segment = path.join(walDir, fs.readdirSync(walDir).find((f) => f.endsWith('.wal'))!);
    const fd = fs.openSync(segment, 'r+');
    try {
      fs.writeSync(fd, Buffer.from([0xff, 0xfe, 0xfd]), 0, 3, 24); // inside the start batch
    } finally {
      fs.closeSync(fd);
    }
    for (let attempt = 1; attempt <= 2; attempt++) {
      await assert.rejects(openStorage(config(dir), log), (err: unknown) => {
        assert.ok(err instanceof WalCorruptionError, `attempt ${attempt}: ${String(err)}`);
        return true;
      });
    }
  });
});
