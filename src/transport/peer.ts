// The sending half of the transport for one remote member: a bounded queue, one long-lived Stream call,
// batching, back-pressure and reconnect. See index.ts for the design note.
//
// States (derived from fields, not stored): idle (no call, no retry timer) -> dialing (call, !ready)
// -> ready (call, ready) -> [stream ends] -> backoff (retryTimer) -> dialing ... Messages are written
// only in `ready`: until the receiver accepted the call (it answers with response headers) they stay in
// the queue, so an outage does not swallow the messages written into a call that never connected.
// The call is our own HTTP/2 client (h2_client.ts), one connection per call: a redial is a new
// connection.

import type { Message, NodeId } from '../raft';
import { assert } from '../util/assert';
import { GrpcCode } from '../util/errors';
import type { Logger } from '../util/log';
import { Backoff, type BackoffOptions } from './backoff';
import { encodedMessageSize } from './codec';
import { H2ClientCall, MESSAGE_HEADROOM, type ClientTls, type H2CallStatus } from './h2_client';
import { STREAM_PATH, encodeBatchMessage, peerHeaders, peerHostPort, peerTarget, ERR_MEMBER_REMOVED } from './wire';

const BATCH_HEADER_BYTES = 5;
/** How long close() waits for a stream to end cleanly before it stops waiting. */
const CLOSE_WAIT_MS = 1_000;
/** A peer that vanished without closing the connection (power loss, partition) is noticed within
 *  ~15 s: a PING every 10 s, given up after 5 s without its answer. */
export const KEEPALIVE_INTERVAL_MS = 10_000;
export const KEEPALIVE_TIMEOUT_MS = 5_000;

export interface TransportStats {
  sentBatches: number;
  sentMessages: number;
  dropped: number;
  received: number;
}

/** What a Peer needs from its Transport. */
export interface PeerContext {
  readonly localId: NodeId;
  readonly clusterId: bigint;
  readonly log: Logger;
  readonly stats: TransportStats;
  readonly maxQueuedMessages: number;
  readonly maxBatchBytes: number;
  readonly dialTimeoutMs: number;
  readonly backoff: BackoffOptions;
  /** Peer TLS: every peer is dialed with TLS when set (whatever its URL's scheme), as grpc-js
   *  did with these files as its channel credentials. */
  readonly tls: ClientTls | undefined;
  reportUnreachable(id: NodeId): void;
  /** A peer refused us as a member removed from the cluster. */
  reportRemoved(): void;
}

export class Peer {
  private urls: string[];
  private urlIndex = 0;
  private queue: Message[] = [];
  /** The Stream call; it is written serialized MessageBatches (wire.encodeBatchMessage). */
  private call: H2ClientCall | undefined;
  /** Generation of the current call: events of older calls are ignored. */
  private callGen = 0;
  private ready = false;
  private waitingDrain = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private dialTimer: NodeJS.Timeout | undefined;
  private readonly backoff: Backoff;
  /** Consecutive failed dials / broken streams; logs say "down" once, "back" once. */
  private failures = 0;
  private droppedInEpisode = 0;
  private droppedThisTurn = false;
  private onCallEnded: (() => void) | undefined;
  /** The current call was cancelled by the dial timeout (its status then only says "Cancelled"). */
  private dialTimedOut = false;
  private closed = false;
  /** Set while a snapshot to this peer is being sent (one at a time, see transport.ts). */
  snapshotAbort: AbortController | undefined;

  constructor(
    readonly id: NodeId,
    urls: string[],
    private readonly ctx: PeerContext,
  ) {
    assert(urls.length > 0, `peer ${id}: no URLs`);
    urls.forEach(peerTarget); // validate now: a bad URL is a configuration error, not a network one
    this.urls = [...urls];
    this.backoff = new Backoff(ctx.backoff);
  }

  get queuedMessages(): number {
    return this.queue.length;
  }

  get connected(): boolean {
    return this.ready;
  }

  /** Queues a message; false when the queue is full and the message was dropped. */
  enqueue(m: Message): boolean {
    if (this.closed) return false;
    if (this.queue.length >= this.ctx.maxQueuedMessages) {
      this.ctx.stats.dropped++;
      if (this.droppedInEpisode++ === 0) {
        this.ctx.log.warn('dropping raft messages: peer queue full', {
          remote: this.id,
          queued: this.queue.length,
          connected: this.ready,
        });
      }
      if (!this.droppedThisTurn) {
        // Raft treats the peer as unreachable (probe mode) and resends later; once per turn is enough.
        this.droppedThisTurn = true;
        this.ctx.reportUnreachable(this.id);
      }
      return false;
    }
    if (this.droppedInEpisode > 0) {
      this.ctx.log.info('peer queue accepts messages again', { remote: this.id, dropped: this.droppedInEpisode });
      this.droppedInEpisode = 0;
    }
    this.queue.push(m);
    return true;
  }

  /** Dials now, even with nothing to send, unless a stream is up or being dialed or a redial is
   *  pending (a starting member looks for connected peers: embed/member.ts; etcd keeps a stream
   *  to every peer). A peer that is down is dialed again on the next call after the backoff. */
  connect(): void {
    if (this.closed || this.call !== undefined || this.retryTimer !== undefined) return;
    this.dial();
  }

  /** Called once per event-loop turn in which messages were queued: dials or writes one batch. */
  flush(): void {
    this.droppedThisTurn = false;
    if (this.closed || this.queue.length === 0) return;
    if (this.call === undefined) {
      if (this.retryTimer === undefined) this.dial();
      return;
    }
    this.writeQueued();
  }

  currentUrl(): string {
    return this.urls[this.urlIndex];
  }

  updateUrls(urls: string[]): void {
    assert(urls.length > 0, `peer ${this.id}: no URLs`);
    urls.forEach(peerTarget);
    const same = urls.length === this.urls.length && urls.every((u, i) => u === this.urls[i]);
    if (same) return;
    const current = this.urls[this.urlIndex];
    this.urls = [...urls];
    this.urlIndex = Math.max(0, urls.indexOf(current));
    if (!urls.includes(current)) {
      // The stream goes to an address the member no longer has: redial now, without backoff.
      this.abandonCall();
      this.backoff.reset();
      if (this.queue.length > 0) this.dial();
    }
  }

  /** Ends the stream (cleanly if it is ready) and its connection; waits up to `waitMs` for
   *  the receiver to acknowledge the end (0: not at all — a member shutting down needs no
   *  acknowledgement: Raft messages may be lost, and the receiver redials). */
  async close(waitMs = CLOSE_WAIT_MS): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.clearTimers();
    this.queue = [];
    this.snapshotAbort?.abort();
    const call = this.call;
    if (call !== undefined) {
      const ended = new Promise<void>((resolve) => {
        if (waitMs === 0) return resolve();
        const t = setTimeout(resolve, waitMs);
        this.onCallEnded = () => {
          clearTimeout(t);
          resolve();
        };
      });
      // A ready stream ends cleanly (the receiver has everything we wrote); a dialing one is cancelled.
      if (this.ready) call.end();
      else call.cancel();
      await ended;
    }
  }

  private dial(): void {
    assert(this.call === undefined && !this.closed, `peer ${this.id}: dial with a call in place or closed`);
    const gen = ++this.callGen;
    const { host, port } = peerHostPort(this.currentUrl());
    const call = new H2ClientCall(
      {
        host,
        port,
        tls: this.ctx.tls,
        path: STREAM_PATH,
        metadata: peerHeaders(this.ctx.localId, this.id, this.ctx.clusterId),
        keepaliveIntervalMs: KEEPALIVE_INTERVAL_MS,
        keepaliveTimeoutMs: KEEPALIVE_TIMEOUT_MS,
        log: this.ctx.log,
      },
      {
        ready: () => this.onReady(gen),
        drain: () => {
          if (gen !== this.callGen) return;
          this.waitingDrain = false;
          this.writeQueued();
        },
        end: (status) => this.onEnd(gen, status),
      },
    );
    this.call = call;
    this.ready = false;
    this.waitingDrain = false;
    this.dialTimedOut = false;
    this.dialTimer = setTimeout(() => {
      this.dialTimer = undefined;
      if (gen !== this.callGen || this.ready) return;
      this.dialTimedOut = true;
      call.cancel();
    }, this.ctx.dialTimeoutMs);
  }

  private onReady(gen: number): void {
    if (gen !== this.callGen || this.closed) return;
    this.ready = true;
    if (this.dialTimer !== undefined) clearTimeout(this.dialTimer);
    this.dialTimer = undefined;
    this.backoff.reset();
    if (this.failures > 0) this.ctx.log.info('peer stream established again', { remote: this.id, url: this.currentUrl(), failures: this.failures });
    else this.ctx.log.debug('peer stream established', { remote: this.id, url: this.currentUrl() });
    this.failures = 0;
    this.writeQueued();
  }

  private onEnd(gen: number, status: H2CallStatus): void {
    if (gen !== this.callGen) return;
    if (this.dialTimer !== undefined) clearTimeout(this.dialTimer);
    this.dialTimer = undefined;
    const wasReady = this.ready;
    this.call = undefined;
    this.ready = false;
    this.waitingDrain = false;
    if (this.closed) {
      this.onCallEnded?.();
      return;
    }
    this.failures++;
    const details = this.dialTimedOut ? `no answer within ${this.ctx.dialTimeoutMs} ms` : status.code === GrpcCode.OK ? 'stream ended by the receiver' : status.details;
    const fields = { remote: this.id, url: this.currentUrl(), code: status.code, details, wasReady };
    if (status.code === GrpcCode.FAILED_PRECONDITION) this.ctx.log.error('peer rejected raft stream', fields);
    if (status.code === GrpcCode.FAILED_PRECONDITION && status.details === ERR_MEMBER_REMOVED) this.ctx.reportRemoved();
    else if (this.failures === 1) this.ctx.log.warn('peer stream broken or peer unreachable; reconnecting with backoff', fields);
    else this.ctx.log.debug('peer still unreachable', { ...fields, failures: this.failures });
    this.ctx.reportUnreachable(this.id);
    this.urlIndex = (this.urlIndex + 1) % this.urls.length;
    this.scheduleRedial();
  }

  private scheduleRedial(): void {
    assert(this.retryTimer === undefined, `peer ${this.id}: two redial timers`);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      // Lazy: with nothing to send there is no reason to hold a connection to a peer that was down.
      if (!this.closed && this.call === undefined && this.queue.length > 0) this.dial();
    }, this.backoff.nextDelayMs());
  }

  /** Writes the queue in batches of at most maxBatchBytes until it is empty or the call pushes back. */
  private writeQueued(): void {
    while (this.call !== undefined && this.ready && !this.waitingDrain && this.queue.length > 0) {
      const queue = this.queue;
      let n = 0;
      let sizeBytes = BATCH_HEADER_BYTES;
      while (n < queue.length) {
        const s = encodedMessageSize(queue[n]);
        // At least one message per batch: Raft bounds a single message (max-size-per-msg).
        if (n > 0 && sizeBytes + s > this.ctx.maxBatchBytes) break;
        sizeBytes += s;
        n++;
      }
      const batch = n === queue.length ? queue : queue.slice(0, n);
      this.queue = n === queue.length ? [] : queue.slice(n);
      const encoded = encodeBatchMessage(batch, sizeBytes, MESSAGE_HEADROOM);
      this.ctx.stats.sentBatches++;
      this.ctx.stats.sentMessages += n;
      // false: the receiver's window is used up or the socket pushes back; keep queueing (and
      // batching) until drain.
      if (!this.call.write(encoded)) this.waitingDrain = true;
    }
    // The batch goes to the socket now, not in the call's nextTick (see Transport.send).
    this.call?.flushNow();
  }

  private abandonCall(): void {
    const call = this.call;
    this.callGen++; // its end is of no interest any more
    this.call = undefined;
    this.ready = false;
    this.waitingDrain = false;
    this.clearTimers();
    call?.cancel();
  }

  private clearTimers(): void {
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    if (this.dialTimer !== undefined) clearTimeout(this.dialTimer);
    this.retryTimer = undefined;
    this.dialTimer = undefined;
  }
}
