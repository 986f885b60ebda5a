// The requests of a client-streaming call as an async iterable that reads on demand: a handler
// that consumes them at its own pace (a snapshot written to disk) pulls them one by one, and the
// call stops delivering them (holdRequests: the HTTP/2 stream is paused and its window no longer
// credited) while `readAheadMax` are waiting to be pulled. So a consumer that does not read holds
// at most readAheadMax messages here plus the stream's receive window in h2_conn, whatever the
// client sends.
import { assert } from '../util/assert';
import type { BidiListener, ClientStreamCall } from './call';

export class RequestQueue<Req> implements BidiListener<Req>, AsyncIterable<Req> {
  /** Requests delivered and not yet pulled: queue[head] onwards. */
  private queue: Req[] = [];
  private head = 0;
  private held = false;
  /** The client half-closed: once the queue is empty the iteration ends. */
  private ended = false;
  /** Why the iteration fails once the queue is empty (the call went away, abort()). */
  private error: Error | undefined;
  private wake: (() => void) | undefined;
  private iterating = false;

  /** `goneError`: what a pull throws once the call is gone before the client half-closed. */
  constructor(
    private readonly call: Pick<ClientStreamCall<unknown>, 'holdRequests' | 'releaseRequests'>,
    private readonly readAheadMax: number,
    private readonly goneError: () => Error,
  ) {
    assert(Number.isInteger(readAheadMax) && readAheadMax >= 1, 'request queue: readAheadMax >= 1');
  }

  get waiting(): number {
    return this.queue.length - this.head;
  }

  message(request: Req): void {
    this.queue.push(request);
    if (!this.held && this.waiting >= this.readAheadMax) {
      this.held = true;
      this.call.holdRequests();
    }
    this.notify();
  }

  halfClosed(): void {
    this.ended = true;
    this.notify();
  }

  closed(): void {
    if (!this.ended) this.abort(this.goneError());
  }

  /** Makes the pulls fail with `err` once the requests already delivered are pulled (a pull that
   *  waits fails now). The first error counts. */
  abort(err: Error): void {
    this.error ??= err;
    this.notify();
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  /** The next request; undefined once the client half-closed and every request was pulled. */
  async next(): Promise<Req | undefined> {
    for (;;) {
      if (this.head < this.queue.length) {
        const r = this.queue[this.head]!;
        this.queue[this.head++] = undefined as Req;
        if (this.head === this.queue.length) {
          this.queue = [];
          this.head = 0;
        }
        if (this.held && this.waiting < this.readAheadMax) {
          this.held = false;
          this.call.releaseRequests();
        }
        return r;
      }
      if (this.error !== undefined) throw this.error;
      if (this.ended) return undefined;
      assert(this.wake === undefined, 'request queue: two pulls at once');
      await new Promise<void>((r) => (this.wake = r));
    }
  }

  /** Iterated once (a second iteration would share the queue with the first). */
  async *[Symbol.asyncIterator](): AsyncIterator<Req> {
    assert(!this.iterating, 'request queue: iterated twice');
    this.iterating = true;
    for (;;) {
      const r = await this.next();
      if (r === undefined) return;
      yield r;
    }
  }
}
