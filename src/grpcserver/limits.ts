// Limits shared by the client port's HTTP/2 connections (h2_conn.ts): a token bucket for the
// frames a client can make the server work for (resets, PINGs, SETTINGS), and the member-wide
// budget of response bytes queued for clients that do not read.
//
// Why a member-wide budget on top of the per-stream and per-connection bounds: those bound what
// one client holds, not what many together hold (and a unary response is queued whole, whatever
// its size). Above the budget the streams whose client has not opened its window for
// STALLED_MS_MIN are ended (RESOURCE_EXHAUSTED), those waiting longest first; a large response
// that its client is reading is left alone unless the queued bytes reach HARD_FACTOR times the
// budget, where the streams waiting longest go whatever their progress, before the member's
// memory grows without limit (etcd 3.4 has no such bound: grpc-go blocks the writer, which
// holds its goroutine instead).
import { assert } from '../util/assert';

/** Allows `burst` events at once and `perSecond` after that; refilled on demand. */
export class TokenBucket {
  private tokens: number;
  private refillMs: number;

  constructor(
    private readonly burst: number,
    private readonly perSecond: number,
  ) {
    assert(burst >= 1 && perSecond >= 0, 'token bucket: burst >= 1');
    this.tokens = burst;
    this.refillMs = Date.now();
  }

  /** Takes one token; false when none is left (the caller refuses the event). */
  take(): boolean {
    const now = Date.now();
    if (now !== this.refillMs) {
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.refillMs) * this.perSecond) / 1000);
      this.refillMs = now;
    }
    if (this.tokens < 1) return false;
    this.tokens--;
    return true;
  }

  /** Back to a full burst (a PING answered while the server is sending responses is no abuse). */
  fill(): void {
    this.tokens = this.burst;
  }
}

/** A stream that holds queued response bytes and can be ended to free them. */
export interface BudgetHolder {
  /** When it last sent anything while waiting, or started waiting (Date.now()). */
  progressMs: number;
  /** Drops the queued bytes and ends the stream (with a status that says why). */
  evict(): void;
}

/** A waiting stream that sent nothing for this long is stalled: its client is not reading. */
export const STALLED_MS_MIN = 2000;
/** Queued bytes at this multiple of the budget evict the streams waiting longest regardless. */
const HARD_FACTOR = 4;
/** While over the budget with nothing evictable yet, looked at again this often. */
const RECHECK_MS = 250;

/** Per queued response buffer, what it costs beyond its bytes (a Buffer object and its slot in
 *  the queue): a stream of many small responses is bounded by memory, not by payload alone. */
export const QUEUED_BUFFER_OVERHEAD_BYTES = 96;

/** The response bytes queued in every stream of every connection of one server, and the streams
 *  blocked by their client's flow-control window, in the order they became blocked. */
export class ResponseBudget {
  /** Queued bytes (with QUEUED_BUFFER_OVERHEAD_BYTES per buffer), all streams together. */
  bytes = 0;
  /** Streams ended because the budget was exceeded. */
  evicted = 0;
  private readonly blocked = new Set<BudgetHolder>();
  private enforceScheduled = false;
  private recheck: NodeJS.Timeout | undefined;

  constructor(readonly bytesMax: number) {
    assert(bytesMax > 0, 'response budget: bytesMax > 0');
  }

  add(n: number): void {
    this.bytes += n;
    if (this.bytes > this.bytesMax && !this.enforceScheduled) {
      // Not from inside the write that crossed the bound: evicting runs other streams' callbacks.
      this.enforceScheduled = true;
      process.nextTick(() => this.enforce());
    }
  }

  sub(n: number): void {
    this.bytes -= n;
    assert(this.bytes >= 0, 'response budget: negative bytes');
  }

  /** `s` waits for its client's window (kept in the order streams started waiting). */
  wait(s: BudgetHolder): void {
    this.blocked.add(s);
  }

  /** `s` no longer waits (it sent, or it is gone). */
  unwait(s: BudgetHolder): void {
    this.blocked.delete(s);
  }

  get waiting(): number {
    return this.blocked.size;
  }

  /** Ends stalled streams, those waiting longest first, until the bytes are back within the
   *  bound (and any waiting stream while above HARD_FACTOR times it); if still over, looks again
   *  in RECHECK_MS. Each eviction frees that stream's queue; one pass over the waiting streams. */
  enforce(now = Date.now()): void {
    this.enforceScheduled = false;
    for (const s of this.blocked) {
      if (this.bytes <= this.bytesMax) break;
      if (this.bytes <= HARD_FACTOR * this.bytesMax && now - s.progressMs < STALLED_MS_MIN) continue;
      this.blocked.delete(s);
      this.evicted++;
      s.evict();
    }
    if (this.bytes > this.bytesMax && this.blocked.size > 0 && this.recheck === undefined) {
      this.recheck = setTimeout(() => {
        this.recheck = undefined;
        this.enforce();
      }, RECHECK_MS);
      this.recheck.unref();
    }
  }
}
