// Automatic compaction on a fake clock: which revision each policy compacts to, and when.
import assert from 'node:assert/strict';
import { Compactor, REVISION_CHECK_INTERVAL_MS, type CompactorClock } from '../../src/server/compactor';
import { parseRetention } from '../../src/config/flags';
import { parseGoDuration } from '../../src/util/duration';
import { Errors } from '../../src/util/errors';

class FakeClock implements CompactorClock {
  t = 0;
  private timers: { at: number; fn: () => void; id: number }[] = [];
  private nextId = 0;
  now(): number {
    return this.t;
  }
  after(ms: number, fn: () => void): () => void {
    const id = this.nextId++;
    this.timers.push({ at: this.t + ms, fn, id });
    return () => (this.timers = this.timers.filter((x) => x.id !== id));
  }
  get pending(): number {
    return this.timers.length;
  }
  /** Advances time to `to`, running due timers in order and letting their promises settle. */
  async advanceTo(to: number): Promise<void> {
    for (;;) {
      this.timers.sort((a, b) => a.at - b.at);
      const next = this.timers[0];
      if (!next || next.at > to) break;
      this.timers.shift();
      this.t = next.at;
      next.fn();
      for (let i = 0; i < 5; i++) await Promise.resolve();
    }
    this.t = to;
  }
}

/** A store whose revision grows with the fake time (one revision per `msPerRev`). */
class FakeTarget {
  compacted = 0;
  calls: number[] = [];
  leader = true;
  failNext = 0;
  constructor(
    private readonly clock: FakeClock,
    private readonly msPerRev: number,
  ) {}
  currentRevision(): number {
    return 1 + Math.floor(this.clock.now() / this.msPerRev);
  }
  isLeader(): boolean {
    return this.leader;
  }
  compact(rev: number): Promise<unknown> {
    this.calls.push(rev);
    if (this.failNext > 0) {
      this.failNext--;
      return Promise.reject(Errors.Timeout);
    }
    if (rev <= this.compacted) return Promise.reject(Errors.Compacted);
    if (rev > this.currentRevision()) return Promise.reject(Errors.FutureRev);
    this.compacted = rev;
    return Promise.resolve({});
  }
}

const MIN = 60_000;
const HOUR = 60 * MIN;

describe('auto compaction', () => {
  it('periodic, 10 minutes: nothing for the first window, then every 10 minutes to the revision of 10 minutes before', async () => {
    const clock = new FakeClock();
    const target = new FakeTarget(clock, 1000); // a revision per second
    const c = new Compactor({ mode: 'periodic', retention: 10 * MIN }, target, clock);
    c.start();
    await clock.advanceTo(10 * MIN - 1);
    assert.deepEqual(target.calls, []);
    await clock.advanceTo(10 * MIN);
    // the sample taken at start (revision 1)
    assert.deepEqual(target.calls, [1]);
    await clock.advanceTo(20 * MIN);
    assert.equal(target.calls.length, 2);
    // the oldest kept sample: one retention before the latest sample, which is one sampling step
    // (a tenth of the interval) old, as etcd's periodic compactor
    assert.equal(target.calls[1], 1 + (9 * MIN) / 1000);
    await clock.advanceTo(60 * MIN);
    assert.equal(target.calls.length, 6);
    const last = target.calls[target.calls.length - 1]!;
    assert.equal(last, 1 + (49 * MIN) / 1000, 'the history kept is the last 10 minutes and one step');
    c.stop();
    assert.equal(clock.pending, 0);
  });

  it('periodic, 5 hours: the first compaction after 5 hours keeps 5 hours, then one each hour', async () => {
    const clock = new FakeClock();
    const target = new FakeTarget(clock, 60_000); // a revision per minute
    const c = new Compactor({ mode: 'periodic', retention: 5 * HOUR }, target, clock);
    assert.equal(c.intervalMs, HOUR);
    assert.equal(c.tickMs, 6 * MIN);
    c.start();
    await clock.advanceTo(5 * HOUR - 1);
    assert.deepEqual(target.calls, []);
    await clock.advanceTo(5 * HOUR);
    assert.deepEqual(target.calls, [1]);
    await clock.advanceTo(8 * HOUR);
    assert.equal(target.calls.length, 4);
    // at 8 h the oldest sample is from 2 h 54 min: 5 hours and one step of history stay
    assert.equal(target.calls[3], 1 + 3 * 60 - 6);
    c.stop();
  });

  it('periodic: a failed compaction is retried at the next sample, a follower never compacts', async () => {
    const clock = new FakeClock();
    const target = new FakeTarget(clock, 1000);
    const failed: number[] = [];
    const c = new Compactor({ mode: 'periodic', retention: 10 * MIN }, target, clock, { onFailed: (r) => failed.push(r) });
    target.leader = false;
    c.start();
    await clock.advanceTo(30 * MIN);
    assert.deepEqual(target.calls, [], 'not the leader: no compaction');
    target.leader = true;
    target.failNext = 1;
    await clock.advanceTo(31 * MIN);
    assert.equal(target.calls.length, 1, 'the first attempt as leader');
    await clock.advanceTo(32 * MIN);
    assert.equal(target.calls.length, 2, 'failed once, retried one sample (1 min) later');
    assert.equal(failed.length, 1);
    assert.equal(target.compacted, target.calls[1]);
    // the sample kept by the follower's compactor: 10 minutes before the compaction
    assert.equal(target.calls[1], 1 + (21 * MIN) / 1000);
    c.stop();
  });

  it('periodic: a revision already compacted by an operator counts as done', async () => {
    const clock = new FakeClock();
    const target = new FakeTarget(clock, 1000);
    const done: number[] = [];
    const failed: number[] = [];
    const c = new Compactor({ mode: 'periodic', retention: 10 * MIN }, target, clock, { onCompacted: (r) => done.push(r), onFailed: (r) => failed.push(r) });
    c.start();
    await clock.advanceTo(5 * MIN);
    target.compacted = 1_000_000; // the operator compacted far ahead
    await clock.advanceTo(10 * MIN);
    assert.equal(target.calls.length, 1);
    assert.deepEqual(failed, []);
    // and the next attempt waits a whole interval again
    await clock.advanceTo(19 * MIN);
    assert.equal(target.calls.length, 1);
    c.stop();
  });

  it('revision: every 5 minutes to current - retention, never the same revision twice', async () => {
    const clock = new FakeClock();
    const target = new FakeTarget(clock, 1000);
    const c = new Compactor({ mode: 'revision', retention: 1000 }, target, clock);
    c.start();
    await clock.advanceTo(REVISION_CHECK_INTERVAL_MS);
    // revision 301 at 5 min: 301 - 1000 < 0, nothing to compact
    assert.deepEqual(target.calls, []);
    await clock.advanceTo(4 * REVISION_CHECK_INTERVAL_MS);
    assert.deepEqual(target.calls, [1 + 1200 - 1000]);
    await clock.advanceTo(5 * REVISION_CHECK_INTERVAL_MS);
    assert.deepEqual(target.calls, [201, 501]);
    c.stop();
    // no writes: the same target revision is not proposed again
    const idle = new FakeClock();
    const still = { compacted: 0, calls: [] as number[], currentRevision: () => 5000, isLeader: () => true, compact(rev: number) { this.calls.push(rev); return Promise.resolve(); } };
    const c2 = new Compactor({ mode: 'revision', retention: 100 }, still, idle);
    c2.start();
    await idle.advanceTo(10 * REVISION_CHECK_INTERVAL_MS);
    assert.deepEqual(still.calls, [4900]);
    c2.stop();
  });

  it('retention flag: hours, Go durations and revisions, as etcd reads them', () => {
    assert.equal(parseRetention('periodic', '1'), HOUR);
    assert.equal(parseRetention('periodic', '0'), 0);
    assert.equal(parseRetention('periodic', '30m'), 30 * MIN);
    assert.equal(parseRetention('periodic', '1h30m'), 90 * MIN);
    assert.equal(parseRetention('periodic', '1.5h'), 90 * MIN);
    assert.equal(parseRetention('periodic', '500ms'), 500);
    assert.equal(parseRetention('revision', '1000'), 1000);
    assert.equal(typeof parseRetention('revision', '1h'), 'string');
    assert.equal(typeof parseRetention('periodic', '-1'), 'string');
    assert.equal(typeof parseRetention('periodic', '10 minutes'), 'string');
    assert.equal(parseGoDuration('1h2m3s'), HOUR + 2 * MIN + 3000);
    assert.equal(parseGoDuration(''), undefined);
    assert.equal(parseGoDuration('5x'), undefined);
    assert.equal(parseGoDuration('h'), undefined);
  });
});
