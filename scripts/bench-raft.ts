// Raft throughput: entries committed per second through a 3-node in-memory cluster with batching.
// No disk, messages delivered in-process; measures the raft core (log, replication, Ready cycle).
// Usage: npm run bench:raft [-- --entries N --batch B --size BYTES]

import { MemoryStorage, RawNode, StateRole } from '../src/raft';
import type { Message, NodeId } from '../src/raft';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

const ENTRIES_TOTAL = arg('entries', 200_000);
const BATCH_ENTRIES = arg('batch', 256);
const ENTRY_BYTES = arg('size', 128);
const COMPACT_EVERY_ENTRIES = 10_000;

const ids = [1n, 2n, 3n];
const storages = new Map<NodeId, MemoryStorage>();
const nodes = new Map<NodeId, RawNode>();
for (const id of ids) {
  const st = MemoryStorage.bootstrap(ids);
  storages.set(id, st);
  nodes.set(id, new RawNode({ id, maxSizePerMsg: 1024 * 1024, maxInflightMsgs: 256 }, st));
}
let queue: Message[] = [];
let committed = 0;
const readyBatchSizes: number[] = [];
const msgAppSizes: number[] = [];

function pump(): void {
  for (const [id, n] of nodes) {
    if (!n.hasReady()) continue;
    const rd = n.ready();
    const st = storages.get(id)!;
    st.append(rd.entries);
    if (rd.hardState) st.setHardState(rd.hardState);
    for (const m of rd.messages) if (m.entries.length > 0) msgAppSizes.push(m.entries.length);
    queue.push(...rd.messages);
    if (id === 1n && rd.committedEntries.length > 0) {
      committed += rd.committedEntries.length;
      readyBatchSizes.push(rd.committedEntries.length);
    }
    n.advance(rd);
    const applied = n.raft.raftLog.applied;
    if (applied - st.firstIndex() > COMPACT_EVERY_ENTRIES) st.compact(applied - 1000);
  }
  const q = queue;
  queue = [];
  for (const m of q) nodes.get(m.to)!.step(m);
}

const leader = nodes.get(1n)!;
leader.campaign();
for (let i = 0; i < 50 && leader.raft.state !== StateRole.Leader; i++) pump();
for (let i = 0; i < 20; i++) pump();
committed = 0;
readyBatchSizes.length = 0;
msgAppSizes.length = 0;

const payload = new Uint8Array(ENTRY_BYTES).fill(7);
const batch = Array.from({ length: BATCH_ENTRIES }, () => payload);
const t0 = process.hrtime.bigint();
let proposed = 0;
while (committed < ENTRIES_TOTAL) {
  if (proposed - committed < BATCH_ENTRIES * 4) {
    const err = leader.proposeBatch(batch);
    if (err !== null) throw err;
    proposed += BATCH_ENTRIES;
  }
  pump();
}
const secs = Number(process.hrtime.bigint() - t0) / 1e9;
const avg = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
console.log(
  `raft 3-node in-memory: ${committed} entries (${ENTRY_BYTES} B) in ${secs.toFixed(2)} s = ` +
    `${Math.round(committed / secs).toLocaleString('en-US')} entries/s; proposal batch ${BATCH_ENTRIES}, ` +
    `avg committed entries per leader Ready ${avg(readyBatchSizes).toFixed(1)}, avg entries per MsgApp ${avg(msgAppSizes).toFixed(1)}`,
);
