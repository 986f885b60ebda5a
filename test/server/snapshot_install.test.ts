// Snapshotter.install on a real backend directory, with the server and Raft faked at their seams:
// a snapshot is written into a new backend as it streams in, swapped in and loaded (values spilled
// when --hot-value-bytes is set); a second snapshot arriving during an install waits for it and is
// then found stale (coalesced, not failed); a stream that breaks midway leaves the member's backend
// as it was and no partial copy behind; what a crash during an install leaves is sorted out at the
// next start.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MvccStore } from '../../src/mvcc';
import type { Message } from '../../src/raft';
import { Backend, type LoadedState } from '../../src/storage/backend/backend';
import { finishInterruptedSnapshotInstall } from '../../src/server/snapshot';
import { msgSnap as seamMsgSnap, seamedSnapshotter } from './snapshot_seams';
import * as fsyncDir from '../../src/util/fsync_dir';
import { Logger } from '../../src/util/log';

const B = (s: string) => Buffer.from(s);

async function fill(backend: Backend, store: MvccStore, keys: number, prefix: string): Promise<number> {
  let index = 0;
  for (let i = 0; i < keys; i++) {
    const txn = store.write();
    txn.put(B(`${prefix}${String(i).padStart(5, '0')}`), Buffer.alloc(2048, i & 255), 0n);
    const r = txn.end();
    backend.stageEvents(r.events, r.revision);
    if (i % 50 === 49) await backend.commit(++index, 4);
  }
  await backend.commit(++index, 4, true);
  return index;
}

const msgSnap = (index: number): Message => seamMsgSnap(index, 4);

/** The leader's stream, re-chunked and slowed (yields to timers between pieces); `breakAfter`
 *  pieces, it throws as a broken connection would. */
async function* leaderStream(source: AsyncIterable<Buffer>, breakAfter = Infinity): AsyncGenerator<Buffer> {
  let n = 0;
  for await (const c of source) {
    for (let off = 0; off < c.length; off += 64 * 1024) {
      if (n++ >= breakAfter) throw new Error('connection reset');
      await new Promise((r) => setTimeout(r, 1));
      yield c.subarray(off, off + 64 * 1024);
    }
  }
}

describe('Snapshotter.install (streamed into a new backend)', function () {
  this.timeout(60_000);
  let root: string;
  let leader: Backend;
  let leaderStore: MvccStore;
  let leaderIndex: number;
  before(async () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'quorumkv-snapinstall-'));
    leaderStore = new MvccStore();
    leader = await Backend.open(path.join(root, 'leader'));
    leaderIndex = await fill(leader, leaderStore, 1500, 'k');
  });
  after(async () => {
    await leader.close();
    fs.rmSync(root, { recursive: true, force: true });
  });

  async function follower(name: string, hotValueBytes?: number) {
    const memberDir = path.join(root, name);
    fs.mkdirSync(memberDir);
    const backend = await Backend.open(path.join(memberDir, 'backend'));
    const store = new MvccStore();
    await fill(backend, store, 10, 'old');
    const installed: LoadedState[] = [];
    const f = seamedSnapshotter({ memberDir, backend, store, committedIndex: 3, appliedIndex: 1, hotValueBytes, onInstalled: (l) => installed.push(l) });
    return { memberDir, snapshotter: f.snapshotter, store, installed, logLines: f.lines, backend: f.backend };
  }

  it('a second snapshot during an install waits for it and is then stale: one install, no failure; values spilled', async () => {
    const f = await follower('f1', 0);
    const first = await leader.openSnapshot();
    const second = await leader.openSnapshot();
    let secondRead = 0;
    const secondData = (async function* () {
      for await (const c of second.chunks) {
        secondRead += c.length;
        yield c;
      }
    })();
    const [r1, r2] = await Promise.allSettled([
      f.snapshotter.install(msgSnap(leaderIndex), leaderStream(first.chunks)),
      f.snapshotter.install(msgSnap(leaderIndex), secondData),
    ]);
    await second.close();
    assert.equal(r1.status, 'fulfilled', String((r1 as PromiseRejectedResult).reason));
    assert.equal(r2.status, 'fulfilled', String((r2 as PromiseRejectedResult).reason));
    assert.equal(f.installed.length, 1);
    assert.equal(secondRead, 0, 'the coalesced snapshot was not read');
    assert.ok(f.logLines.some((l) => l.includes('waits for the install in progress')));
    assert.deepEqual(f.store.hashKV(), leaderStore.hashKV());
    assert.equal(f.store.heapValueBytes, 0, 'every installed value spilled (--hot-value-bytes=0)');
    assert.ok(fs.existsSync(path.join(f.memberDir, 'spill.1')), 'the new store spills to the other directory');
    assert.ok(!fs.existsSync(path.join(f.memberDir, 'backend.incoming')));
    await f.backend().close();
    f.store.closeSpill();
  });

  it('the swap is durable before the install returns: the new backend entries synced before it is named, the member directory after the renames', async () => {
    const f = await follower('f6');
    const mutable = fsyncDir as unknown as { syncDirSync: (dir: string) => void };
    const real = mutable.syncDirSync;
    const synced: { dir: string; backendIsNew: boolean; incomingLeft: boolean }[] = [];
    mutable.syncDirSync = (dir: string) => {
      synced.push({
        dir,
        backendIsNew: fs.existsSync(path.join(f.memberDir, 'backend')) && !fs.existsSync(path.join(f.memberDir, 'backend.incoming')),
        incomingLeft: fs.existsSync(path.join(f.memberDir, 'backend.incoming')),
      });
      real(dir);
    };
    const snap = await leader.openSnapshot();
    try {
      await f.snapshotter.install(msgSnap(leaderIndex), leaderStream(snap.chunks));
    } finally {
      mutable.syncDirSync = real;
      await snap.close();
    }
    assert.equal(f.installed.length, 1);
    const incoming = synced.findIndex((e) => e.dir === path.join(f.memberDir, 'backend.incoming') && e.incomingLeft);
    const member = synced.findIndex((e) => e.dir === f.memberDir && e.backendIsNew);
    assert.ok(incoming >= 0, `backend.incoming synced before its rename: ${JSON.stringify(synced)}`);
    assert.ok(member > incoming, `the member directory synced after the renames: ${JSON.stringify(synced)}`);
    await f.backend().close();
    f.store.closeSpill();
  });

  it('a corrupt record that the store would refuse (revision out of order) fails the install as a corrupt stream, not an assertion', async () => {
    const f = await follower('f4');
    const before = f.store.hashKV();
    const { chunks } = await leader.openSnapshot();
    const parts: Buffer[] = [];
    for await (const c of chunks) parts.push(c);
    const all = Buffer.concat(parts);
    // Records after the 24-byte header: u32 key length | key | u32 value length | value. The second
    // version's revision (key bytes 1-8) goes to 0: below the first, so the store's import asserts.
    let off = 24;
    let versions = 0;
    for (;;) {
      const klen = all.readUInt32BE(off);
      const key = all.subarray(off + 4, off + 4 + klen);
      if (key[0] === 0x6b && ++versions === 2) {
        key.fill(0, 1, 9);
        break;
      }
      off += 8 + klen + all.readUInt32BE(off + 4 + klen);
    }
    await assert.rejects(
      f.snapshotter.install(msgSnap(leaderIndex), leaderStream((async function* () { yield all; })())),
      (err: Error) => err.name === 'SnapshotFormatError' && /checksum mismatch/.test(err.message),
    );
    assert.ok(f.logLines.some((l) => l.includes('loading its records had failed before')), 'the load\'s failure is logged');
    assert.equal(f.installed.length, 0);
    assert.ok(!fs.existsSync(path.join(f.memberDir, 'backend.incoming')));
    assert.deepEqual(f.store.hashKV(), before);
  });

  it('a stream that breaks midway fails the install; the old backend is untouched and no partial copy is left', async () => {
    const f = await follower('f2');
    const before = f.store.hashKV();
    const { chunks, close } = await leader.openSnapshot();
    await assert.rejects(f.snapshotter.install(msgSnap(leaderIndex), leaderStream(chunks, 20)), /connection reset/);
    await close();
    assert.equal(f.installed.length, 0);
    assert.ok(!fs.existsSync(path.join(f.memberDir, 'backend.incoming')));
    assert.deepEqual(f.store.hashKV(), before);
    // The member's backend is still open and holds the old state.
    const loaded = await f.backend().load();
    assert.deepEqual(loaded.store.hashKV(), before);
    // And a whole stream afterwards installs.
    const again = await leader.openSnapshot();
    await f.snapshotter.install(msgSnap(leaderIndex), again.chunks);
    assert.equal(f.installed.length, 1);
    assert.deepEqual(f.store.hashKV(), leaderStore.hashKV());
    await f.backend().close();
  });
});

// What a kill -9 can leave under member/ during an install, and what the next start makes of it
// (before the backend opens): the member's own backend unless the swap had begun.
describe('finishInterruptedSnapshotInstall (the start after a crash during an install)', () => {
  let memberDir: string;
  let lines: string[];
  let log: Logger;
  beforeEach(() => {
    memberDir = fs.mkdtempSync(path.join(os.tmpdir(), 'quorumkv-snapcrash-'));
    lines = [];
    log = new Logger('info', {}, (l) => lines.push(l));
  });
  afterEach(() => fs.rmSync(memberDir, { recursive: true, force: true }));
  const mark = (dir: string, what: string) => {
    fs.mkdirSync(path.join(memberDir, dir), { recursive: true });
    fs.writeFileSync(path.join(memberDir, dir, 'WHICH'), what);
  };
  const which = (dir: string) => fs.readFileSync(path.join(memberDir, dir, 'WHICH'), 'utf8');

  it('killed while receiving or loading: the partial backend.incoming is removed, the old backend kept', () => {
    mark('backend', 'old state');
    mark('backend.incoming', 'half a snapshot');
    mark('spill.1', 'the new store spill');
    finishInterruptedSnapshotInstall(memberDir, log);
    assert.equal(which('backend'), 'old state');
    assert.ok(!fs.existsSync(path.join(memberDir, 'backend.incoming')));
    assert.ok(!fs.existsSync(path.join(memberDir, 'spill.1')));
    assert.match(lines.join('\n'), /removing a snapshot that a crash cut short/);
  });

  it('killed between the two renames: the verified snapshot becomes the backend', () => {
    mark('backend.old', 'old state');
    mark('backend.incoming', 'whole snapshot');
    finishInterruptedSnapshotInstall(memberDir, log);
    assert.equal(which('backend'), 'whole snapshot');
    assert.ok(!fs.existsSync(path.join(memberDir, 'backend.incoming')));
    assert.ok(!fs.existsSync(path.join(memberDir, 'backend.old')));
    assert.match(lines.join('\n'), /completing a snapshot install/);
  });

  it('killed after the swap, before backend.old was removed: the new backend stays', () => {
    mark('backend', 'whole snapshot');
    mark('backend.old', 'old state');
    finishInterruptedSnapshotInstall(memberDir, log);
    assert.equal(which('backend'), 'whole snapshot');
    assert.ok(!fs.existsSync(path.join(memberDir, 'backend.old')));
  });

  it('a clean member directory is left as it is, silently', () => {
    mark('backend', 'state');
    finishInterruptedSnapshotInstall(memberDir, log);
    assert.equal(which('backend'), 'state');
    assert.deepEqual(lines, []);
  });
});
