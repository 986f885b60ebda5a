// api/range_budget.ts: the member's budget of bytes held by large range answers. Answers that fit
// are admitted at once; past the budget they wait in order, the queue is bounded (refused with
// RESOURCE_EXHAUSTED beyond it) and so is the wait; a waiter that leaves lets the next in; an
// answer larger than the whole budget runs alone; every release gives its bytes back once.
import assert from 'node:assert/strict';
import { RangeAnswerBudget, type BudgetRelease } from '../../src/api/range_budget';
import { EtcdError, GrpcCode } from '../../src/util/errors';

const admitted = async (p: Promise<BudgetRelease | EtcdError | undefined>): Promise<BudgetRelease> => {
  const r = await p;
  assert.equal(typeof r, 'function', `admitted, got ${String(r)}`);
  return r as BudgetRelease;
};

describe('api: range answer budget', () => {
  it('admits within the budget, queues past it in order, refuses past the queue, gives back on release', async () => {
    const b = new RangeAnswerBudget(100, 2, 60_000);
    const r1 = await admitted(b.acquire(60).admitted);
    const w2 = b.acquire(50);
    const w3 = b.acquire(10); // fits, but waits behind w2 (first come, first served)
    assert.equal(b.waiting, 2);
    const refused = await b.acquire(1).admitted;
    assert.ok(refused instanceof EtcdError);
    assert.equal(refused.code, GrpcCode.RESOURCE_EXHAUSTED);
    assert.match(refused.message, /too many large range answers in flight: 60 of 100 bytes \(--max-range-answer-bytes\)/);
    assert.equal(b.refused, 1);
    r1();
    const r2 = await admitted(w2.admitted);
    const r3 = await admitted(w3.admitted);
    assert.equal(b.bytes, 60);
    r2();
    assert.throws(() => r2(), /released twice/);
    r3();
    assert.equal(b.bytes, 0);
    assert.equal(b.waited, 2);
  });

  it('an answer larger than the whole budget runs alone; a waiter that leaves lets the next in; a wait is bounded in time', async () => {
    const b = new RangeAnswerBudget(100, 10, 50);
    const small = await admitted(b.acquire(10).admitted);
    const big = b.acquire(500);
    const next = b.acquire(5);
    assert.equal(b.waiting, 2);
    big.cancel();
    assert.equal(await big.admitted, undefined);
    const rn = await admitted(next.admitted);
    small();
    rn();
    const bigAlone = await admitted(b.acquire(500).admitted);
    assert.equal(b.bytes, 500);
    const late = await b.acquire(1).admitted; // waits 50 ms, then refused
    assert.ok(late instanceof EtcdError);
    assert.match(late.message, /waited 50 ms/);
    bigAlone();
    assert.equal(b.bytes, 0);
    assert.equal(b.waiting, 0);
  });
});
