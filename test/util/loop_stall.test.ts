// The loop-stall watch: a block of the event loop at least warnMs long is logged once, with the
// share of it that V8's GC pauses took; shorter ones are not.
import assert from 'node:assert/strict';
import v8 from 'node:v8';
import vm from 'node:vm';
import { watchLoopStalls } from '../../src/util/loop_stall';

function busy(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // the loop is blocked by synchronous work
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('watchLoopStalls', function () {
  this.timeout(20_000);
  it('logs a block of synchronous work with its length and no GC share; a short block is not logged', async () => {
    const lines: Record<string, unknown>[] = [];
    const watch = watchLoopStalls({ warn: (_msg, f) => lines.push(f ?? {}) }, 150);
    try {
      await sleep(60);
      busy(30);
      await sleep(100);
      // (A loaded machine may delay a timer past the threshold by itself: every line logged must
      // still be a block of at least the threshold, and none may be the 30 ms one.)
      assert.ok(lines.every((l) => (l['blocked-ms'] as number) >= 150), JSON.stringify(lines));
      await sleep(1100); // past the one-line-per-second limit of any line so far
      lines.length = 0;
      busy(300);
      await sleep(150);
      const l = lines.find((x) => (x['blocked-ms'] as number) >= 250);
      assert.ok(l !== undefined, JSON.stringify(lines));
      assert.ok((l['gc-pause-ms'] as number) < 150, JSON.stringify(l));
      assert.ok(watch.longestMs >= 250);
    } finally {
      watch.stop();
    }
  });

  it('attributes a block made of full GCs to the GC', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const lines: Record<string, unknown>[] = [];
    // A heap worth collecting: a few hundred MB of small objects kept alive during the GCs.
    const keep: object[][] = [];
    for (let i = 0; i < 300; i++) keep.push(Array.from({ length: 5000 }, (_, j) => ({ i, j })));
    const watch = watchLoopStalls({ warn: (_msg, f) => lines.push(f ?? {}) }, 100);
    try {
      await sleep(1100); // past the one-line-per-second limit of any earlier line
      lines.length = 0;
      const t0 = performance.now();
      while (performance.now() - t0 < 300) gc();
      await sleep(200);
      const l = lines.find((x) => (x['blocked-ms'] as number) >= 250);
      assert.ok(l !== undefined, JSON.stringify(lines));
      assert.ok((l['major-gcs'] as number) >= 1, JSON.stringify(l));
      assert.ok((l['gc-pause-ms'] as number) >= 0.5 * (l['blocked-ms'] as number), JSON.stringify(l));
    } finally {
      watch.stop();
      keep.length = 0;
    }
  });
});
