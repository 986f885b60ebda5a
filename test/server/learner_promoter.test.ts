// Automatic learner promotion (--auto-promote-learners): etcd's readiness rule plus "the cluster
// stays healthy", one learner per round, only while leading.
import assert from 'node:assert/strict';
import { LearnerPromoter, isLearnerReady, promotionBlocker } from '../../src/server/learner_promoter';
import type { Member } from '../../src/server/membership';
import { Logger } from '../../src/util/log';

const member = (id: bigint, isLearner = false): Member => ({ id, name: `n${id}`, peerURLs: [`http://127.0.0.1:${2380 + Number(id)}`], clientURLs: [], isLearner });

describe('learner promotion', () => {
  it("etcd's 90% rule", () => {
    assert.equal(isLearnerReady(90, 100), true);
    assert.equal(isLearnerReady(89, 100), false);
  });

  it('blocks a learner that lags, that is silent, or whose promotion would leave too few active voters', () => {
    const members = [member(1n), member(2n), member(3n), member(4n, true)];
    const active = new Set([2n, 3n, 4n]);
    const o = { members: () => members, selfId: 1n, lastIndex: () => 100, matchIndex: (id: bigint) => (id === 4n ? 95 : 100), isActive: (id: bigint) => active.has(id) };
    assert.equal(promotionBlocker(members[3]!, o), undefined);
    assert.match(promotionBlocker(members[3]!, { ...o, matchIndex: () => 50 })!, /log at 50 of 100/);
    active.delete(4n);
    assert.match(promotionBlocker(members[3]!, o)!, /not heard from/);
    active.add(4n);
    active.delete(2n);
    active.delete(3n);
    // 4 voters after promotion need 3 active: the leader and the learner are only 2.
    assert.match(promotionBlocker(members[3]!, o)!, /only 2 of 4 voters would be active \(quorum 3\)/);
  });

  it('promotes one ready learner per round, only while leader, and counts it', async () => {
    const members = [member(1n), member(4n, true), member(5n, true)];
    let leader = false;
    const promoted: bigint[] = [];
    const p = new LearnerPromoter({
      intervalMs: 1000,
      log: new Logger('error', {}, () => undefined),
      isLeader: () => leader,
      members: () => members,
      selfId: 1n,
      lastIndex: () => 10,
      matchIndex: () => 10,
      isActive: () => true,
      promote: (m) => {
        const i = members.findIndex((x) => x.id === m.id);
        members[i] = { ...m, isLearner: false };
        return Promise.resolve();
      },
      onPromoted: (m) => promoted.push(m.id),
    });
    assert.equal(await p.round(), undefined);
    leader = true;
    assert.equal((await p.round())!.id, 4n);
    assert.equal((await p.round())!.id, 5n);
    assert.equal(await p.round(), undefined);
    assert.deepEqual(promoted, [4n, 5n]);
  });
});
