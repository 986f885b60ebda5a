// The member's V8 tiering flags (src/util/v8_jit.ts).
import { strict as assert } from 'node:assert';
import { jitFlags } from '../../src/util/v8_jit';

describe('V8 tiering flags', () => {
  it('turns on baseline compilation at first call by default', () => {
    assert.deepEqual(jitFlags([]), ['--always-sparkplug']);
    assert.deepEqual(jitFlags(['--max-old-space-size=4096', '--inspect']), ['--always-sparkplug']);
  });
  it("keeps the operator's own choice, in either spelling", () => {
    assert.deepEqual(jitFlags(['--no-always-sparkplug']), []);
    assert.deepEqual(jitFlags(['--always_sparkplug']), []);
    assert.deepEqual(jitFlags(['--always-sparkplug']), []);
  });

});
