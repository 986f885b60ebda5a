// The adaptive V8 heap growing factor (src/util/heap.ts).
import { strict as assert } from 'node:assert';
import { heapGrowingPercent } from '../../src/util/v8_heap';

const MB = 1024 * 1024;

describe('heap growing percent', () => {
  it('leaves small and mid-sized heaps to V8', () => {
    assert.equal(heapGrowingPercent(10 * MB), 0);
    assert.equal(heapGrowingPercent(128 * MB), 0);
  });
  it('caps headroom at 10% once the heap is large', () => {
    assert.equal(heapGrowingPercent(129 * MB), 10);
    assert.equal(heapGrowingPercent(4000 * MB), 10);
  });
});
