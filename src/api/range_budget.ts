// The member-wide budget of memory held by large range answers (Range, read-only Txn) while they
// are read, encoded and sent (issue 17): each answer past one event-loop turn takes its cost from
// the budget before it reads any value, and gives it back when it is sent or given up. etcd 3.4
// has no such bound (N clients each reading a 1 GB range hold N GB there); here, past the budget,
// answers wait in a FIFO queue, and beyond WAITERS_MAX waiting, or after WAIT_MS_MAX, they are
// refused with RESOURCE_EXHAUSTED, which a client may retry.
//
// The cost is what the answer holds at once, estimated by the caller (range_sliced.ts): a
// streamed answer holds its version list and about one send buffer of encoded bytes, whatever its
// size; an answer held whole (a sort by value, a Txn's) its bytes. An answer that costs more than
// the whole budget runs alone (when nothing else holds any), so that any answer etcd gives is
// still given.
import { assert } from '../util/assert';
import { EtcdError, GrpcCode } from '../util/errors';

/** Answers waiting for the budget beyond which more are refused at once. */
export const RANGE_ANSWER_WAITERS_MAX = 256;
/** The longest an answer waits for the budget before it is refused. */
export const RANGE_ANSWER_WAIT_MS_MAX = 30_000;

/** What an admitted answer gives back (once) when it is sent or given up. */
export type BudgetRelease = () => void;

interface Waiter {
  readonly cost: number;
  readonly admit: (release: BudgetRelease | EtcdError) => void;
  timer: NodeJS.Timeout | undefined;
}

/** A wait for the budget: `admitted` resolves to the release, or to the refusal; cancel() (the
 *  client went away) leaves the queue and resolves it to undefined. */
export interface BudgetWait {
  readonly admitted: Promise<BudgetRelease | EtcdError | undefined>;
  cancel(): void;
}

export class RangeAnswerBudget {
  /** Bytes held by admitted answers. */
  private heldBytes = 0;
  private readonly queue: Waiter[] = [];
  /** Answers refused (queue full or waited too long): a metric. */
  refused = 0;
  /** Answers admitted after waiting: a metric. */
  waited = 0;

  constructor(
    readonly bytesMax: number,
    private readonly waitersMax = RANGE_ANSWER_WAITERS_MAX,
    private readonly waitMsMax = RANGE_ANSWER_WAIT_MS_MAX,
  ) {
    assert(bytesMax > 0 && waitersMax >= 0 && waitMsMax > 0, 'range budget: positive bounds');
  }

  get bytes(): number {
    return this.heldBytes;
  }

  get waiting(): number {
    return this.queue.length;
  }

  /** Takes `cost` bytes: at once when they fit and nobody waits, else after those before it. */
  acquire(cost: number): BudgetWait {
    assert(cost >= 0 && Number.isFinite(cost), 'range budget: a cost must be a finite byte count');
    if (this.queue.length === 0 && this.fits(cost)) return { admitted: Promise.resolve(this.take(cost)), cancel: () => undefined };
    if (this.queue.length >= this.waitersMax) {
      this.refused++;
      return { admitted: Promise.resolve(this.refusal()), cancel: () => undefined };
    }
    let settle!: (r: BudgetRelease | EtcdError | undefined) => void;
    const admitted = new Promise<BudgetRelease | EtcdError | undefined>((resolve) => (settle = resolve));
    const w: Waiter = { cost, admit: settle, timer: undefined };
    w.timer = setTimeout(() => {
      if (!this.leave(w)) return;
      this.refused++;
      settle(this.refusal(this.waitMsMax));
    }, this.waitMsMax);
    w.timer.unref();
    this.queue.push(w);
    return {
      admitted,
      cancel: () => {
        if (this.leave(w)) settle(undefined);
      },
    };
  }

  private fits(cost: number): boolean {
    return this.heldBytes + cost <= this.bytesMax || this.heldBytes === 0;
  }

  private take(cost: number): BudgetRelease {
    this.heldBytes += cost;
    let released = false;
    return () => {
      assert(!released, 'range budget: released twice');
      released = true;
      this.heldBytes -= cost;
      assert(this.heldBytes >= 0, 'range budget: negative bytes');
      this.admitWaiting();
    };
  }

  /** Admits the waiting answers, in order, while the first fits. */
  private admitWaiting(): void {
    while (this.queue.length > 0 && this.fits(this.queue[0]!.cost)) {
      const w = this.queue.shift()!;
      clearTimeout(w.timer);
      this.waited++;
      w.admit(this.take(w.cost));
    }
  }

  /** Removes `w` from the queue; false if it had left it already. */
  private leave(w: Waiter): boolean {
    const i = this.queue.indexOf(w);
    if (i < 0) return false;
    this.queue.splice(i, 1);
    clearTimeout(w.timer);
    // The head leaving may let the next in.
    if (i === 0) this.admitWaiting();
    return true;
  }

  private refusal(waitedMs?: number): EtcdError {
    const why = waitedMs === undefined ? `${this.queue.length} more already waiting` : `waited ${waitedMs} ms`;
    return new EtcdError(
      GrpcCode.RESOURCE_EXHAUSTED,
      `quorumkv: too many large range answers in flight: ${this.heldBytes} of ${this.bytesMax} bytes (--max-range-answer-bytes) held by others and ${why}; retry later`,
    );
  }
}
