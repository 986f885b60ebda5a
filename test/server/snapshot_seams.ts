// A follower's Snapshotter (src/server/snapshot.ts) on a real backend directory, with the server
// and Raft faked at their seams: the server's durable backend and installState, Raft's committed
// index and installSnapshot. Shared by test/server/snapshot_install.test.ts and
// scripts/bench-install.ts (the receiver alone).
import { MvccStore } from '../../src/mvcc';
import { MessageType, newMessage, type Message } from '../../src/raft';
import type { Backend, LoadedState } from '../../src/storage/backend/backend';
import { Snapshotter } from '../../src/server/snapshot';
import type { RaftNode } from '../../src/server/raft_node';
import type { Server } from '../../src/server/server';
import { Logger } from '../../src/util/log';

/** The leader's MsgSnap for a snapshot at `index` (members 1 and 2, from 1 to 2). */
export function msgSnap(index: number, term: number): Message {
  return newMessage({
    type: MessageType.MsgSnap,
    from: 1n,
    to: 2n,
    term,
    snapshot: { data: new Uint8Array(0), metadata: { index, term, confState: { voters: [1n, 2n], learners: [] } } },
  });
}

export interface SeamedFollower {
  snapshotter: Snapshotter;
  /** The member's backend: the one given, then each installed one. */
  backend(): Backend;
  /** The Snapshotter's log lines (JSON). */
  lines: string[];
}

/** A Snapshotter for `memberDir` whose member serves `backend` and `store` (an install replaces
 *  both: `store` takes the loaded state), Raft at `committedIndex` (an installed snapshot moves it). */
export function seamedSnapshotter(o: {
  memberDir: string;
  backend: Backend;
  store: MvccStore;
  committedIndex: number;
  appliedIndex: number;
  hotValueBytes: number | undefined;
  onInstalled?: (loaded: LoadedState) => void;
}): SeamedFollower {
  let backend = o.backend;
  let committedIndex = o.committedIndex;
  const server = {
    get durableBackend() {
      return backend;
    },
    installState: async (b: Backend, loaded: LoadedState) => {
      backend = b;
      o.store.replaceWith(loaded.store);
      o.onInstalled?.(loaded);
    },
  } as unknown as Server;
  const raft = {
    get committedIndex() {
      return committedIndex;
    },
    installSnapshot: (_from: bigint, _term: number, snap: { metadata: { index: number } }) => {
      committedIndex = snap.metadata.index;
      return true;
    },
  } as unknown as RaftNode;
  const lines: string[] = [];
  const snapshotter = new Snapshotter({
    server: () => server,
    raftNode: () => raft,
    memberDir: o.memberDir,
    log: new Logger('info', {}, (l) => lines.push(l)),
    snapshotCount: 1_000_000,
    appliedIndex: o.appliedIndex,
    hotValueBytes: o.hotValueBytes,
    onStateInstalled: () => undefined,
  });
  return { snapshotter, backend: () => backend, lines };
}
