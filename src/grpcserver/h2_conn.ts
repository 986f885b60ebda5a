// The server side of one HTTP/2 connection (RFC 9113), written directly on the socket: what the
// client port's gRPC server (h2_grpc.ts) needs of HTTP/2, and nothing else.
//
// Why not node:http2: a unary gRPC call through it costs a JavaScript stream object, several
// events and a round through nghttp2's C++ for every frame, and Node sends a response's trailers
// from a setImmediate, a loop turn after its data. Written here, a unary response is one HEADERS,
// its DATA and the trailers in one socket write, and the bytes of a turn's responses on one
// connection go out in one write (scripts/bench-h2-ceiling.ts measured 33-35k calls/s on
// node:http2 against 77-110k framing directly; docs/performance.md).
//
// What it does:
//   - the client preface, SETTINGS (ours and the client's, with ACKs), PING answers, GOAWAY (sent
//     on close with the last stream we took; streams already open are finished);
//   - request header blocks over HEADERS + CONTINUATION, decoded with HPACK (hpack.ts, which keeps
//     the client's dynamic table); a block's raw size (frame headers included) is bounded (past
//     it, GOAWAY), and so is its decoded header-list size, checked while decoding (past it, that
//     request alone is answered 431, as Go's server does); client resets are rate-limited;
//   - response header blocks encoded as literals that never enter a dynamic table (so the
//     client's SETTINGS_HEADER_TABLE_SIZE only needs a size update of 0, sent when it changes);
//   - flow control both ways: received DATA is credited back (WINDOW_UPDATE) as it is handed on;
//     a paused stream (its user's responses are not drained) is not handed its DATA: the bytes
//     are held and not credited to the stream until it resumes (nor to the connection, past
//     CONN_HELD_CREDITED_MAX held by all its streams), so a client that does not read its
//     responses stops being read. Receive windows start at HTTP/2's
//     65,535 bytes (as grpc-go's) and grow, by the bandwidth-delay product measured with PINGs
//     (grpc-go's BDP estimator), up to 1 MiB per stream and 16 MiB per connection, only where
//     the data is consumed promptly: handed on at once (not held) while few responses wait
//     (GROW_QUEUED_BYTES_MAX); a paused stream never gets more credit. Sent DATA never exceeds the
//     client's connection and stream windows (queued per stream until WINDOW_UPDATE), and is cut
//     to its SETTINGS_MAX_FRAME_SIZE; trailers go only after a stream's last DATA;
//   - bounded buffering: a stream's writes return false above its bound, every stream's above
//     the connection's (CONN_BUFFER_BYTES_MAX, socket backlog included), and above the member's
//     budget (limits.ts ResponseBudget) the streams blocked longest are evicted;
//   - flow-control bookkeeping in O(1) per frame: a stream's send window is an offset from the
//     client's SETTINGS_INITIAL_WINDOW_SIZE (a change touches no stream), and the streams that
//     have data but no window wait in two queues (their own window, the connection's) that a
//     WINDOW_UPDATE or a raised initial window works through at most WAKE_PER_TURN at a time;
//   - SETTINGS_MAX_CONCURRENT_STREAMS advertised and enforced (RST_STREAM REFUSED_STREAM); every
//     RST_STREAM, the client's and ours, taken from one reset budget (CVE-2023-44487 rapid reset,
//     CVE-2025-8671 MadeYouReset); PING and SETTINGS rate-limited; past any of them, GOAWAY
//     ENHANCE_YOUR_CALM;
//   - RST_STREAM both ways; a stream the server ends before the client half-closed is reset with
//     NO_ERROR (as grpc-go's server), so no state outlives a response;
//   - protocol violations end the connection with GOAWAY and the matching error code; a socket
//     that errors or closes aborts every open stream;
//   - a stream's callback that throws fails that stream alone (RST_STREAM INTERNAL_ERROR, logged),
//     except for an AssertionError, which is a bug in quorumkv: it propagates and the member
//     crashes (src/util/assert.ts).
// Not implemented: server push, PRIORITY (ignored, as RFC 9113 allows), and HTTP/1.1 upgrade
// (the listener routes by preface). Idle and first-request timeouts are the server's
// (server.ts), which sweeps its connections once a second.
import type { Duplex } from 'node:stream';
import { AssertionError, assert } from '../util/assert';
import { Logger } from '../util/log';
import { HpackDecoder, HpackError, encodeHeaderBlock } from './hpack';
import {
  DEFAULT_MAX_FRAME,
  DEFAULT_WINDOW,
  FRAME_HEADER_BYTES,
  F_ACK,
  F_END_HEADERS,
  F_END_STREAM,
  F_PADDED,
  F_PRIORITY,
  H2_CANCEL,
  H2_COMPRESSION_ERROR,
  H2_ENHANCE_YOUR_CALM,
  H2_FLOW_CONTROL_ERROR,
  H2_FRAME_SIZE_ERROR,
  H2_INTERNAL_ERROR,
  H2_NO_ERROR,
  H2_PREFACE,
  H2_PROTOCOL_ERROR,
  H2_REFUSED_STREAM,
  H2_STREAM_CLOSED,
  MAX_FRAME_SIZE_LIMIT,
  MAX_WINDOW,
  S_HEADER_TABLE_SIZE,
  S_INITIAL_WINDOW_SIZE,
  S_MAX_CONCURRENT_STREAMS,
  S_MAX_FRAME_SIZE,
  S_MAX_HEADER_LIST_SIZE,
  T_CONTINUATION,
  T_DATA,
  T_GOAWAY,
  T_HEADERS,
  T_PING,
  T_PRIORITY,
  T_PUSH_PROMISE,
  T_RST_STREAM,
  T_SETTINGS,
  T_WINDOW_UPDATE,
  FrameReader,
  H2ConnectionError,
  frame,
  frameWithRoom,
  u32,
} from './h2_frames';
import { QUEUED_BUFFER_OVERHEAD_BYTES, ResponseBudget, TokenBucket, type BudgetHolder } from './limits';
import { LAT_TRACE, latStamp } from '../util/lat_trace';

export { encodeHeaderBlock } from './hpack';
export { H2_PREFACE } from './h2_frames';

/** What we let a client send ahead on one stream and on the connection: HTTP/2's default at
 *  first (so a client that never has its data consumed gets no more: etcd's grpc-go starts at the
 *  same 64 KiB), grown up to the maxima for a connection that moves data and has it consumed
 *  promptly (throughput: a 1 MiB put behind 64 KiB windows waits a round trip per 48 KiB). */
const RECV_WINDOW_INITIAL = DEFAULT_WINDOW;
const STREAM_RECV_WINDOW_MAX = 1024 * 1024;
const CONN_RECV_WINDOW_MAX = 16 * 1024 * 1024;
/** Response bytes queued on a stream (and on its connection, socket backlog included) above which
 *  its receive window does not grow: a client that does not read is not consuming promptly
 *  (grpc-go's per-connection write quota is the same 64 KiB). */
const GROW_QUEUED_BYTES_MAX = 64 * 1024;
/** Bytes held by paused streams (received, not handed on) that are nonetheless credited back to
 *  the connection, all its streams together: one paused stream does not stall the connection's
 *  other streams (its held bytes are at most its own window), while a client that pauses many
 *  streams gets at most this plus the connection window held in memory. */
const CONN_HELD_CREDITED_MAX = 256 * 1024;
/** The payload of the server's BDP PINGs (any 8 bytes, not the keepalive ones). */
const BDP_PING_DATA = Buffer.from('qkv-bdp!', 'latin1');
/** grpc-go's bdpEstimator: a sample (bytes received within one PING round trip) of at least
 *  BDP_BETA times the estimate, at the best bandwidth seen so far, sets the estimate to BDP_GAMMA
 *  times the sample; the round trip is the mean of the first BDP_RTT_BOOTSTRAP samples, then a
 *  moving average weighing each new sample BDP_RTT_ALPHA. */
const BDP_BETA = 0.66;
const BDP_GAMMA = 2;
const BDP_RTT_BOOTSTRAP = 10;
const BDP_RTT_ALPHA = 0.9;
/** Bytes a connection may have queued in its socket before it stops reading (a client that sends
 *  but does not read — PINGs, say — is not answered into unbounded memory). */
const SOCKET_BACKLOG_MAX = 16 * 1024 * 1024;
/** RST_STREAMs (the client's and ours alike) a connection may see in a burst, and per second
 *  after it (nghttp2's rapid reset guard is of the same kind; counting ours too is the fix for
 *  MadeYouReset, where the client makes the server reset); beyond, GOAWAY ENHANCE_YOUR_CALM. */
const RESET_BURST = 1000;
const RESETS_PER_SECOND = 100;
/** PINGs a client may send in a burst and per second while the server sends no response (the
 *  burst is restored by every response HEADERS or DATA, as grpc-go's ping strikes: a client's
 *  BDP pings follow the data it receives). */
const PING_BURST = 1000;
/** The payload of the server's keepalive PINGs (any 8 bytes; the ACK echoes them). */
const KEEPALIVE_PING_DATA = Buffer.from('qkv-kapg', 'latin1');
const PINGS_PER_SECOND = 100;
/** SETTINGS frames a client may send in a burst and per second (it needs a handful). */
const SETTINGS_BURST = 100;
const SETTINGS_PER_SECOND = 10;
/** Queued response bytes (QUEUED_BUFFER_OVERHEAD_BYTES per buffer included) of all streams of
 *  one connection plus its socket's unsent bytes, above which every stream's writes return
 *  false. */
export const CONN_BUFFER_BYTES_MAX = 16 * 1024 * 1024;
/** Streams woken per WINDOW_UPDATE or raised SETTINGS_INITIAL_WINDOW_SIZE in one event-loop
 *  turn; the rest in later turns (a frame costs O(1) however many streams wait). */
const WAKE_PER_TURN = 256;
/** Concurrent streams per connection unless told otherwise (Go's http2 server: 250; grpc-go and
 *  etcd: 2^32-1). Above Go's so that a client pipelining many unary calls on one connection is
 *  not throttled; the buffers behind each stream are bounded either way. */
export const MAX_CONCURRENT_STREAMS_DEFAULT = 1000;
/** HTTP/2 header names are lower case (RFC 9113 §8.2.1); tested without making a lowered copy. */
const UPPER_CASE = /[A-Z]/;
/** A stream's place in the send queues (H2ServerStream.waiting). */
const W_NONE = 0;
const W_STREAM = 1;
const W_CONN = 2;

/** Request headers as node:http2 gives them: names in lower case; a repeated header as an array. */
export type H2Headers = Record<string, string | string[] | undefined>;


/** Sets an own property even where an assignment would not: a client's header named __proto__
 *  would otherwise replace the object's prototype. */
function defineHeader(headers: H2Headers, name: string, value: string | string[]): void {
  Object.defineProperty(headers, name, { value, enumerable: true, writable: true, configurable: true });
}

/** The answer to a request whose header list is above the bound (RFC 6585 §5, as Go's server). */
const HEADER_LIST_TOO_LARGE_BLOCK = encodeHeaderBlock([[':status', '431']]);

const EMPTY = Buffer.alloc(0);


/** One request stream, as the gRPC layer sees it. */
export class H2ServerStream implements BudgetHolder {
  /** Set by the stream's user (h2_grpc.ts) when the stream is announced. */
  onData: ((chunk: Buffer) => void) | undefined;
  /** The client half-closed (END_STREAM): no more data. */
  onEnd: (() => void) | undefined;
  /** The stream is gone: `aborted` when it ended without both sides finishing (the client reset it,
   *  the connection dropped, or we reset it), false when both sides ended normally. */
  onClose: ((aborted: boolean) => void) | undefined;
  /** Its queued responses were dropped to keep the member within its response budget
   *  (limits.ts): the user ends the stream with a status saying so (if it does not, the stream
   *  is reset with CANCEL). */
  onEvict: (() => void) | undefined;

  remoteEnded = false;
  localEnded = false;
  closed = false;
  headersSent = false;

  /** Send side: the stream's window is this plus the client's SETTINGS_INITIAL_WINDOW_SIZE
   *  (connection-wide, so that changing it costs O(1)). */
  windowOffset = 0;
  /** Which send queue the stream waits in: W_NONE, W_STREAM (its window), W_CONN (the
   *  connection's). */
  waiting = W_NONE;
  /** When it last sent while waiting, or started waiting (limits.ts: a stalled stream is the
   *  first evicted). */
  progressMs = 0;
  /** Data waiting for window, in order: pending[pendingHead] from pendingOffset on, then the rest
   *  (a queue with a moving head: a watch stream held by the client's window can queue thousands
   *  of small writes, and Array.shift() on those was 14% of a member's time); then the trailers
   *  block if the response is complete. */
  pending: (Buffer | undefined)[] = [];
  pendingHead = 0;
  pendingOffset = 0;
  pendingBytes = 0;
  /** pendingBytes plus QUEUED_BUFFER_OVERHEAD_BYTES per queued buffer: what the bounds count. */
  pendingCost = 0;
  trailers: Buffer | undefined;
  /** Receive side: bytes the client may still send; bytes handed on but not yet credited back;
   *  the window it is credited up to (RECV_WINDOW_INITIAL, raised while its data is consumed
   *  promptly: H2ServerConnection.growStream). */
  recvWindow = RECV_WINDOW_INITIAL;
  uncredited = 0;
  recvTarget = RECV_WINDOW_INITIAL;
  /** Its window was set by its user (widenRecvWindow): the BDP estimate no longer raises it. */
  recvFixed = false;
  paused = false;
  /** DATA received while paused, not handed on nor credited (held[heldHead] onwards), and
   *  whether the client's END_STREAM came after it. At most one stream window (the client cannot
   *  send more without our WINDOW_UPDATE). */
  held: Buffer[] | undefined = undefined;
  heldHead = 0;
  heldBytes = 0;
  /** Of heldBytes, those already credited to the connection (CONN_HELD_CREDITED_MAX). */
  heldConnCredited = 0;
  heldEnd = false;
  releaseScheduled = false;
  drainWaiters: (() => void)[] = [];

  constructor(
    readonly conn: H2ServerConnection,
    readonly id: number,
    readonly headers: H2Headers,
  ) {}

  /** Bytes the client's stream window lets us send now (the connection's window aside). */
  get sendWindow(): number {
    return this.windowOffset + this.conn.peerInitialWindow;
  }

  /** The connection's socket (addresses for logging and client-certificate identity). */
  get socket(): Duplex & { localAddress?: string; localPort?: number; remoteAddress?: string; remotePort?: number } {
    return this.conn.socket;
  }

  /** Response headers (an encoded block); `endStream` for a trailers-only response. */
  respond(block: Buffer, endStream: boolean): void {
    if (this.closed || this.headersSent) return;
    this.headersSent = true;
    this.conn.sendHeaders(this, block, endStream);
    if (endStream) this.conn.localEnd(this);
  }

  /** Queues response data; true while the stream's queue and the socket's backlog are below
   *  `bufferBytes` (else wait for whenDrained before writing more). */
  write(data: Buffer, bufferBytes: number): boolean {
    if (this.closed || this.localEnded || this.trailers) return true;
    if (data.length === 0) return true;
    this.pending.push(data);
    this.pendingBytes += data.length;
    this.conn.queued(this, data.length + QUEUED_BUFFER_OVERHEAD_BYTES);
    this.conn.sendPending(this);
    return this.conn.belowBacklog(this, bufferBytes);
  }

  /** Calls `cb` once what was written has gone out far enough (or the stream is gone). */
  whenDrained(cb: () => void, bufferBytes: number): void {
    if (this.closed || this.conn.belowBacklog(this, bufferBytes)) return cb();
    this.drainWaiters.push(cb);
    this.conn.watchDrain(this, bufferBytes);
  }

  /** Ends the response with `block` as trailers, after the queued data. */
  end(block: Buffer): void {
    if (this.closed || this.localEnded || this.trailers) return;
    this.trailers = block;
    this.conn.sendPending(this);
  }

  /** Stops (and resumes) handing received data on and crediting it back to the client (stream
   *  and connection windows alike), so that a stream whose responses are not drained holds at
   *  most one stream window of requests, and the connection at most its window. Held data is
   *  handed on in a later turn after resume(). */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.conn.released(this);
  }

  /** Raises this stream's receive window to `streamBytes` and its connection's to
   *  `connectionBytes` (WINDOW_UPDATEs now); never lowers either. From then on the stream's window
   *  stays where it is (the BDP estimate no longer grows it), so that `streamBytes` bounds what
   *  the client may send ahead of the stream's reads (server.ts RecvWindow). */
  widenRecvWindow(streamBytes: number, connectionBytes: number): void {
    this.conn.widenRecvWindow(this, streamBytes, connectionBytes);
  }

  /** Drops the queued responses and ends the stream (ResponseBudget over its bound). */
  evict(): void {
    this.conn.evict(this);
  }

  get isPaused(): boolean {
    return this.paused;
  }
}

export interface H2ServerOptions {
  /** Largest decoded request header list (sum of name + value + 32 per field, as RFC 9113). */
  maxHeaderListBytes: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS, advertised and enforced (default
   *  MAX_CONCURRENT_STREAMS_DEFAULT). */
  maxConcurrentStreams?: number;
  /** The budget of queued response bytes shared with the server's other connections (by
   *  default one of this connection's own, of 4 * CONN_BUFFER_BYTES_MAX). */
  budget?: ResponseBudget;
  /** Where a stream whose callback threw is reported (the member's logger; by default a JSON
   *  line on stderr like the member's own). */
  log?: Logger;
}

/** For connections made without a logger (tests, tools). */
const FALLBACK_LOG = new Logger('info', { component: 'grpcserver' });

/** The server side of one HTTP/2 connection. */
export class H2ServerConnection {
  private readonly streams = new Map<number, H2ServerStream>();
  private lastStreamId = 0;
  private readonly reader = new FrameReader(DEFAULT_MAX_FRAME, H2_PREFACE, (type, flags, streamId, payload) => this.onFrame(type, flags, streamId, payload), () => !this.dead && !this.calming);
  private block: { streamId: number; endStream: boolean; parts: Buffer[]; bytes: number } | undefined;
  private readonly hpack: HpackDecoder;
  private readonly log: Logger;
  /** Resets, ours and the client's (a client that opens and resets streams in a loop, or makes
   *  us reset them, makes the member start work it then throws away). */
  private readonly resets = new TokenBucket(RESET_BURST, RESETS_PER_SECOND);
  private readonly pings = new TokenBucket(PING_BURST, PINGS_PER_SECOND);
  private readonly settingsFrames = new TokenBucket(SETTINGS_BURST, SETTINGS_PER_SECOND);
  private sendTableSizeUpdate = false;
  // Send side, as the client's SETTINGS and WINDOW_UPDATEs allow.
  private connSendWindow = DEFAULT_WINDOW;
  /** The client's SETTINGS_INITIAL_WINDOW_SIZE: every stream's window is its offset plus this. */
  peerInitialWindow = DEFAULT_WINDOW;
  /** At least every stream's windowOffset (raised by WINDOW_UPDATEs, recomputed when a SETTINGS
   *  change would take it above 2^31-1): the window check costs O(1) in the common case. */
  private windowOffsetMax = 0;
  private peerMaxFrame = DEFAULT_MAX_FRAME;
  /** Streams with data waiting for their own window, and for the connection's: insertion order
   *  is the order they are served in. */
  private readonly streamBlocked = new Set<H2ServerStream>();
  private readonly connBlocked = new Set<H2ServerStream>();
  /** Streams of streamBlocked still to look at after a raised SETTINGS_INITIAL_WINDOW_SIZE. */
  private sweepLeft = 0;
  private wakeScheduled = false;
  private readonly draining = new Map<H2ServerStream, number>();
  /** Queued response cost (pendingCost) of all streams. */
  private pendingCost = 0;
  /** A write was refused for the connection's bound (the smallest stream bound it was refused
   *  at, or 0): the draining streams are looked at again once it is below (and only then: not on
   *  every flush). */
  private connOverBound = 0;
  private readonly budget: ResponseBudget;
  private readonly maxStreams: number;
  /** When the connection last had no open stream (Date.now()), -1 when it just became idle (the
   *  server's sweep stamps it), or 0 while it has some. */
  idleSinceMs = Date.now();
  /** A request stream was opened on it at some point. */
  hadStream = false;
  /** Bytes its streams' users hold received but not yet usable (the gRPC layer: incomplete
   *  request messages), counted and bounded by them (server.ts GrpcCall.holdPartial); handing
   *  data on credits its window whatever this is, so without that bound it would be the client's
   *  to grow. */
  heldRequestBytes = 0;
  /** Keepalive (etcd's --grpc-keepalive-interval/-timeout): bytes arrived since the server's last
   *  sweep (set per read, no clock read on the hot path); when the sweep last saw some; when the
   *  server's keepalive PING went out and nothing has come back since (0: none outstanding). */
  private readSinceSweep = false;
  private lastActiveMs = Date.now();
  private keepalivePingMs = 0;
  // Receive side.
  private connRecvWindow = RECV_WINDOW_INITIAL;
  private connUncredited = 0;
  /** The connection window credited up to; the window a stream consuming promptly is raised to. */
  private connRecvTarget = RECV_WINDOW_INITIAL;
  /** Held bytes of all streams credited to the connection (at most CONN_HELD_CREDITED_MAX). */
  private connHeldCredited = 0;
  private streamRecvTarget = RECV_WINDOW_INITIAL;
  /** BDP estimation (grpc-go's): the estimate; when the outstanding BDP PING went out
   *  (performance.now(), 0: none); prompt DATA bytes received since; the round-trip estimate and
   *  its sample count; the best bandwidth seen (bytes/ms). */
  private bdp = RECV_WINDOW_INITIAL;
  private bdpPingAt = 0;
  private bdpSample = 0;
  private bdpRttMs = 0;
  private bdpRttSamples = 0;
  private bdpBwMax = 0;
  /** A stream's user set its windows (widenRecvWindow): no more BDP PINGs on this connection (as
   *  grpc-go turns its estimator off when windows are configured). A raft message stream's
   *  follower otherwise sent a PING per batch it read, and its leader a PING ACK: two socket
   *  writes per MsgApp that moved no window (scripts/bench-peer-echo.ts). */
  private bdpOff = false;
  private out: Buffer[] = [];
  private outBytes = 0;
  private flushScheduled = false;
  private goingAway = false;
  private dead = false;
  private readPaused = false;
  /** The reset budget ran out: the connection ends in the next tick. */
  private calming = false;
  private readonly maxBlockBytes: number;
  /** Called once the connection is gone. */
  onGone: (() => void) | undefined;

  constructor(
    readonly socket: Duplex & { localAddress?: string; localPort?: number; remoteAddress?: string; remotePort?: number },
    private readonly onStream: (s: H2ServerStream) => void,
    private readonly opts: H2ServerOptions,
  ) {
    // The decoded list is bounded while it is decoded: a small block of indexed references can
    // decode to far more than it weighs (hpack.ts stops keeping fields past the bound).
    this.hpack = new HpackDecoder(opts.maxHeaderListBytes);
    this.log = opts.log ?? FALLBACK_LOG;
    this.budget = opts.budget ?? new ResponseBudget(4 * CONN_BUFFER_BYTES_MAX);
    this.maxStreams = Math.min(opts.maxConcurrentStreams ?? MAX_CONCURRENT_STREAMS_DEFAULT, 2 ** 32 - 1);
    // An encoded block is never larger than the list it decodes to (plus a few bytes per field).
    this.maxBlockBytes = opts.maxHeaderListBytes;
    // Our SETTINGS: the stream window (HTTP/2's default, said explicitly), the header-list bound,
    // the concurrent streams. The connection window starts at the default too (no WINDOW_UPDATE).
    const settings = Buffer.allocUnsafe(18);
    settings.writeUInt16BE(S_INITIAL_WINDOW_SIZE, 0);
    settings.writeUInt32BE(RECV_WINDOW_INITIAL, 2);
    settings.writeUInt16BE(S_MAX_HEADER_LIST_SIZE, 6);
    settings.writeUInt32BE(Math.min(opts.maxHeaderListBytes, 2 ** 32 - 1), 8);
    settings.writeUInt16BE(S_MAX_CONCURRENT_STREAMS, 12);
    settings.writeUInt32BE(this.maxStreams, 14);
    this.queue(frame(T_SETTINGS, 0, 0, settings));
    socket.on('data', (chunk: Buffer) => this.onBytes(chunk));
    socket.on('error', () => this.gone());
    socket.on('end', () => this.gone());
    socket.on('close', () => this.gone());
    socket.on('drain', () => this.onSocketDrain());
  }

  get openStreams(): number {
    return this.streams.size;
  }

  /** GOAWAY was sent (graceful close under way). */
  get isGoingAway(): boolean {
    return this.goingAway;
  }

  /** The server's once-a-second keepalive step, as grpc-go's server keepalive (etcd sets it from
   *  --grpc-keepalive-interval and --grpc-keepalive-timeout): after `intervalMs` with nothing
   *  read, a PING; if still nothing has arrived `timeoutMs` later, the client is gone (a dead
   *  peer whose TCP never closed, e.g. behind a partition): returns false and the caller closes
   *  the connection, ending its calls (watches, keepalive streams) as a reset would. */
  keepalive(now: number, intervalMs: number, timeoutMs: number): boolean {
    if (this.readSinceSweep) {
      this.readSinceSweep = false;
      this.lastActiveMs = now;
      this.keepalivePingMs = 0;
      return true;
    }
    if (this.keepalivePingMs !== 0) return now - this.keepalivePingMs < timeoutMs;
    if (intervalMs > 0 && now - this.lastActiveMs >= intervalMs && !this.dead) {
      this.keepalivePingMs = now;
      this.queue(frame(T_PING, 0, 0, KEEPALIVE_PING_DATA));
    }
    return true;
  }

  /** Graceful close: GOAWAY with the last stream taken; the socket ends once those are done. */
  goAway(): void {
    if (this.dead || this.goingAway) return;
    this.goingAway = true;
    this.queue(frame(T_GOAWAY, 0, 0, Buffer.concat([u32(this.lastStreamId), u32(H2_NO_ERROR)])));
    if (this.streams.size === 0) this.endSocket();
  }

  /** Drops the connection now; open streams are aborted. */
  destroy(): void {
    this.socket.destroy();
    this.gone();
  }

  // ---- receiving ----

  private onBytes(chunk: Buffer): void {
    if (LAT_TRACE) latStamp('srd', this.socket.localPort ?? 0, chunk.length);
    if (this.dead) return;
    this.readSinceSweep = true;
    try {
      this.reader.read(chunk);
    } catch (err) {
      if (err instanceof H2ConnectionError) return this.fail(err.h2code, err.message);
      // Streams' callbacks are caught where they are called (streamFailed): what reaches here is a
      // fault of this file. An assertion crashes the member; anything else ends this connection.
      if (err instanceof AssertionError) throw err;
      this.log.error('HTTP/2 connection failed', { remote: this.socket.remoteAddress, error: err instanceof Error ? err.message : String(err), stack: err instanceof Error ? err.stack : undefined });
      this.fail(H2_INTERNAL_ERROR, 'internal error');
    }
  }

  private onFrame(type: number, flags: number, streamId: number, payload: Buffer): void {
    if (this.block && (type !== T_CONTINUATION || streamId !== this.block.streamId)) throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'header block interrupted');
    switch (type) {
      case T_DATA:
        return this.onData(flags, streamId, payload);
      case T_HEADERS:
        return this.onHeaders(flags, streamId, payload);
      case T_CONTINUATION:
        if (!this.block) throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'CONTINUATION without HEADERS');
        this.addFragment(payload);
        if (flags & F_END_HEADERS) this.endBlock();
        return;
      case T_PRIORITY:
        if (streamId === 0) throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'PRIORITY on stream 0');
        if (payload.length !== 5) this.refuse(streamId, H2_FRAME_SIZE_ERROR);
        return;
      case T_RST_STREAM: {
        if (streamId === 0) throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'RST_STREAM on stream 0');
        if (payload.length !== 4) throw new H2ConnectionError(H2_FRAME_SIZE_ERROR, 'RST_STREAM of the wrong size');
        if (streamId > this.lastStreamId) throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'RST_STREAM on an idle stream');
        if (!this.resets.take()) throw new H2ConnectionError(H2_ENHANCE_YOUR_CALM, 'too many stream resets');
        const s = this.streams.get(streamId);
        if (s) this.resetStream(s, H2_CANCEL, false);
        return;
      }
      case T_SETTINGS:
        return this.onSettings(flags, streamId, payload);
      case T_PUSH_PROMISE:
        throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'PUSH_PROMISE from a client');
      case T_PING:
        if (streamId !== 0) throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'PING on a stream');
        if (payload.length !== 8) throw new H2ConnectionError(H2_FRAME_SIZE_ERROR, 'PING of the wrong size');
        if (flags & F_ACK) {
          if (this.bdpPingAt !== 0 && payload.equals(BDP_PING_DATA)) this.bdpAnswered();
          return;
        }
        if (!this.pings.take()) throw new H2ConnectionError(H2_ENHANCE_YOUR_CALM, 'too many PINGs');
        this.queue(frame(T_PING, F_ACK, 0, payload));
        return;
      case T_GOAWAY:
        if (streamId !== 0) throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'GOAWAY on a stream');
        return; // the client opens no more streams; those open run to their end
      case T_WINDOW_UPDATE:
        return this.onWindowUpdate(streamId, payload);
      default:
        return; // unknown frame types are ignored (RFC 9113 §4.1)
    }
  }

  private onData(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'DATA on stream 0');
    const flowBytes = payload.length;
    let data = payload;
    if (flags & F_PADDED) {
      if (payload.length < 1 || payload[0]! >= payload.length) throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'DATA padding exceeds the frame');
      data = payload.subarray(1, payload.length - payload[0]!);
    }
    this.connRecvWindow -= flowBytes;
    if (this.connRecvWindow < 0) throw new H2ConnectionError(H2_FLOW_CONTROL_ERROR, 'DATA beyond the connection window');
    const s = this.streams.get(streamId);
    if (!s || s.remoteEnded) {
      if (streamId > this.lastStreamId) throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'DATA on an idle stream');
      // A stream we already ended or reset: the bytes still count against the connection window.
      this.creditConnection(flowBytes);
      if (s) this.resetStream(s, H2_STREAM_CLOSED, true);
      return;
    }
    s.recvWindow -= flowBytes;
    if (s.recvWindow < 0) {
      this.creditConnection(flowBytes);
      return this.resetStream(s, H2_FLOW_CONTROL_ERROR, true);
    }
    // Padding is credited at once; the data as it is handed on.
    if (flowBytes > data.length) this.credit(s, flowBytes - data.length);
    // The end of the request is known before its last bytes are handed on: a handler that answers
    // at once then ends a stream both sides finished (no RST_STREAM).
    const end = (flags & F_END_STREAM) !== 0;
    if (end) s.remoteEnded = true;
    if (s.paused || s.heldBytes > 0 || s.releaseScheduled) {
      // Held, uncredited: a copy, so that the socket's read buffer is not pinned by it.
      if (data.length > 0) {
        (s.held ??= []).push(Buffer.from(data));
        s.heldBytes += data.length;
        const c = Math.min(data.length, CONN_HELD_CREDITED_MAX - this.connHeldCredited);
        if (c > 0) {
          s.heldConnCredited += c;
          this.connHeldCredited += c;
          this.creditConnection(c);
        }
      }
      if (end) s.heldEnd = true;
      return;
    }
    if (data.length > 0) {
      this.bdpAdd(flowBytes);
      if (!this.handOn(s, data)) return;
      if (s.recvTarget < this.streamRecvTarget && !end) this.growStream(s);
    }
    if (end) this.remoteEnd(s);
  }

  /** Prompt DATA (handed on at once) of `n` bytes: counted in the BDP sample; a BDP PING goes out
   *  if none is outstanding and the windows can still grow. */
  private bdpAdd(n: number): void {
    if (this.bdpPingAt === 0) {
      if (this.bdp >= CONN_RECV_WINDOW_MAX || this.dead || this.bdpOff) return;
      this.bdpPingAt = performance.now();
      this.bdpSample = 0;
      this.queue(frame(T_PING, 0, 0, BDP_PING_DATA));
    }
    this.bdpSample += n;
  }

  /** The client answered the BDP PING: `bdpSample` bytes came within one round trip. When they
   *  fill most of the estimate at the best bandwidth yet, and the connection's responses are being
   *  read (few queued), the estimate doubles the sample: the connection window grows now, stream
   *  windows as their data next comes in promptly (growStream). */
  private bdpAnswered(): void {
    const rttMs = Math.max(performance.now() - this.bdpPingAt, 0.001);
    this.bdpPingAt = 0;
    if (this.bdpRttSamples < BDP_RTT_BOOTSTRAP) {
      this.bdpRttSamples++;
      this.bdpRttMs += (rttMs - this.bdpRttMs) / this.bdpRttSamples;
    } else this.bdpRttMs += (rttMs - this.bdpRttMs) * BDP_RTT_ALPHA;
    const bw = this.bdpSample / (this.bdpRttMs * 1.5);
    if (bw > this.bdpBwMax) this.bdpBwMax = bw;
    if (this.bdpSample < BDP_BETA * this.bdp || bw !== this.bdpBwMax) return;
    if (this.pendingCost + this.backlog > GROW_QUEUED_BYTES_MAX) return;
    this.bdp = Math.min(Math.ceil(BDP_GAMMA * this.bdpSample), CONN_RECV_WINDOW_MAX);
    this.streamRecvTarget = Math.max(this.streamRecvTarget, Math.min(this.bdp, STREAM_RECV_WINDOW_MAX));
    if (this.bdp <= this.connRecvTarget) return;
    const inc = this.connUncredited + this.bdp - this.connRecvTarget;
    this.connRecvTarget = this.bdp;
    this.queue(frame(T_WINDOW_UPDATE, 0, 0, u32(inc)));
    this.connRecvWindow += inc;
    this.connUncredited = 0;
  }

  /** Raises `s`'s window to the connection's stream target: its data was just handed on at once
   *  (not paused, not held) and its own responses are not piling up. A paused stream is never
   *  raised (nor credited). */
  private growStream(s: H2ServerStream): void {
    if (s.paused || s.closed || s.remoteEnded || s.heldBytes > 0 || s.pendingCost > GROW_QUEUED_BYTES_MAX || s.recvFixed) return;
    const grow = this.streamRecvTarget - s.recvTarget;
    s.recvTarget = this.streamRecvTarget;
    const inc = s.uncredited + grow;
    this.queue(frame(T_WINDOW_UPDATE, 0, s.id, u32(inc)));
    s.recvWindow += inc;
    s.uncredited = 0;
  }

  /** H2ServerStream.widenRecvWindow: the connection's target and the stream's, each credited up
   *  to its new width at once; the connection's BDP estimate stops (bdpOff). */
  widenRecvWindow(s: H2ServerStream, streamBytes: number, connectionBytes: number): void {
    assert(streamBytes > 0 && streamBytes <= MAX_WINDOW && connectionBytes > 0 && connectionBytes <= MAX_WINDOW, 'h2: receive window out of range');
    if (this.dead) return;
    this.bdpOff = true;
    if (connectionBytes > this.connRecvTarget) {
      const inc = this.connUncredited + connectionBytes - this.connRecvTarget;
      this.connRecvTarget = connectionBytes;
      this.queue(frame(T_WINDOW_UPDATE, 0, 0, u32(inc)));
      this.connRecvWindow += inc;
      this.connUncredited = 0;
    }
    s.recvFixed = true;
    if (streamBytes <= s.recvTarget || s.closed || s.remoteEnded) return;
    const grow = streamBytes - s.recvTarget;
    s.recvTarget = streamBytes;
    // A paused stream's credit waits for its resume (credit()); the new width goes with it.
    if (s.paused) {
      s.uncredited += grow;
      return;
    }
    const inc = s.uncredited + grow;
    this.queue(frame(T_WINDOW_UPDATE, 0, s.id, u32(inc)));
    s.recvWindow += inc;
    s.uncredited = 0;
  }

  /** Hands `data` to the stream's user and credits it back (to the connection, what was not
   *  credited to it while held); false if the callback failed. */
  private handOn(s: H2ServerStream, data: Buffer, connCredited = 0): boolean {
    try {
      s.onData?.(data);
    } catch (err) {
      this.creditConnection(data.length - connCredited);
      this.streamFailed(s, 'onData', err);
      return false;
    }
    this.credit(s, data.length, connCredited);
    return true;
  }

  /** `s` resumed: what it held is handed on in a later turn (not from inside the user's call that
   *  resumed it); with nothing held, the credit it held back goes out now. */
  released(s: H2ServerStream): void {
    if (s.closed) return;
    if (s.heldBytes === 0 && !s.heldEnd) return this.credit(s, 0);
    if (s.releaseScheduled) return;
    s.releaseScheduled = true;
    setImmediate(() => this.deliverHeld(s));
  }

  private deliverHeld(s: H2ServerStream): void {
    s.releaseScheduled = false;
    if (s.closed || this.dead) return;
    const held = s.held ?? [];
    while (!s.paused && s.heldHead < held.length && !s.closed) {
      const chunk = held[s.heldHead]!;
      held[s.heldHead++] = EMPTY;
      s.heldBytes -= chunk.length;
      const pre = Math.min(chunk.length, s.heldConnCredited);
      s.heldConnCredited -= pre;
      this.connHeldCredited -= pre;
      if (!this.handOn(s, chunk, pre)) return;
    }
    if (s.closed || s.paused) return;
    s.held = undefined;
    s.heldHead = 0;
    if (s.heldEnd) {
      s.heldEnd = false;
      this.remoteEnd(s);
    } else this.credit(s, 0);
  }

  private onHeaders(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0 || streamId % 2 === 0) throw new H2ConnectionError(H2_PROTOCOL_ERROR, `HEADERS on stream ${streamId}`);
    let p = payload;
    let pad = 0;
    if (flags & F_PADDED) {
      if (p.length < 1) throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'HEADERS padding exceeds the frame');
      pad = p[0]!;
      p = p.subarray(1);
    }
    if (flags & F_PRIORITY) {
      if (p.length < 5) throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'HEADERS priority exceeds the frame');
      p = p.subarray(5);
    }
    if (pad > p.length) throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'HEADERS padding exceeds the frame');
    this.block = { streamId, endStream: (flags & F_END_STREAM) !== 0, parts: [], bytes: 0 };
    this.addFragment(p.subarray(0, p.length - pad));
    if (flags & F_END_HEADERS) this.endBlock();
  }

  private addFragment(b: Buffer): void {
    const blk = this.block!;
    // Frame headers count too: a flood of empty CONTINUATION frames is bounded like a large block.
    blk.bytes += b.length + FRAME_HEADER_BYTES;
    if (blk.bytes > this.maxBlockBytes) throw new H2ConnectionError(H2_ENHANCE_YOUR_CALM, `header block above ${this.maxBlockBytes} bytes`);
    blk.parts.push(b);
  }

  private endBlock(): void {
    const blk = this.block!;
    this.block = undefined;
    // Every block is decoded, even one for a stream we refuse: it updates the dynamic table.
    this.decode(blk.parts.length === 1 ? blk.parts[0]! : Buffer.concat(blk.parts, blk.bytes));
    const existing = this.streams.get(blk.streamId);
    if (existing) {
      // Trailers from the client: gRPC has none; they can only end the request (their fields are
      // not looked at, so a list above the bound does not matter here).
      if (!blk.endStream) return this.resetStream(existing, H2_PROTOCOL_ERROR, true);
      if (!existing.remoteEnded) this.remoteEnd(existing);
      return;
    }
    // A closed stream (ended, or reset by us while the client was still sending): ignored, as RFC
    // 9113 §5.1 asks after a RST_STREAM; the block was decoded above, so HPACK stays in step.
    if (blk.streamId <= this.lastStreamId) return;
    this.lastStreamId = blk.streamId;
    if (this.goingAway) return this.refuse(blk.streamId, H2_REFUSED_STREAM);
    // RFC 9113 §5.1.2: above the advertised SETTINGS_MAX_CONCURRENT_STREAMS, REFUSED_STREAM (the
    // client may retry it); the refusal counts against the reset budget like any reset.
    if (this.streams.size >= this.maxStreams) return this.refuse(blk.streamId, H2_REFUSED_STREAM);
    if (this.hpack.listTooLarge) return this.refuseHeaderList(blk.streamId, blk.endStream);
    const headers = this.headersOf(this.hpack);
    if (headers === undefined) return this.refuse(blk.streamId, H2_PROTOCOL_ERROR);
    const s = new H2ServerStream(this, blk.streamId, headers);
    this.streams.set(s.id, s);
    this.idleSinceMs = 0;
    this.hadStream = true;
    try {
      this.onStream(s);
    } catch (err) {
      this.streamFailed(s, 'onStream', err);
    }
    if (blk.endStream) this.remoteEnd(s);
  }

  private decode(block: Buffer): void {
    try {
      this.hpack.decode(block);
    } catch (err) {
      if (!(err instanceof HpackError)) throw err;
      // RFC 9113 §4.3: the decoding context is lost with the block, so the connection is too.
      throw new H2ConnectionError(H2_COMPRESSION_ERROR, `HPACK: ${err.message}`);
    }
  }

  /** The decoded fields as one object (a repeated name as an array), or undefined for a name
   *  with upper case letters (malformed: RFC 9113 §8.2.1). */
  private headersOf(d: HpackDecoder): H2Headers | undefined {
    // A plain object: its property stores are the cheapest (a null-prototype object cost twice as
    // much); names it inherits (constructor, __proto__) take the slower path below.
    const headers: H2Headers = {};
    for (let i = 0; i < d.count; i++) {
      const name = d.names[i]!;
      const value = d.values[i]!;
      if (UPPER_CASE.test(name)) return undefined;
      const prev = headers[name];
      if (prev === undefined) headers[name] = value;
      else if (!Object.hasOwn(headers, name)) defineHeader(headers, name, value);
      else if (Array.isArray(prev)) prev.push(value);
      else defineHeader(headers, name, [prev, value]);
    }
    return headers;
  }

  /** A request whose header list is above the bound we advertised (SETTINGS_MAX_HEADER_LIST_SIZE)
   *  gets 431 (RFC 9113 §10.5.1, as Go's server answers), and the rest of its body is refused
   *  with RST_STREAM NO_ERROR (§8.1); the connection and its other streams go on. */
  private refuseHeaderList(streamId: number, endStream: boolean): void {
    this.sendHeaderBlock(streamId, HEADER_LIST_TOO_LARGE_BLOCK, true);
    if (!endStream) this.refuse(streamId, H2_NO_ERROR);
  }

  /** A stream's callback threw. An AssertionError is a bug in quorumkv: it propagates, so that the
   *  member crashes with its stack (src/util/assert.ts; the WAL makes a restart safe). Anything
   *  else is that stream's failure alone: it is reset and logged, the connection goes on. */
  private streamFailed(s: H2ServerStream, callback: string, err: unknown): void {
    if (err instanceof AssertionError) throw err;
    this.log.error('a stream callback threw: that stream is reset (INTERNAL_ERROR), the connection goes on', {
      stream: s.id,
      reset: !s.closed,
      path: s.headers[':path'],
      remote: this.socket.remoteAddress === undefined ? undefined : `${this.socket.remoteAddress}:${this.socket.remotePort}`,
      callback,
      error: err instanceof Error ? err.message : String(err),
      stack: err instanceof Error ? err.stack : undefined,
    });
    this.resetStream(s, H2_INTERNAL_ERROR, true);
  }

  private onSettings(flags: number, streamId: number, payload: Buffer): void {
    if (streamId !== 0) throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'SETTINGS on a stream');
    if (flags & F_ACK) {
      if (payload.length !== 0) throw new H2ConnectionError(H2_FRAME_SIZE_ERROR, 'SETTINGS ACK with a payload');
      return;
    }
    if (payload.length % 6 !== 0) throw new H2ConnectionError(H2_FRAME_SIZE_ERROR, 'SETTINGS of the wrong size');
    if (!this.settingsFrames.take()) throw new H2ConnectionError(H2_ENHANCE_YOUR_CALM, 'too many SETTINGS');
    let raised = false;
    for (let off = 0; off < payload.length; off += 6) {
      const id = payload.readUInt16BE(off);
      const value = payload.readUInt32BE(off + 2);
      if (id === S_HEADER_TABLE_SIZE) this.sendTableSizeUpdate = true;
      else if (id === S_INITIAL_WINDOW_SIZE) {
        if (value > MAX_WINDOW) throw new H2ConnectionError(H2_FLOW_CONTROL_ERROR, 'SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1');
        if (value > this.peerInitialWindow && this.windowOffsetMax + value > MAX_WINDOW) this.checkWindowsBelow(MAX_WINDOW - value);
        raised ||= value > this.peerInitialWindow;
        this.peerInitialWindow = value;
      } else if (id === S_MAX_FRAME_SIZE) {
        if (value < DEFAULT_MAX_FRAME || value > MAX_FRAME_SIZE_LIMIT) throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'SETTINGS_MAX_FRAME_SIZE out of range');
        this.peerMaxFrame = value;
      }
    }
    this.queue(frame(T_SETTINGS, F_ACK, 0, undefined));
    if (raised) {
      // Streams waiting for their own window may have some now: looked at a few per turn.
      this.sweepLeft = this.streamBlocked.size;
      this.wake();
    }
  }

  /** RFC 9113 §6.9.2: a new initial window that takes a stream's window above 2^31-1 is a
   *  connection error. Walks the streams only when the cheap bound says it might (a client that
   *  sent large WINDOW_UPDATEs), and tightens the bound for next time. */
  private checkWindowsBelow(offsetMax: number): void {
    let max = 0;
    for (const s of this.streams.values()) {
      if (s.windowOffset > offsetMax) throw new H2ConnectionError(H2_FLOW_CONTROL_ERROR, 'a stream window above 2^31-1');
      if (s.windowOffset > max) max = s.windowOffset;
    }
    this.windowOffsetMax = max;
  }

  /** Serves waiting streams, at most WAKE_PER_TURN now, the rest in later turns: first those of
   *  streamBlocked still to look at after a raised initial window, then those waiting for the
   *  connection's window while it has some. */
  private wake(): void {
    let budget = WAKE_PER_TURN;
    while (this.sweepLeft > 0 && budget > 0 && !this.dead) {
      this.sweepLeft--;
      budget--;
      const s = this.streamBlocked.values().next().value;
      if (s === undefined) {
        this.sweepLeft = 0;
        break;
      }
      // To the back of the queue first: looked at once per sweep whatever sendPending does.
      this.streamBlocked.delete(s);
      this.streamBlocked.add(s);
      if (s.sendWindow > 0) this.sendPending(s);
    }
    for (const s of this.connBlocked) {
      if (this.connSendWindow <= 0 || budget <= 0 || this.dead) break;
      budget--;
      this.sendPending(s);
    }
    const more = this.sweepLeft > 0 || (this.connSendWindow > 0 && this.connBlocked.size > 0);
    if (more && budget <= 0 && !this.wakeScheduled && !this.dead) {
      this.wakeScheduled = true;
      setImmediate(() => {
        this.wakeScheduled = false;
        this.wake();
      });
    }
  }

  private onWindowUpdate(streamId: number, payload: Buffer): void {
    if (payload.length !== 4) throw new H2ConnectionError(H2_FRAME_SIZE_ERROR, 'WINDOW_UPDATE of the wrong size');
    const inc = payload.readUInt32BE(0) & 0x7fffffff;
    if (streamId === 0) {
      if (inc === 0) throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'WINDOW_UPDATE of 0');
      this.connSendWindow += inc;
      if (this.connSendWindow > MAX_WINDOW) throw new H2ConnectionError(H2_FLOW_CONTROL_ERROR, 'connection window above 2^31-1');
      if (this.connBlocked.size > 0) this.wake();
      return;
    }
    if (streamId > this.lastStreamId) throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'WINDOW_UPDATE on an idle stream');
    const s = this.streams.get(streamId);
    if (!s) return;
    if (inc === 0) return this.resetStream(s, H2_PROTOCOL_ERROR, true);
    s.windowOffset += inc;
    if (s.windowOffset > this.windowOffsetMax) this.windowOffsetMax = s.windowOffset;
    if (s.sendWindow > MAX_WINDOW) return this.resetStream(s, H2_FLOW_CONTROL_ERROR, true);
    if (s.pendingBytes > 0 || s.trailers) this.sendPending(s);
  }

  /** The client half-closed `s` (remoteEnded may already be set, see onData). */
  private remoteEnd(s: H2ServerStream): void {
    s.remoteEnded = true;
    if (s.closed) return;
    try {
      s.onEnd?.();
    } catch (err) {
      return this.streamFailed(s, 'onEnd', err);
    }
    if (s.localEnded) this.close(s, false);
  }

  /** Credits `n` received bytes of `s` back to the client (with what a pause held back). */
  credit(s: H2ServerStream, n: number, connCredited = 0): void {
    this.creditConnection(n - connCredited);
    s.uncredited += n;
    if (s.paused || s.closed || s.remoteEnded) return;
    if (s.uncredited >= s.recvTarget / 4 || (n === 0 && s.uncredited > 0)) {
      this.queue(frame(T_WINDOW_UPDATE, 0, s.id, u32(s.uncredited)));
      s.recvWindow += s.uncredited;
      s.uncredited = 0;
    }
  }

  private creditConnection(n: number): void {
    this.connUncredited += n;
    if (this.connUncredited >= this.connRecvTarget / 4) {
      this.queue(frame(T_WINDOW_UPDATE, 0, 0, u32(this.connUncredited)));
      this.connRecvWindow += this.connUncredited;
      this.connUncredited = 0;
    }
  }

  // ---- sending ----

  sendHeaders(s: H2ServerStream, block: Buffer, endStream: boolean): void {
    this.pings.fill();
    this.sendHeaderBlock(s.id, block, endStream);
  }

  private sendHeaderBlock(streamId: number, block: Buffer, endStream: boolean): void {
    if (this.sendTableSizeUpdate) {
      // A dynamic table size update to 0 (we never index), first in the next block after the
      // client's SETTINGS_HEADER_TABLE_SIZE changed (RFC 7541 §4.2).
      this.sendTableSizeUpdate = false;
      block = Buffer.concat([Buffer.from([0x20]), block]);
    }
    const flags = endStream ? F_END_STREAM : 0;
    if (block.length <= this.peerMaxFrame) return this.queue(frame(T_HEADERS, flags | F_END_HEADERS, streamId, block));
    for (let off = 0; off < block.length; off += this.peerMaxFrame) {
      const piece = block.subarray(off, off + this.peerMaxFrame);
      const last = off + this.peerMaxFrame >= block.length;
      this.queue(frame(off === 0 ? T_HEADERS : T_CONTINUATION, (off === 0 ? flags : 0) | (last ? F_END_HEADERS : 0), streamId, piece));
    }
  }

  /** Sends what the windows allow of `s`'s queued data, then its trailers once nothing is left.
   *  Queued writes are packed into DATA frames as large as the windows and the client's
   *  SETTINGS_MAX_FRAME_SIZE allow (fewer frames for the client to handle than one per write). */
  sendPending(s: H2ServerStream): void {
    if (s.closed) return;
    let freed = 0;
    while (s.pendingBytes > 0) {
      const window = s.sendWindow;
      const allowed = Math.min(window, this.connSendWindow, this.peerMaxFrame);
      if (allowed <= 0) {
        this.setWaiting(s, window <= 0 ? W_STREAM : W_CONN);
        if (s.pendingHead > 1024 && s.pendingHead * 2 > s.pending.length) {
          s.pending = s.pending.slice(s.pendingHead);
          s.pendingHead = 0;
        }
        this.unqueued(s, freed);
        return;
      }
      const n = Math.min(allowed, s.pendingBytes);
      const f = frameWithRoom(T_DATA, 0, s.id, n);
      for (let at = FRAME_HEADER_BYTES; at < f.length; ) {
        const b = s.pending[s.pendingHead]!;
        const take = Math.min(b.length - s.pendingOffset, f.length - at);
        b.copy(f, at, s.pendingOffset, s.pendingOffset + take);
        at += take;
        s.pendingOffset += take;
        if (s.pendingOffset === b.length) {
          s.pending[s.pendingHead++] = undefined;
          s.pendingOffset = 0;
          freed += b.length + QUEUED_BUFFER_OVERHEAD_BYTES;
        }
      }
      if (s.waiting !== W_NONE) s.progressMs = Date.now();
      s.pendingBytes -= n;
      s.windowOffset -= n;
      this.connSendWindow -= n;
      this.queue(f);
    }
    if (s.pendingHead > 0) {
      s.pending = [];
      s.pendingHead = 0;
    }
    this.unqueued(s, freed);
    this.setWaiting(s, W_NONE);
    this.pings.fill();
    if (s.trailers) {
      this.sendHeaders(s, s.trailers, true);
      s.trailers = undefined;
      this.localEnd(s);
    }
    this.checkDrain(s);
  }

  localEnd(s: H2ServerStream): void {
    s.localEnded = true;
    if (s.remoteEnded) return this.close(s, false);
    // Done before the client half-closed: reset, so that neither side keeps the stream.
    this.resetStream(s, H2_NO_ERROR, true);
  }

  /** Ends `s` with RST_STREAM (sent when `send`; else the client reset it). */
  resetStream(s: H2ServerStream, code: number, send: boolean): void {
    if (s.closed) return;
    if (send) this.sendReset(s.id, code);
    this.close(s, !(s.localEnded && s.remoteEnded) && !(code === H2_NO_ERROR && s.localEnded));
  }

  /** Refuses a stream we never announced. */
  private refuse(streamId: number, code: number): void {
    this.sendReset(streamId, code);
  }

  /** Every RST_STREAM we send is taken from the reset budget (MadeYouReset: a client can make
   *  the server reset streams as cheaply as it resets them itself). Past it, the connection is
   *  ended (GOAWAY ENHANCE_YOUR_CALM) in the next tick: this may run inside a stream's callback. */
  private sendReset(streamId: number, code: number): void {
    this.queue(frame(T_RST_STREAM, 0, streamId, u32(code)));
    if (this.resets.take() || this.calming) return;
    this.calming = true;
    process.nextTick(() => this.fail(H2_ENHANCE_YOUR_CALM, 'too many stream resets'));
  }

  /** The queued responses of `s` are dropped to bring the member back within its response budget
   *  (limits.ts); its user ends it with a status saying so, or it is reset. */
  evict(s: H2ServerStream): void {
    if (s.closed) return;
    this.unqueued(s, s.pendingCost);
    s.pending = [];
    s.pendingHead = 0;
    s.pendingOffset = 0;
    s.pendingBytes = 0;
    this.setWaiting(s, W_NONE);
    try {
      s.onEvict?.();
    } catch (err) {
      return this.streamFailed(s, 'onEvict', err);
    }
    if (!s.closed) this.resetStream(s, H2_CANCEL, true);
  }

  /** `cost` bytes (QUEUED_BUFFER_OVERHEAD_BYTES per buffer included) were queued on `s`. */
  queued(s: H2ServerStream, cost: number): void {
    s.pendingCost += cost;
    this.pendingCost += cost;
    this.budget.add(cost);
  }

  /** `cost` bytes of `s`'s queue went out or were dropped. */
  private unqueued(s: H2ServerStream, cost: number): void {
    if (cost === 0) return;
    s.pendingCost -= cost;
    this.pendingCost -= cost;
    this.budget.sub(cost);
  }

  /** Moves `s` between the send queues; a stream that starts waiting joins the member's list of
   *  streams blocked by their client (oldest evicted first), and leaves it once it is served. */
  private setWaiting(s: H2ServerStream, w: number): void {
    const was = s.waiting;
    if (was === w) return;
    if (was === W_STREAM) this.streamBlocked.delete(s);
    else if (was === W_CONN) this.connBlocked.delete(s);
    if (w === W_STREAM) this.streamBlocked.add(s);
    else if (w === W_CONN) this.connBlocked.add(s);
    if (was === W_NONE) {
      s.progressMs = Date.now();
      this.budget.wait(s);
    } else if (w === W_NONE) this.budget.unwait(s);
    s.waiting = w;
  }

  private close(s: H2ServerStream, aborted: boolean): void {
    if (s.closed) return;
    s.closed = true;
    this.streams.delete(s.id);
    // Idle from now: the server's once-a-second sweep stamps the time (no clock read per call).
    if (this.streams.size === 0) this.idleSinceMs = -1;
    this.setWaiting(s, W_NONE);
    this.draining.delete(s);
    this.unqueued(s, s.pendingCost);
    s.pending = [];
    s.pendingHead = 0;
    s.pendingOffset = 0;
    s.pendingBytes = 0;
    // What it held was never handed on: the connection's window gets it back.
    if (s.heldBytes > 0) this.creditConnection(s.heldBytes - s.heldConnCredited);
    this.connHeldCredited -= s.heldConnCredited;
    s.heldConnCredited = 0;
    assert(this.connHeldCredited >= 0 && this.connHeldCredited <= CONN_HELD_CREDITED_MAX, 'h2: held bytes credited to the connection out of bounds');
    s.held = undefined;
    s.heldHead = 0;
    s.heldBytes = 0;
    const waiters = s.drainWaiters.splice(0);
    // The stream is gone already: a callback that throws here has nothing left to reset.
    try {
      s.onClose?.(aborted);
    } catch (err) {
      this.streamFailed(s, 'onClose', err);
    }
    this.runDrainWaiters(s, waiters);
    if (this.goingAway && this.streams.size === 0) this.endSocket();
  }

  /** Bytes queued for the socket but not yet sent, ours and its own. */
  private get backlog(): number {
    return this.outBytes + this.socket.writableLength;
  }

  /** A stream may write more while its own queue is within `bufferBytes` and the connection's
   *  (all its streams' queues and the socket's unsent bytes) within CONN_BUFFER_BYTES_MAX, the
   *  socket's unsent bytes alone within `bufferBytes`. */
  belowBacklog(s: H2ServerStream, bufferBytes: number): boolean {
    if (!this.connBelow(bufferBytes)) {
      this.connOverBound = this.connOverBound === 0 ? bufferBytes : Math.min(this.connOverBound, bufferBytes);
      return false;
    }
    return s.pendingCost <= bufferBytes;
  }

  private connBelow(bufferBytes: number): boolean {
    const backlog = this.backlog;
    return backlog <= bufferBytes && this.pendingCost + backlog <= CONN_BUFFER_BYTES_MAX;
  }

  /** After the connection's bound refused writes: once below it again, the streams waiting to
   *  drain are looked at (once per crossing, not on every flush). */
  private checkConnDrain(): void {
    if (this.connOverBound === 0 || !this.connBelow(this.connOverBound)) return;
    this.connOverBound = 0;
    for (const s of [...this.draining.keys()]) this.checkDrain(s);
  }

  watchDrain(s: H2ServerStream, bufferBytes: number): void {
    this.draining.set(s, bufferBytes);
  }

  private checkDrain(s: H2ServerStream): void {
    const limit = this.draining.get(s);
    if (limit === undefined || !this.belowBacklog(s, limit)) return;
    this.draining.delete(s);
    this.runDrainWaiters(s, s.drainWaiters.splice(0));
  }

  private runDrainWaiters(s: H2ServerStream, waiters: (() => void)[]): void {
    for (const w of waiters) {
      try {
        w();
      } catch (err) {
        this.streamFailed(s, 'whenDrained', err);
      }
    }
  }

  private onSocketDrain(): void {
    if (this.readPaused) {
      this.readPaused = false;
      this.socket.resume();
    }
    this.checkConnDrain();
  }

  private queue(f: Buffer): void {
    if (this.dead) return;
    this.out.push(f);
    this.outBytes += f.length;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      process.nextTick(() => this.flush());
    }
  }

  /** Everything queued this turn goes out in one socket write. */
  private flush(): void {
    this.flushScheduled = false;
    if (this.dead || this.out.length === 0) return;
    const data = this.out.length === 1 ? this.out[0]! : Buffer.concat(this.out, this.outBytes);
    this.out = [];
    this.outBytes = 0;
    if (LAT_TRACE) latStamp('swr', this.socket.localPort ?? 0, data.length);
    const ok = this.socket.write(data);
    if (!ok && this.socket.writableLength > SOCKET_BACKLOG_MAX && !this.readPaused) {
      this.readPaused = true;
      this.socket.pause();
    }
    if (ok) this.checkConnDrain();
  }

  private endSocket(): void {
    if (this.dead) return;
    this.flush();
    this.socket.end();
  }

  /** A connection error: GOAWAY with `code`, then the socket is closed. */
  private fail(code: number, reason: string): void {
    if (this.dead) return;
    this.queue(frame(T_GOAWAY, 0, 0, Buffer.concat([u32(this.lastStreamId), u32(code), Buffer.from(reason, 'latin1')])));
    this.flush();
    this.socket.end();
    this.gone();
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  private gone(): void {
    if (this.dead) return;
    this.dead = true;
    this.out = [];
    this.outBytes = 0;
    for (const s of [...this.streams.values()]) this.close(s, true);
    this.onGone?.();
  }
}
