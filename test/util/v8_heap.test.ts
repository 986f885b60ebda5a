// The adaptive V8 heap growing factor (src/util/v8_heap.ts).
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import v8 from 'node:v8';
import { heapGrowingPercent, oldGenerationBytes } from '../../src/util/v8_heap';

const MB = 1024 * 1024;

describe('heap growing percent', () => {
  it('leaves small and mid-sized heaps to V8', () => {
    assert.equal(heapGrowingPercent(10 * MB), 0);
    assert.equal(heapGrowingPercent(128 * MB), 0);
  });
  it('gives a large heap at least 64 MB of headroom', () => {
    // Just above the threshold: 64 MB is 50% of 128 MB (not 10%: a full GC every 13 MB promoted).
    assert.equal(heapGrowingPercent(129 * MB), 50);
    assert.equal(heapGrowingPercent(200 * MB), 32);
    assert.equal(heapGrowingPercent(320 * MB), 20);
    for (let live = 129; live <= 2000; live += 7) {
      const headroom = (heapGrowingPercent(live * MB) * live * MB) / 100;
      assert.ok(headroom >= 64 * MB, `${live} MB live: ${headroom / MB} MB of headroom`);
    }
  });
  it('caps headroom at 10% once 10% is more than 64 MB', () => {
    assert.equal(heapGrowingPercent(640 * MB), 10);
    assert.equal(heapGrowingPercent(4000 * MB), 10);
  });
});

describe('old generation bytes', () => {
  it('counts every space but the young generation', () => {
    const space = (space_name: string, space_used_size: number) => ({ space_name, space_used_size, space_size: 0, space_available_size: 0, physical_space_size: 0 });
    const spaces = [space('read_only_space', 1), space('new_space', 1000), space('old_space', 20), space('code_space', 300), space('large_object_space', 4000), space('new_large_object_space', 50000)];
    assert.equal(oldGenerationBytes(spaces), 4321);
  });
  it('is within the heap in use of this process', () => {
    const used = v8.getHeapStatistics().used_heap_size;
    const old = oldGenerationBytes(v8.getHeapSpaceStatistics());
    assert.ok(old > 0 && old <= used * 1.01, `old ${old}, used ${used}`);
  });
});

describe('configureHeap', () => {
  it('sets the growing percent from the live heap after a full GC', function () {
    this.timeout(60_000);
    // A child process (V8 flags are per process): it retains ~200 MB (40 × 5000 arrays of 120 small integers), runs full GCs, and prints
    // every flag configureHeap sets.
    const mod = path.join(__dirname, '..', '..', 'src', 'util', 'v8_heap.js');
    const child = `
      const v8 = require('node:v8');
      const set = v8.setFlagsFromString.bind(v8);
      v8.setFlagsFromString = (f) => { console.log(f); set(f); };
      require(${JSON.stringify(mod)}).configureHeap();
      const keep = [];
      const step = (i) => {
        if (i === 40) { globalThis.gc(); return setTimeout(() => { globalThis.gc(); setTimeout(() => process.exit(0), 100); }, 100); }
        for (let j = 0; j < 5000; j++) keep.push(new Array(120).fill(i + j));
        if (i % 10 === 9) globalThis.gc();
        setImmediate(step, i + 1);
      };
      step(0);`;
    const out = execFileSync(process.execPath, ['--expose-gc', '-e', child], { encoding: 'utf8' });
    const flags = out.split('\n').filter((l) => l !== '');
    assert.ok(flags.length >= 1, `no flag set: ${out}`);
    const last = /^--heap-growing-percent=(\d+)$/.exec(flags[flags.length - 1]!);
    assert.ok(last, `unexpected output: ${out}`);
    // ~200 MB live: 64 MB of headroom is 30-40%.
    assert.ok(Number(last[1]) >= 25 && Number(last[1]) <= 50, `last flag ${flags[flags.length - 1]}`);
  });
});
