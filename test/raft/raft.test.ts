// Raft scenarios, each pinned to the guarantee it demonstrates (Raft paper / thesis sections).

import assert from 'node:assert/strict';
import {
  ConfChangeType,
  EntryType,
  ErrProposalDropped,
  MemoryStorage,
  MessageType,
  ProgressState,
  RawNode,
  StateRole,
  newMessage,
} from '../../src/raft';
import type { Message } from '../../src/raft';
import { Net, enc } from './helpers';

const count = (ms: Message[], pred: (m: Message) => boolean): number => ms.filter(pred).length;

describe('raft: leader election (section 5.2)', () => {
  it('a campaigning node with votes from a majority becomes the only leader; the others follow it', () => {
    const net = new Net([1, 2, 3]);
    net.elect(1);
    assert.equal(net.node(1).raft.state, StateRole.Leader);
    for (const id of [2, 3]) {
      assert.equal(net.node(id).raft.state, StateRole.Follower);
      assert.equal(net.node(id).raft.lead, 1n);
      assert.equal(net.node(id).raft.term, net.node(1).raft.term);
    }
  });

  it('followers elect a leader by themselves through randomized election timeouts', () => {
    const net = new Net([1, 2, 3]);
    net.tickAll(40);
    const leaders = [1, 2, 3].filter((i) => net.node(i).raft.state === StateRole.Leader);
    assert.equal(leaders.length, 1);
  });
});

describe('raft: pre-vote and check-quorum (thesis 9.6)', () => {
  it('a partitioned node does not inflate its term, and rejoining does not disrupt the leader', () => {
    const net = new Net([1, 2, 3]);
    net.elect(1);
    const term = net.node(1).raft.term;
    net.isolate(3);
    for (let i = 0; i < 100; i++) {
      net.node(3).tick();
      net.node(1).tick();
      net.node(2).tick();
      net.stabilize();
    }
    assert.equal(net.node(3).raft.term, term, 'pre-candidate must not raise its term');
    net.heal();
    net.tickAll(30);
    assert.equal(net.node(1).raft.state, StateRole.Leader);
    assert.equal(net.node(1).raft.term, term);
  });

  it('a leader that cannot hear from a quorum for an election timeout steps down', () => {
    const net = new Net([1, 2, 3]);
    net.elect(1);
    net.isolate(1);
    for (let i = 0; i < 25; i++) {
      net.node(1).tick();
      net.stabilize();
    }
    assert.notEqual(net.node(1).raft.state, StateRole.Leader);
  });
});

describe('raft: log replication (section 5.3)', () => {
  it('a lagging follower catches up with fast backtracking: at most one rejection', () => {
    const net = new Net([1, 2, 3]);
    net.elect(1);
    net.isolate(3);
    for (let i = 0; i < 50; i++) {
      net.node(1).propose(enc(`x${i}`));
      net.stabilize();
    }
    net.heal();
    net.node(1).raft.step(newMessage({ type: MessageType.MsgBeat, from: 1n }));
    const msgs = net.stabilize();
    const rejects = count(msgs, (m) => m.type === MessageType.MsgAppResp && m.reject && m.from === 3n);
    assert.ok(rejects <= 1, `expected <= 1 rejection, got ${rejects}`);
    assert.equal(net.node(3).raft.raftLog.lastIndex(), net.node(1).raft.raftLog.lastIndex());
  });

  it('the follower rejection carries a (term, index) hint that skips a whole divergent term', () => {
    const net = new Net([1, 2, 3]);
    net.elect(1);
    // Node 1 appends 20 entries no one else gets, then node 2 becomes leader.
    net.isolate(1);
    for (let i = 0; i < 20; i++) net.node(1).propose(enc(`lost${i}`));
    net.stabilize();
    for (let i = 0; i < 40 && net.node(2).raft.state !== StateRole.Leader && net.node(3).raft.state !== StateRole.Leader; i++) {
      net.node(2).tick();
      net.node(3).tick();
      net.stabilize();
    }
    const lid = net.node(2).raft.state === StateRole.Leader ? 2 : 3;
    net.node(lid).propose(enc('new'));
    net.stabilize();
    net.heal();
    net.node(lid).raft.step(newMessage({ type: MessageType.MsgBeat, from: BigInt(lid) }));
    const msgs = net.stabilize();
    const rejects = count(msgs, (m) => m.type === MessageType.MsgAppResp && m.reject && m.from === 1n);
    assert.ok(rejects <= 2, `expected <= 2 rejections for a 20-entry divergent tail, got ${rejects}`);
    assert.equal(net.node(1).raft.raftLog.lastIndex(), net.node(lid).raft.raftLog.lastIndex());
  });
});

describe('raft: commit rule, figure 8 (section 5.4.2)', () => {
  function leaderWithOldTermTail(bug: boolean): RawNode {
    const st = MemoryStorage.bootstrap([1n, 2n, 3n]);
    st.append([
      { term: 2, index: 2, type: EntryType.Normal, data: enc('a') },
      { term: 2, index: 3, type: EntryType.Normal, data: enc('b') },
    ]);
    st.setHardState({ term: 2, vote: 0n, commit: 1 });
    const n = new RawNode({ id: 1n, preVote: false, bugs: bug ? { commitPreviousTermByCounting: true } : {} }, st);
    const persist = (): void => {
      const rd = n.ready();
      st.append(rd.entries);
      if (rd.hardState) st.setHardState(rd.hardState);
      n.advance(rd);
    };
    n.campaign();
    persist(); // persist the vote; our own vote is delivered to us
    n.step(newMessage({ type: MessageType.MsgVoteResp, from: 2n, to: 1n, term: 3 }));
    assert.equal(n.raft.state, StateRole.Leader);
    persist(); // persist the empty entry at 4@3
    return n;
  }

  it('a leader never commits an entry of a previous term by counting replicas', () => {
    const n = leaderWithOldTermTail(false);
    n.step(newMessage({ type: MessageType.MsgAppResp, from: 2n, to: 1n, term: 3, index: 3 }));
    assert.equal(n.raft.raftLog.committed, 1, 'index 3 (term 2) is on a majority but must not commit');
    n.step(newMessage({ type: MessageType.MsgAppResp, from: 2n, to: 1n, term: 3, index: 4 }));
    assert.equal(n.raft.raftLog.committed, 4, 'committing 4@3 commits everything before it');
  });

  it('the commitPreviousTermByCounting test hook does commit it (and is inert when unset)', () => {
    const n = leaderWithOldTermTail(true);
    n.step(newMessage({ type: MessageType.MsgAppResp, from: 2n, to: 1n, term: 3, index: 3 }));
    assert.equal(n.raft.raftLog.committed, 3);
  });
});

describe('raft: ReadIndex (thesis 6.4)', () => {
  it('the leader answers a read with its commit index after a heartbeat quorum round', () => {
    const net = new Net([1, 2, 3]);
    net.elect(1);
    net.node(1).propose(enc('w'));
    net.stabilize();
    net.node(1).readIndex(enc('r1'));
    net.stabilize();
    const rs = net.readStates.get(1n)!;
    assert.equal(rs.length, 1);
    assert.equal(rs[0]!.index, net.node(1).raft.raftLog.committed);
  });

  it('an isolated leader does not answer a read (no quorum confirms its leadership)', () => {
    const net = new Net([1, 2, 3]);
    net.elect(1);
    net.isolate(1);
    net.node(1).readIndex(enc('r1'));
    net.stabilize();
    assert.equal(net.readStates.get(1n)!.length, 0);
  });

  it('a follower read is forwarded to the leader and answered with a read index', () => {
    const net = new Net([1, 2, 3]);
    net.elect(1);
    net.node(2).readIndex(enc('r2'));
    net.stabilize();
    assert.equal(net.readStates.get(2n)!.length, 1);
  });
});

describe('raft: learners and membership change (section 4.1, one member at a time)', () => {
  it('a learner never campaigns and is never asked for a vote, but receives the log', () => {
    const net = new Net([1, 2, 3]);
    net.elect(1);
    net.add(4n, {}, new MemoryStorage());
    net.node(1).proposeConfChange({ type: ConfChangeType.AddLearnerNode, nodeId: 4n });
    net.stabilize();
    net.node(1).propose(enc('after'));
    net.tickAll(5);
    assert.equal(net.node(4).raft.raftLog.lastIndex(), net.node(1).raft.raftLog.lastIndex());
    for (let i = 0; i < 100; i++) net.node(4).tick();
    assert.equal(net.node(4).raft.state, StateRole.Follower, 'a learner does not campaign');
    net.isolate(1);
    net.node(2).campaign();
    const msgs = net.stabilize();
    assert.equal(count(msgs, (m) => (m.type === MessageType.MsgVote || m.type === MessageType.MsgPreVote) && m.to === 4n), 0);
  });

  it('a second conf change proposed while one is pending becomes a no-op entry', () => {
    const net = new Net([1, 2, 3]);
    net.elect(1);
    net.isolate(1); // nothing commits: the first change stays pending
    net.node(1).proposeConfChange({ type: ConfChangeType.AddLearnerNode, nodeId: 4n });
    net.node(1).proposeConfChange({ type: ConfChangeType.AddLearnerNode, nodeId: 5n });
    const log = net.node(1).raft.raftLog;
    const last = log.slice(log.lastIndex() - 1, log.lastIndex() + 1, Infinity)!;
    assert.equal(last[0]!.type, EntryType.ConfChange);
    assert.equal(last[1]!.type, EntryType.Normal);
    assert.equal(last[1]!.data.byteLength, 0);
  });

  it('promoting a learner makes it a voter counted in the quorum', () => {
    const net = new Net([1, 2, 3]);
    net.elect(1);
    net.add(4n, {}, new MemoryStorage());
    net.node(1).proposeConfChange({ type: ConfChangeType.AddLearnerNode, nodeId: 4n });
    net.tickAll(3);
    net.node(1).proposeConfChange({ type: ConfChangeType.AddNode, nodeId: 4n });
    net.tickAll(3);
    assert.deepEqual(net.node(1).raft.trk.confState().voters, [1n, 2n, 3n, 4n]);
    assert.deepEqual(net.node(4).raft.trk.confState().voters, [1n, 2n, 3n, 4n]);
  });
});

describe('raft: leadership transfer (thesis 3.10)', () => {
  it('the transferee is caught up, gets MsgTimeoutNow and becomes leader', () => {
    const net = new Net([1, 2, 3]);
    net.elect(1);
    net.node(1).transferLeader(2n);
    const msgs = net.stabilize();
    assert.ok(count(msgs, (m) => m.type === MessageType.MsgTimeoutNow && m.to === 2n) === 1);
    assert.equal(net.node(2).raft.state, StateRole.Leader);
    assert.equal(net.node(1).raft.state, StateRole.Follower);
  });

  it('proposals are dropped while a transfer is in progress', () => {
    const net = new Net([1, 2, 3]);
    net.elect(1);
    net.isolate(2);
    net.node(1).propose(enc('x'));
    net.stabilize();
    net.node(1).transferLeader(2n);
    assert.equal(net.node(1).propose(enc('y')), ErrProposalDropped);
  });
});

describe('raft: log compaction and snapshots (section 7)', () => {
  it('a follower behind the compaction point catches up by snapshot', () => {
    const net = new Net([1, 2, 3]);
    net.elect(1);
    net.isolate(3);
    for (let i = 0; i < 30; i++) net.node(1).propose(enc(`x${i}`));
    net.stabilize();
    const st = net.storages.get(1n)!;
    const applied = net.node(1).raft.raftLog.applied;
    st.createSnapshot(applied, net.node(1).raft.trk.confState(), enc('state'));
    st.compact(applied);
    net.heal();
    net.node(1).raft.step(newMessage({ type: MessageType.MsgBeat, from: 1n }));
    const msgs = net.stabilize();
    assert.equal(count(msgs, (m) => m.type === MessageType.MsgSnap && m.to === 3n), 1);
    net.tickAll(3);
    assert.equal(net.storages.get(3n)!.firstIndex(), applied + 1);
    assert.equal(net.node(3).raft.raftLog.lastIndex(), net.node(1).raft.raftLog.lastIndex());
    assert.equal(net.node(1).raft.trk.progress.get(3n)!.state, ProgressState.Replicate);
  });
});

describe('raft: flow control', () => {
  it('at most maxInflightMsgs unacknowledged MsgApps are outstanding to a follower', () => {
    const net = new Net([1, 2, 3], { maxInflightMsgs: 2, maxSizePerMsg: 1 });
    net.elect(1);
    net.dropIf = (m) => m.type === MessageType.MsgAppResp && m.from === 2n;
    let sent = 0;
    for (let i = 0; i < 10; i++) {
      net.node(1).propose(enc(`x${i}`));
      sent += count(net.stabilize(), (m) => m.type === MessageType.MsgApp && m.to === 2n && m.entries.length > 0);
    }
    assert.equal(sent, 2);
  });

  it('entries proposed together are batched into one MsgApp up to maxSizePerMsg', () => {
    const net = new Net([1, 2, 3]);
    net.elect(1);
    net.node(1).proposeBatch(Array.from({ length: 100 }, (_, i) => enc(`b${i}`)));
    const msgs = net.stabilize();
    const apps = msgs.filter((m) => m.type === MessageType.MsgApp && m.to === 2n && m.entries.length > 0);
    assert.equal(apps.length, 1);
    assert.equal(apps[0]!.entries.length, 100);
  });
});

describe('raft: the Ready contract', () => {
  it('a vote is released only in the Ready after the HardState recording it was advanced', () => {
    const st = MemoryStorage.bootstrap([1n, 2n, 3n]);
    const n = new RawNode({ id: 2n }, st);
    n.step(newMessage({ type: MessageType.MsgVote, from: 1n, to: 2n, term: 5, index: 1, logTerm: 1 }));
    const rd1 = n.ready();
    assert.equal(rd1.hardState?.vote, 1n);
    assert.equal(rd1.mustSync, true);
    assert.equal(count(rd1.messages, (m) => m.type === MessageType.MsgVoteResp), 0);
    n.advance(rd1);
    const rd2 = n.ready();
    assert.equal(count(rd2.messages, (m) => m.type === MessageType.MsgVoteResp && !m.reject), 1);
  });

  it('a leader sends MsgApp in the same Ready as the entries it is still persisting', () => {
    const net = new Net([1, 2, 3]);
    net.elect(1);
    net.node(1).propose(enc('x'));
    const rd = net.node(1).ready();
    assert.equal(rd.entries.length, 1);
    assert.ok(count(rd.messages, (m) => m.type === MessageType.MsgApp && m.entries.length === 1) >= 1);
  });
});
