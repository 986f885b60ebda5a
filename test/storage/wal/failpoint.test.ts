// The walWriteError failpoint (QUORUMKV_FAILPOINTS): the WAL's write fails the way libuv reports a
// real EIO, after half of the batch reached the file (a torn write), and from there on the error
// takes the real path: the Wal fails for good, and a restart cuts the torn batch off.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Wal, WalFailedError, isWalOutOfSpace, walErrnoCode } from '../../../src/storage/wal';
import { watchFailpoints } from '../../../src/util/failpoints';
import { META, SMALL, cleanup, ents, hs, tmpDir } from './helpers';

describe('wal: the walWriteError failpoint', () => {
  const file = path.join(tmpDir('failpoints'), 'failpoints.json');
  afterEach(() => watchFailpoints(undefined));
  after(cleanup);

  it('EIO: the write fails as a real one (code, errno, syscall), the Wal refuses everything after it, a restart truncates the torn half-batch', async () => {
    const dir = path.join(tmpDir('fp-eio'), 'wal');
    fs.writeFileSync(file, '{}');
    watchFailpoints(file);
    const wal = await Wal.create(dir, META, { ...SMALL, fsync: true });
    await wal.save(hs(1, 0), ents(1, 5, 1, 200));
    const before = wal.tail.offset;
    fs.writeFileSync(file, JSON.stringify({ walWriteError: 'EIO' }));
    watchFailpoints(file); // re-read now instead of at the next poll
    const err = await wal.save(hs(1, 5), ents(6, 10, 1, 200)).catch((e: unknown) => e);
    assert.ok(err instanceof WalFailedError, String(err));
    const cause = err.cause as NodeJS.ErrnoException;
    assert.equal(cause.code, 'EIO');
    assert.equal(cause.errno, -5);
    assert.equal(cause.syscall, 'write');
    assert.equal(cause.message, 'EIO: i/o error, write');
    assert.equal(walErrnoCode(err), 'EIO');
    assert.equal(isWalOutOfSpace(err), false);
    // Refused for good, whatever the failpoint says now.
    fs.writeFileSync(file, '{}');
    watchFailpoints(file);
    await assert.rejects(wal.save(hs(1, 5), ents(6, 6, 1)), WalFailedError);
    await wal.close();

    const { wal: w2, state } = await Wal.open(dir, SMALL);
    assert.deepEqual(state.entries.map((e) => e.index), [1, 2, 3, 4, 5]);
    assert.ok(state.tornTail, 'the half-written batch is reported as a torn tail');
    assert.equal(state.tornTail.offset, before);
    assert.ok(state.tornTail.droppedBytes > 0);
    await w2.save(hs(1, 6), ents(6, 6, 1));
    await w2.close();
    const again = await Wal.open(dir, SMALL);
    assert.deepEqual(again.state.entries.map((e) => e.index), [1, 2, 3, 4, 5, 6]);
    await again.wal.close();
  });

  it('ENOSPC is reported as out of space (the member then stays up, refusing writes)', async () => {
    fs.writeFileSync(file, JSON.stringify({ walWriteError: 'ENOSPC' }));
    watchFailpoints(file);
    // Creating a WAL writes too: it fails the same way, and leaves no WAL behind.
    const createDir = path.join(tmpDir('fp-enospc-create'), 'wal');
    await assert.rejects(Wal.create(createDir, META, SMALL), (e: NodeJS.ErrnoException) => e.code === 'ENOSPC' && e.syscall === 'write');
    assert.equal(await Wal.exists(createDir), false);
    watchFailpoints(undefined);
    const wal = await Wal.create(path.join(tmpDir('fp-enospc'), 'wal'), META, SMALL);
    await wal.save(hs(1, 0), ents(1, 2, 1));
    watchFailpoints(file);
    const err = await wal.save(hs(1, 2), ents(3, 3, 1)).catch((e: unknown) => e);
    assert.ok(err instanceof WalFailedError, String(err));
    assert.equal(walErrnoCode(err), 'ENOSPC');
    assert.equal(isWalOutOfSpace(err), true);
    assert.match(err.message, /no space left on device/);
    await wal.close();
  });

  it('off (no file, an empty file, or a file removed): writes go through', async () => {
    watchFailpoints(undefined);
    const dir = path.join(tmpDir('fp-off'), 'wal');
    const wal = await Wal.create(dir, META, SMALL);
    await wal.save(hs(1, 0), ents(1, 3, 1));
    fs.writeFileSync(file, '');
    watchFailpoints(file);
    await wal.save(hs(1, 3), ents(4, 4, 1));
    fs.rmSync(file);
    watchFailpoints(file);
    await wal.save(hs(1, 4), ents(5, 5, 1));
    await wal.close();
    const { wal: w2, state } = await Wal.open(dir, SMALL);
    assert.equal(state.entries.length, 5);
    await w2.close();
  });
});
