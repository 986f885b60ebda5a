// When a member takes a Raft snapshot (src/server/snapshot.ts, "take"): every --snapshot-count
// applied entries, and also once the applied entries since the last one reach SNAPSHOT_BYTES, so
// that a log of large entries does not live in memory by the gigabyte until the count is reached.
import assert from 'node:assert/strict';
import { Snapshotter, SNAPSHOT_BYTES, SNAPSHOT_CATCH_UP_BYTES, SNAPSHOT_CATCH_UP_ENTRIES } from '../../src/server/snapshot';
import type { RaftNode, SnapshotKeep } from '../../src/server/raft_node';
import type { Server } from '../../src/server/server';
import { Logger } from '../../src/util/log';

interface Taken {
  index: number;
  keep: SnapshotKeep;
}

function snapshotter(o: { snapshotCount: number; snapshotBytes?: number }): { s: Snapshotter; taken: Taken[]; commits: number[] } {
  const taken: Taken[] = [];
  const commits: number[] = [];
  const server = {
    durableBackend: {
      commit: async (index: number, _term: number, sync: boolean) => {
        assert.ok(sync, 'the backend is committed durably before the WAL forgets entries');
        commits.push(index);
      },
    },
    membership: { confState: () => ({ voters: [1n], learners: [] }) },
  } as unknown as Server;
  const raft = {
    snapshot: async (index: number, keep: SnapshotKeep) => void taken.push({ index, keep }),
  } as unknown as RaftNode;
  const s = new Snapshotter({
    server: () => server,
    raftNode: () => raft,
    memberDir: '/nonexistent',
    log: new Logger('error'),
    snapshotCount: o.snapshotCount,
    snapshotBytes: o.snapshotBytes,
    appliedIndex: 0,
    onStateInstalled: () => undefined,
  });
  return { s, taken, commits };
}

const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('Snapshotter: when a snapshot is taken', () => {
  it('by count: every --snapshot-count applied entries, small entries never reaching the byte bound', async () => {
    const { s, taken } = snapshotter({ snapshotCount: 100 });
    for (let i = 1; i <= 250; i++) {
      s.onApplied(i, 2, 300);
      await settle();
    }
    assert.deepEqual(
      taken.map((t) => t.index),
      [100, 200],
    );
    assert.deepEqual(taken[0]!.keep, { entries: SNAPSHOT_CATCH_UP_ENTRIES, bytes: SNAPSHOT_CATCH_UP_BYTES });
  });

  it('by bytes: once the applied entries since the last snapshot reach the bound, before the count', async () => {
    const { s, taken, commits } = snapshotter({ snapshotCount: 10_000, snapshotBytes: 1_000_000 });
    for (let i = 1; i <= 25; i++) {
      s.onApplied(i, 2, 100_000); // e.g. a Txn of 25 puts of 4 KiB
      await settle();
    }
    assert.deepEqual(
      taken.map((t) => t.index),
      [10, 20],
      'a snapshot each 1,000,000 bytes',
    );
    assert.deepEqual(commits, [10, 20]);
  });

  it('counts the bytes applied while a snapshot is being taken towards the next one', async () => {
    const { s, taken } = snapshotter({ snapshotCount: 10_000, snapshotBytes: 1_000_000 });
    s.onApplied(1, 2, 1_000_000); // due: taking starts
    s.onApplied(2, 2, 600_000); // during the take
    await settle();
    await settle();
    assert.deepEqual(
      taken.map((t) => t.index),
      [1],
    );
    s.onApplied(3, 2, 400_000);
    await settle();
    assert.deepEqual(
      taken.map((t) => t.index),
      [1, 3],
      '600,000 + 400,000 bytes since the first was started',
    );
  });

  it('the default byte bound is set, and above what the catch-up keeps', () => {
    assert.ok(SNAPSHOT_BYTES > SNAPSHOT_CATCH_UP_BYTES && SNAPSHOT_CATCH_UP_BYTES > 0);
  });
});
