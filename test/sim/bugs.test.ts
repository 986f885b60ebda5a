// The simulation must be able to fail: each deliberately broken raft variant (config.bugs, inert
// unless set) must be caught within 500 seeds.

import assert from 'node:assert/strict';
import type { RaftBugs } from '../../src/raft';
import type { MixName } from './faults';
import { runSeed } from './runner';

const SEEDS_MAX = 500;

const cases: { bug: keyof RaftBugs; mix: MixName; guarantee: string }[] = [
  { bug: 'commitPreviousTermByCounting', mix: 'elections', guarantee: 'commit rule (figure 8)' },
  { bug: 'forgetToPersistVote', mix: 'elections', guarantee: 'election safety after a crash' },
  { bug: 'voteForShorterLog', mix: 'elections', guarantee: 'leader completeness' },
  { bug: 'readIndexWithoutQuorum', mix: 'partitions', guarantee: 'linearizable ReadIndex' },
];

describe('raft simulation finds deliberately broken variants', function () {
  this.timeout(600_000);
  for (const c of cases) {
    it(`bug ${c.bug} violates ${c.guarantee} within ${SEEDS_MAX} seeds of mix '${c.mix}'`, () => {
      for (let s = 1; s <= SEEDS_MAX; s++) {
        const o = runSeed(s, { mix: c.mix, bugs: { [c.bug]: true } });
        if (!o.ok) {
          assert.match(o.error ?? '', /SimViolation|AssertionError/);
          assert.doesNotMatch(o.error ?? '', /liveness/, `found only a liveness failure: ${o.error}`);
          console.log(`      found at seed ${s}: ${o.error}`);
          return;
        }
      }
      assert.fail(`no violation found in ${SEEDS_MAX} seeds`);
    });
  }
});
