// CI soak: 2,100 seeds across every fault mix (300 per mix), all invariants checked after every step.
// A failure prints its seed, its fault mix and the replay command.

import assert from 'node:assert/strict';
import { MIX_NAMES } from './faults';
import { formatFailure, runSeed } from './runner';

const SEEDS_PER_MIX = 300;

describe('raft simulation: safety and liveness under swarm faults', function () {
  this.timeout(600_000);
  for (const mix of MIX_NAMES) {
    it(`${SEEDS_PER_MIX} seeds of mix '${mix}': one leader per term, log matching, leader completeness, same applies, no stale reads, recovery after heal`, () => {
      const failures: string[] = [];
      for (let s = 1; s <= SEEDS_PER_MIX; s++) {
        const o = runSeed(s, { mix });
        if (!o.ok) failures.push(formatFailure(o, { mix }));
      }
      assert.equal(failures.length, 0, failures.join('\n'));
    });
  }

  it('a seed replays exactly (same result twice)', () => {
    const a = runSeed(4242, { mix: 'chaos' });
    const b = runSeed(4242, { mix: 'chaos' });
    assert.deepEqual(a, b);
  });
});
