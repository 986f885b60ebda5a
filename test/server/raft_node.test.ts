// RaftNode over a recording WAL: what a single voter writes to disk as it commits proposals.
import assert from 'node:assert/strict';
import { RaftNode, type WalLike } from '../../src/server/raft_node';
import type { LogEntry } from '../../src/server/server';
import type { Entry, HardState, Message } from '../../src/raft';
import { MessageType, newMessage } from '../../src/raft';
import { emptyHardState } from '../../src/raft/types';
import { Logger } from '../../src/util/log';

interface Save {
  hardState: HardState | undefined;
  entries: number;
}

class RecordingWal implements WalLike {
  readonly saves: Save[] = [];
  async save(hardState: HardState | undefined, entries: readonly Entry[]): Promise<void> {
    this.saves.push({ hardState: hardState && { ...hardState }, entries: entries.length });
    await new Promise((r) => setTimeout(r, 1)); // an fsync takes a while: proposals pile up behind it
  }
  async saveSnapshot(): Promise<void> {}
  async releaseTo(_index: number): Promise<void> {}
  async close(): Promise<void> {}
}

/** A RaftNode that is the only voter of its cluster, over `wal`, with a fresh log. */
function singleVoter(wal: WalLike): RaftNode {
  return new RaftNode({
    id: 1n,
    confState: { voters: [1n], learners: [] },
    wal,
    recovered: { hardState: emptyHardState(), snapshot: undefined, entries: [], appliedIndex: 0 },
    log: new Logger('error'),
    tickMs: 10,
    electionTicks: 10,
  });
}

/** Member 1 of three voters whose peers (2, 3) are simulated: they grant votes and acknowledge
 *  every MsgApp in the next turn, and answer heartbeats after `heartbeatReplyMs` (0: the next
 *  turn). `sent` sees every message member 1 sends, before it is answered. */
function leaderOfThree(o: { tickMs: number; heartbeatReplyMs: number; sent?: (m: Message) => void }): RaftNode {
  const answer = (m: Message) => {
    const reply = (type: MessageType, extra: Partial<Message> = {}) => node.step(newMessage({ type, from: m.to, to: m.from, term: m.term, ...extra }));
    o.sent?.(m);
    if (m.type === MessageType.MsgPreVote) setImmediate(() => reply(MessageType.MsgPreVoteResp));
    else if (m.type === MessageType.MsgVote) setImmediate(() => reply(MessageType.MsgVoteResp));
    else if (m.type === MessageType.MsgHeartbeat) {
      if (o.heartbeatReplyMs > 0) setTimeout(() => reply(MessageType.MsgHeartbeatResp), o.heartbeatReplyMs);
      else setImmediate(() => reply(MessageType.MsgHeartbeatResp));
    } else if (m.type === MessageType.MsgApp) setImmediate(() => reply(MessageType.MsgAppResp, { index: m.index + m.entries.length }));
  };
  const node: RaftNode = new RaftNode({
    id: 1n,
    confState: { voters: [1n, 2n, 3n], learners: [] },
    wal: new RecordingWal(),
    recovered: { hardState: emptyHardState(), snapshot: undefined, entries: [], appliedIndex: 0 },
    log: new Logger('error'),
    tickMs: o.tickMs,
    electionTicks: 10,
    send: (msgs) => msgs.forEach(answer),
  });
  return node;
}

describe('RaftNode and the WAL', () => {
  it('writes a commit-only hard state with the next entries, never in a batch of its own', async () => {
    const wal = new RecordingWal();
    const log = singleVoter(wal);
    const applied: LogEntry[] = [];
    log.onCommit((es) => applied.push(...es));
    try {
      for (let deadline = Date.now() + 3000; !log.isLeader() && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 5));
      assert.ok(log.isLeader(), 'a lone voter leads');
      for (let round = 0; round < 20; round++) {
        for (let i = 0; i < 1 + (round % 4); i++) log.propose(Buffer.from(`r${round}-${i}`));
        await new Promise((r) => setTimeout(r, round % 3));
      }
      for (let deadline = Date.now() + 3000; applied.filter((e) => e.data.length > 0).length < 50 && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 5));
      assert.equal(applied.filter((e) => e.data.length > 0).length, 50, 'every proposal applied');
      let last = emptyHardState();
      for (const s of wal.saves) {
        if (s.entries === 0 && s.hardState) {
          assert.ok(s.hardState.term !== last.term || s.hardState.vote !== last.vote, `a batch of only a commit index: ${JSON.stringify(s, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v))}`);
        }
        if (s.hardState) {
          assert.ok(s.hardState.commit >= last.commit, 'the saved commit index never goes back');
          last = s.hardState;
        }
      }
      assert.ok(last.commit > 0, 'commit indexes reach the WAL with later entries');
    } finally {
      await log.close();
    }
  });

  it('advanceTicks fast-forwards the election timer: a follower of three campaigns only once its ticks reach the randomized timeout', async () => {
    const sent: Message[] = [];
    const node = new RaftNode({
      id: 1n,
      confState: { voters: [1n, 2n, 3n], learners: [] },
      wal: new RecordingWal(),
      recovered: { hardState: emptyHardState(), snapshot: undefined, entries: [], appliedIndex: 0 },
      log: new Logger('error'),
      tickMs: 60_000, // no tick of its own during the test
      electionTicks: 10,
      send: (msgs) => sent.push(...msgs),
    });
    const settle = () => new Promise((r) => setTimeout(r, 20));
    try {
      node.advanceTicks(8); // what a starting member advances: electionTicks - 2
      await settle();
      assert.equal(sent.length, 0, 'no campaign before the election timeout (at least electionTicks)');
      node.advanceTicks(12); // 20 ticks: past any randomized timeout (below 2 × electionTicks)
      await settle();
      assert.ok(sent.some((m) => m.type === MessageType.MsgPreVote), `a pre-vote campaign: ${sent.map((m) => m.type).join(',')}`);
    } finally {
      await node.close();
    }
  });
  it('a leader counts a peer active while it was heard from within the election timeout, also just after check-quorum clears recentActive', async () => {
    // Peers 2 and 3 answer every heartbeat 30 ms (3 ticks) late: check-quorum clears their
    // recentActive once per election timeout (10 ticks) and, until the next answer comes, Raft's
    // flag alone says "inactive" (a MemberRemove was refused "unhealthy cluster" in that window).
    const node = leaderOfThree({ tickMs: 10, heartbeatReplyMs: 30 });
    try {
      node.advanceTicks(20);
      for (let deadline = Date.now() + 3000; !node.isLeader() && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 5));
      assert.ok(node.isLeader(), 'node 1 leads');
      await new Promise((r) => setTimeout(r, 100)); // the first heartbeat answers
      let samples = 0;
      let inactive = 0;
      for (const end = Date.now() + 600; Date.now() < end; samples++) {
        if (!node.isActive(2n) || !node.isActive(3n)) inactive++;
        await new Promise((r) => setTimeout(r, 2));
      }
      assert.ok(samples > 50, `only ${samples} samples`);
      assert.equal(inactive, 0, `${inactive} of ${samples} samples saw an answering peer as inactive`);
    } finally {
      await node.close();
    }
  });

  it('a leader answers the clients of a commit before it sends the followers the commit notices', async () => {
    // The followers acknowledge every MsgApp at once; a client's answer is written as the member
    // writes it (the proposal's promise, then the connection's nextTick flush).
    const events: string[] = [];
    const node = leaderOfThree({
      tickMs: 60_000,
      heartbeatReplyMs: 0,
      sent: (m) => {
        if (m.type === MessageType.MsgApp && m.entries.length === 0) events.push(`notice ${m.commit}`);
      },
    });
    const applied: number[] = [];
    node.onCommit(
      (es) => {
        for (const e of es) {
          if (e.data.length === 0) continue;
          applied.push(e.index);
          void Promise.resolve().then(() => process.nextTick(() => events.push(`answer ${e.index}`)));
        }
      },
      () => applied.length < proposed,
    );
    let proposed = 0;
    try {
      node.advanceTicks(20);
      for (let deadline = Date.now() + 3000; !node.isLeader() && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 5));
      assert.ok(node.isLeader(), 'node 1 leads');
      await new Promise((r) => setTimeout(r, 20));
      for (let i = 0; i < 5; i++) {
        proposed++;
        node.propose(Buffer.from(`put ${i}`));
        for (let deadline = Date.now() + 3000; applied.length <= i && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 1));
        await new Promise((r) => setTimeout(r, 5));
      }
      assert.equal(applied.length, 5, 'every proposal applied');
      for (const index of applied) {
        const answered = events.indexOf(`answer ${index}`);
        const noticed = events.findIndex((e) => e.startsWith('notice ') && Number(e.slice(7)) >= index);
        assert.ok(answered >= 0 && noticed >= 0, `entry ${index}: ${events.join(', ')}`);
        assert.ok(answered < noticed, `entry ${index}: the client's answer after the commit notice: ${events.join(', ')}`);
      }
    } finally {
      await node.close();
    }
  });

  it('a follower hands a Ready\'s entries to the WAL before it applies the earlier entries the Ready commits', async () => {
    const events: string[] = [];
    const wal = new (class extends RecordingWal {
      override async save(hardState: HardState | undefined, entries: readonly Entry[]): Promise<void> {
        if (entries.length > 0) events.push(`save ${entries[entries.length - 1]!.index}`);
        await super.save(hardState, entries);
      }
    })();
    const node = new RaftNode({
      id: 2n,
      confState: { voters: [1n, 2n, 3n], learners: [] },
      wal,
      recovered: { hardState: emptyHardState(), snapshot: undefined, entries: [], appliedIndex: 0 },
      log: new Logger('error'),
      tickMs: 60_000,
      electionTicks: 10,
      send: () => undefined,
    });
    node.onCommit((es) => es.forEach((e) => events.push(`apply ${e.index}`)));
    const ent = (index: number) => ({ term: 1, index, type: 0, data: Buffer.from(`e${index}`) });
    const app = (index: number, commit: number) =>
      newMessage({ type: MessageType.MsgApp, from: 1n, to: 2n, term: 1, logTerm: index === 0 ? 0 : 1, index, commit, entries: [ent(index + 1)] });
    try {
      node.step(app(0, 0));
      for (let deadline = Date.now() + 3000; !events.includes('save 1') && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 2));
      await new Promise((r) => setTimeout(r, 20));
      node.step(app(1, 1)); // entry 2, and entry 1 (durable) is committed
      for (let deadline = Date.now() + 3000; !events.includes('apply 1') && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 2));
      assert.deepEqual(events, ['save 1', 'save 2', 'apply 1'], events.join(', '));
    } finally {
      await node.close();
    }
  });
});

describe('RaftNode snapshots: what the log keeps behind one', () => {
  async function leaderWith(entries: number, bytesEach: number): Promise<{ node: RaftNode; released: number[]; applied: LogEntry[] }> {
    const released: number[] = [];
    const wal = new RecordingWal();
    wal.releaseTo = async (index: number) => {
      released.push(index);
    };
    const node = singleVoter(wal);
    const applied: LogEntry[] = [];
    node.onCommit((es) => applied.push(...es));
    for (let deadline = Date.now() + 3000; !node.isLeader() && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 5));
    assert.ok(node.isLeader(), 'a lone voter leads');
    for (let i = 0; i < entries; i++) node.propose(Buffer.alloc(bytesEach, i & 0xff));
    for (let deadline = Date.now() + 5000; applied.filter((e) => e.data.length > 0).length < entries && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 5));
    assert.equal(applied.filter((e) => e.data.length > 0).length, entries, 'every proposal applied');
    return { node, released, applied };
  }

  it('keeps at most the given number of entries behind the snapshot', async () => {
    const { node, released, applied } = await leaderWith(100, 10);
    try {
      const last = applied[applied.length - 1]!.index;
      await node.snapshot(last, { entries: 30, bytes: 1 << 30 }, { voters: [1n], learners: [] });
      assert.equal(node.storage.firstIndex(), last - 30 + 1, 'the 30 entries before the snapshot stay');
      assert.deepEqual(released, [last - 30]);
    } finally {
      await node.close();
    }
  });

  it('keeps at most the given number of bytes behind the snapshot, whatever the count allows', async () => {
    const { node, released, applied } = await leaderWith(40, 1000);
    try {
      const last = applied[applied.length - 1]!.index;
      // 1,024 bytes per entry (1,000 of data and Raft's 24): 10 fit in 10,300 bytes, 11 do not.
      await node.snapshot(last, { entries: 5000, bytes: 10_300 }, { voters: [1n], learners: [] });
      assert.equal(node.storage.firstIndex(), last - 10 + 1, 'ten entries of 1,024 bytes stay');
      assert.deepEqual(released, [last - 10], 'the WAL releases what the log dropped');
      const kept = node.storage.entries(node.storage.firstIndex(), last + 1, Infinity);
      assert.ok(Array.isArray(kept) && kept.length === 10 && kept.every((e) => e.data.length === 1000));
    } finally {
      await node.close();
    }
  });
});
