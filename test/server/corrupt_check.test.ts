// The corruption check's rules and one round against fake members (the integration test runs it
// on real processes: test/integration/corrupt_check.test.ts).
import assert from 'node:assert/strict';
import { CorruptChecker, mismatchReason, type PeerHash } from '../../src/server/corrupt_check';
import { Logger } from '../../src/util/log';

const quiet = new Logger('error', {}, () => undefined);

describe('corruption check', () => {
  const leader = { hash: 111, compactRevision: 5, hashRevision: 40 };
  const peer = (over: Partial<PeerHash>): PeerHash => ({ memberId: 2n, hash: 111, compactRevision: 5, hashRevision: 40, currentRevision: 40, ...over });

  it('flags a different hash at the same revision and compaction point, and members ahead of the leader', () => {
    assert.equal(mismatchReason(peer({}), leader, 41, 5), undefined);
    assert.match(mismatchReason(peer({ hash: 112 }), leader, 41, 5)!, /differs/);
    assert.match(mismatchReason(peer({ currentRevision: 42 }), leader, 41, 5)!, /revision 42 is ahead/);
    assert.match(mismatchReason(peer({ compactRevision: 6 }), leader, 41, 5)!, /compaction point 6 is ahead/);
    // A peer that compacted later than the leader's hash (but not past the leader now) cannot be compared.
    assert.equal(mismatchReason(peer({ hash: 999, compactRevision: 6 }), leader, 41, 6), undefined);
  });

  it('one round: raises CORRUPT for the member that differs, skips one that cannot answer', async () => {
    const raised: bigint[] = [];
    const answers = new Map<string, PeerHash | Error>([
      ['http://a', peer({ memberId: 2n })],
      ['http://b', peer({ memberId: 3n, hash: 7 })],
      ['http://c', new Error('required revision is a future revision')],
    ]);
    const c = new CorruptChecker({
      intervalMs: 0,
      log: quiet,
      isLeader: () => true,
      hashKV: () => Promise.resolve(leader),
      currentRevision: () => 40,
      compactRevision: () => 5,
      peers: () => [2n, 3n, 4n].map((id, i) => ({ id, peerURLs: [['http://a', 'http://b', 'http://c'][i]!] })),
      peerHashKV: (urls) => {
        const a = answers.get(urls[0]!)!;
        return a instanceof Error ? Promise.reject(a) : Promise.resolve(a);
      },
      raiseCorrupt: (id) => (raised.push(id), Promise.resolve()),
    });
    const out = await c.check();
    assert.deepEqual(raised, [3n]);
    assert.equal(out.compared, 3);
    assert.deepEqual(out.corrupt.map((x) => x.memberId), [3n]);
  });
});
