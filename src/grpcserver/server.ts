// The gRPC server of the client port and of the peer port: gRPC's HTTP/2 mapping served on our
// own HTTP/2 framing (h2_conn.ts).
//
// Why not grpc-js's Server: on this machine a trivial unary method behind grpc-js's server costs
// about 47 µs of event-loop time per call against 29 µs on bare node:http2 (etcd's benchmark,
// 100 clients: 21k vs 34k calls/s); its interceptor chain, per-call metadata objects, deadline
// timers and message decoder are the difference. And node:http2 itself costs a stream object
// and nghttp2's C++ per call, and sends trailers a loop turn after the data (h2_conn.ts). A
// member's loop is its bottleneck (docs/performance.md), so the client port speaks gRPC and
// HTTP/2 itself. The peer port is served by it too (src/server/peer.ts: raft message streams,
// snapshots, PeerCluster), so that the receive windows of its streams are ours to set
// (RecvWindow) instead of reached for inside grpc-js; every client we dial (forwarding to the
// leader, the peer transport's senders) still uses grpc-js.
//
// What it implements (the gRPC-over-HTTP/2 protocol, as grpc-go and grpc-js servers answer it):
//   - routes by :path to the method tables of the service definitions (@grpc/proto-loader's
//     serializers), UNIMPLEMENTED for unknown methods;
//   - length-prefixed messages, with gzip/deflate-compressed ones accepted (grpc-encoding);
//     messages above the receive limit are refused with RESOURCE_EXHAUSTED;
//   - unary, server-streaming, client-streaming and bidi calls, handed to handlers as the calls of
//     call.ts: one object per call (GrpcCall), no event emitter, no closure per message; a bidi or
//     client-streaming handler returns the listener its requests go to, and can hold them
//     (holdRequests: the stream's window is no longer credited; request_queue.ts pulls them on
//     demand that way). Responses may be given already encoded (writeEncoded);
//   - per method, a receive window wider than HTTP/2's 64 KiB (RecvWindow: WINDOW_UPDATEs for the
//     stream and its connection once the handler took the call; the peer port's raft and snapshot
//     streams);
//   - statuses as trailers (grpc-status, grpc-message), trailers-only when no message was sent;
//   - request metadata, built only when a handler asks for it;
//   - a client that resets its stream or drops the connection cancels the call (cancelled, and a
//     streaming handler's listener hears closed()).
//   - deadlines: a request's grpc-timeout puts the call in a deadline bucket (DeadlineWheel: one
//     timer per DEADLINE_BUCKET_MS of deadlines, not one per call: ~0.4 µs a call instead of
//     ~1.4 µs for a timer of its own); when its bucket's time comes before the call ended, the call
//     is abandoned (its handler's onAbandoned hooks run, so work waiting for it stops) and ends
//     with DEADLINE_EXCEEDED (options.deadlineExceeded), at most DEADLINE_BUCKET_MS late.
// Not implemented: response metadata, and response compression (responses are sent
// uncompressed, which every client accepts).
//
// Failures: a handler that throws, or a response that does not serialize, ends its call with
// INTERNAL and is reported (onInternalError) with the method, as is every status given with a
// cause; an AssertionError is never caught here (util/assert.ts): it crashes the member.
import type { Duplex } from 'node:stream';
import zlib from 'node:zlib';
import type * as grpc from '@grpc/grpc-js';
import { GrpcCode } from '../util/errors';
import { assert, rethrowIfAssertion } from '../util/assert';
import type { Logger } from '../util/log';
import { H2ServerConnection, MAX_CONCURRENT_STREAMS_DEFAULT, encodeHeaderBlock, type H2ServerStream } from './h2_conn';
import { ResponseBudget, type BudgetHolder } from './limits';
import type { BidiHandler, BidiListener, CallStatus, ClientStreamCall, ClientStreamHandler, Handler, MessagePartWriter, ServerStreamCall, ServerStreamHandler, StreamListener, UnaryCall, UnaryHandler } from './call';

export type { CallStatus, Handler } from './call';

/** The connection a call came on (client-certificate identity: src/tls/identity.ts). */
export interface SocketInfo {
  localAddress?: string;
  localPort?: number;
  remoteAddress?: string;
  remotePort?: number;
}

export interface H2GrpcServerOptions {
  /** Largest request message accepted (bytes, after decompression). */
  maxReceiveBytes: number;
  /** Every call as it starts (by its :path); the function returned is called once with its final
   *  status code (CANCELLED if the client went away). The member's gRPC metrics. */
  onCallStart?(path: string): ((code: number) => void) | undefined;
  /** Every call's metadata (first text value by key) once built, with the connection's socket: it
   *  may add and remove entries (the client-certificate CN: src/tls/identity.ts). */
  onMetadata?(md: Map<string, string>, socket: SocketInfo | undefined): void;
  /** An unexpected failure while serving `path` (a handler threw, a response did not serialize, a
   *  status given with its cause). Default: printed on stderr with its stack. */
  onInternalError?(path: string, err: unknown): void;
  /** Where each connection reports a stream whose callback threw (the member's logger). */
  log?: Logger;
  /** SETTINGS_MAX_CONCURRENT_STREAMS per connection (etcd's --max-concurrent-streams). */
  maxConcurrentStreams?: number;
  /** Response bytes all connections together may hold queued for clients that do not read
   *  (default RESPONSE_BUFFER_BYTES_MAX_DEFAULT); above it the streams blocked longest end with
   *  RESOURCE_EXHAUSTED. */
  responseBufferBytesMax?: number;
  /** A call ended because the member's response budget, or its budget of incomplete request
   *  bytes, was exceeded (a metric). */
  onEvicted?(path: string): void;
  /** Bytes of incomplete request messages per connection, and all connections together
   *  (defaults PARTIAL_REQUEST_BYTES_PER_CONNECTION_MAX_DEFAULT, PARTIAL_REQUEST_BYTES_MAX_DEFAULT;
   *  the first is raised to twice maxReceiveBytes if below). */
  partialRequestBytesPerConnectionMax?: number;
  partialRequestBytesMax?: number;
  /** A connection with no open stream for this long is closed (GOAWAY, NO_ERROR); 0: never.
   *  Default IDLE_TIMEOUT_MS_DEFAULT. */
  idleTimeoutMs?: number;
  /** A connection that opened no stream for this long after its preface is closed. Default
   *  FIRST_STREAM_TIMEOUT_MS_DEFAULT. */
  firstStreamTimeoutMs?: number;
  /** After this long with nothing read from a connection the server PINGs it (etcd's
   *  --grpc-keepalive-interval, default 2 h); 0: never. */
  keepaliveIntervalMs?: number;
  /** A connection whose client sent nothing this long after such a PING is closed (etcd's
   *  --grpc-keepalive-timeout, default 20 s). */
  keepaliveTimeoutMs?: number;
  /** The status a call whose grpc-timeout passed ends with. Default: DEADLINE_EXCEEDED "context
   *  deadline exceeded" (grpc-go's words). */
  deadlineExceeded?: CallStatus;
  /** The status streaming calls (watches, keepalive streams) end with when the server closes.
   *  Default: UNAVAILABLE "grpc: the server has been stopped" (grpc-go's ErrServerStopped). */
  stopped?: CallStatus;
}

/** The member-wide response budget: 4 connections' worth of h2_conn's CONN_BUFFER_BYTES_MAX. */
export const RESPONSE_BUFFER_BYTES_MAX_DEFAULT = 64 * 1024 * 1024;
/** Bytes of incomplete request messages the calls of one connection may hold together (or twice
 *  the largest message, if more): twice the largest connection receive window (h2_conn.ts), so
 *  that a client sending many large requests at once over one connection is not refused, while
 *  one connection can no longer hold a partial message on each of its 1000 streams (~1.5 GB at
 *  etcd's --max-request-bytes). Past it the call whose data crossed it ends RESOURCE_EXHAUSTED. */
export const PARTIAL_REQUEST_BYTES_PER_CONNECTION_MAX_DEFAULT = 32 * 1024 * 1024;
/** All connections together: above it, the calls whose client has sent nothing for
 *  STALLED_MS_MIN end RESOURCE_EXHAUSTED (those holding longest first), and above 4 times it any
 *  (limits.ts ResponseBudget, the same rule as for queued responses). */
export const PARTIAL_REQUEST_BYTES_MAX_DEFAULT = 256 * 1024 * 1024;
/** As grpc-go's MaxConnectionIdle when set (etcd leaves it infinite): gRPC clients reconnect on
 *  their next call after a GOAWAY with NO_ERROR. */
export const IDLE_TIMEOUT_MS_DEFAULT = 5 * 60_000;
/** As the listener's ROUTE_TIMEOUT_MS for the preface: a connection that never asks anything. */
export const FIRST_STREAM_TIMEOUT_MS_DEFAULT = 30_000;
/** etcd's defaults for --grpc-keepalive-interval and --grpc-keepalive-timeout. */
export const KEEPALIVE_INTERVAL_MS_DEFAULT = 2 * 3600_000;
export const KEEPALIVE_TIMEOUT_MS_DEFAULT = 20_000;
/** How often the server looks for idle connections. */
const IDLE_SWEEP_MS = 1000;

type MethodDef = grpc.MethodDefinition<unknown, unknown>;

/** The shape of a method, from its definition (requestStream, responseStream). */
const UNARY = 0;
const SERVER_STREAM = 1;
const BIDI = 2;
const CLIENT_STREAM = 3;

/** A method's receive window: its stream's (HTTP/2 starts every stream at 64 KiB; without a
 *  RecvWindow h2_conn grows it, up to 1 MiB, while its data is consumed promptly) and, once such a
 *  call has been taken by its handler on a connection (a handler that ends the call at once, a
 *  refusal, leaves both at 64 KiB), that connection's (h2_conn.ts widenRecvWindow: never
 *  narrowed). The stream's stays at streamBytes: what a client may send ahead of the handler's
 *  reads (holdRequests). For methods whose requests are large and come fast (the peer port's raft
 *  message and snapshot streams), or whose reader must bound what it is sent ahead (a snapshot
 *  receiver kept at HTTP2_DEFAULT_WINDOW). */
export interface RecvWindow {
  readonly streamBytes: number;
  readonly connectionBytes: number;
}

/** HTTP/2's initial windows (RFC 9113 §6.9.2), kept as they are. */
export const HTTP2_DEFAULT_WINDOW: RecvWindow = { streamBytes: 65_535, connectionBytes: 65_535 };

/** The widest window a method may ask for (HTTP/2 allows 2^31-1): what one stream, or one
 *  connection, may hold in memory unread. */
export const RECV_WINDOW_BYTES_MAX = 64 * 1024 * 1024;

interface Route {
  readonly def: MethodDef;
  readonly shape: typeof UNARY | typeof SERVER_STREAM | typeof BIDI | typeof CLIENT_STREAM;
  readonly handler: Handler;
  readonly window: RecvWindow | undefined;
}

const GRPC_STATUS = 'grpc-status';
const GRPC_MESSAGE = 'grpc-message';
const RESPONSE_FIELDS: [string, string][] = [[':status', '200'], ['content-type', 'application/grpc+proto']];
const RESPONSE_BLOCK = encodeHeaderBlock(RESPONSE_FIELDS);
const OK_TRAILERS_BLOCK = encodeHeaderBlock([[GRPC_STATUS, '0']]);
const OK: CallStatus = { code: GrpcCode.OK, message: '' };
const MESSAGE_HEADER_BYTES = 5;
/** The largest response message sent: etcd's MaxSendMsgSize (math.MaxInt32); a handler that
 *  builds one slice by slice checks it (api/range_sliced.ts) with grpc-go's error. */
export const MESSAGE_BYTES_MAX = 2 ** 31 - 1;
/** Response bytes a streaming call may have queued in HTTP/2 before its writes return false. */
export const SEND_BUFFER_BYTES = 1024 * 1024;
/** Response bytes queued on a bidi call above which its requests stop being read (its writes
 *  still succeed up to SEND_BUFFER_BYTES, so a burst of watch events does not make the stream
 *  look slow): etcd's handlers stop reading at about the same point, grpc-go's 64 KiB write
 *  quota blocking their sends. A client that does not read its responses gets a few hundred
 *  keepalives or watch creates answered, not thousands (issue 22: RSS under a zero-window flood). */
export const REQUEST_READ_PAUSE_BYTES = 64 * 1024;
/** Largest request header list we take (as node:http2's maxHeaderListSize before). */
const MAX_HEADER_LIST_BYTES = 1024 * 1024;
/** Headers grpc-js also leaves out of a call's metadata (transport-level, not the client's). */
const TRANSPORT_HEADERS = ['grpc-timeout', 'grpc-encoding', 'grpc-accept-encoding', 'content-type', 'te', 'user-agent'];
/** What grpc-js accepts as a metadata key and as a text value (others it drops). */
const METADATA_KEY = /^[0-9a-z_.-]+$/;
const METADATA_TEXT_VALUE = /^[ -~]*$/;

/** Prefixes a serialized message with gRPC's 5-byte header (uncompressed). */
export function frameMessage(body: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(MESSAGE_HEADER_BYTES + body.length);
  out[0] = 0;
  out.writeUInt32BE(body.length, 1);
  out.set(body, MESSAGE_HEADER_BYTES);
  return out;
}

function status(code: number, message: string): CallStatus {
  return { code, message };
}

const DEADLINE_EXCEEDED: CallStatus = { code: GrpcCode.DEADLINE_EXCEEDED, message: 'context deadline exceeded' };
const SERVER_STOPPED: CallStatus = { code: GrpcCode.UNAVAILABLE, message: 'grpc: the server has been stopped' };
/** Longest timer node arms (2^31 - 1 ms, ~24.8 days); a longer grpc-timeout never fires. */
const TIMER_MS_MAX = 2 ** 31 - 1;
/** Deadlines that fall in the same DEADLINE_BUCKET_MS share one timer (the lateness allowed). */
const DEADLINE_BUCKET_MS = 10;

/** Calls by the deadline bucket they end in; one timer per bucket, fired at the bucket's end (so
 *  never early). Each call is in at most one bucket, removed when it ends. */
class DeadlineWheel {
  private readonly buckets = new Map<number, Set<GrpcCall>>();

  /** Puts `call` in the bucket of the deadline `ms` from now; returns the bucket. */
  add(call: GrpcCall, ms: number): Set<GrpcCall> {
    const slot = Math.ceil((performance.now() + ms) / DEADLINE_BUCKET_MS);
    let bucket = this.buckets.get(slot);
    if (bucket === undefined) {
      const b = new Set<GrpcCall>();
      bucket = b;
      this.buckets.set(slot, b);
      // Unref'd: a far deadline must not keep a stopping process alive (the sockets do while it serves).
      setTimeout(() => this.fire(slot, b), Math.max(0, slot * DEADLINE_BUCKET_MS - performance.now())).unref();
    }
    bucket.add(call);
    return bucket;
  }

  private fire(slot: number, bucket: Set<GrpcCall>): void {
    this.buckets.delete(slot);
    for (const call of bucket) call.deadlinePassed();
    bucket.clear();
  }
}

/** grpc-timeout's units (gRPC over HTTP/2: "TimeoutValue TimeoutUnit", at most 8 digits). */
const TIMEOUT_UNIT_MS: Readonly<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };
const GRPC_TIMEOUT = /^(\d{1,8})([HMSmun])$/;

/** A grpc-timeout header in milliseconds; undefined if absent or malformed (a malformed one is
 *  ignored: the call runs without a deadline; grpc-go would refuse the stream as INTERNAL). */
export function parseGrpcTimeoutMs(v: string | string[] | undefined): number | undefined {
  if (typeof v !== 'string') return undefined;
  const m = GRPC_TIMEOUT.exec(v);
  if (!m) return undefined;
  return Number(m[1]) * TIMEOUT_UNIT_MS[m[2]!]!;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** An unexpected failure: INTERNAL, with the exception kept as the cause (reported, not sent). */
function internal(what: string, err: unknown): CallStatus {
  return { code: GrpcCode.INTERNAL, message: `${what}: ${messageOf(err)}`, cause: err };
}

function isStatus(err: unknown): err is CallStatus {
  return typeof err === 'object' && err !== null && typeof (err as CallStatus).code === 'number' && typeof (err as CallStatus).message === 'string';
}

/** What MessageReader threw: its status, or (a bug) INTERNAL. */
function readFailure(err: unknown): CallStatus {
  if (isStatus(err)) return err;
  rethrowIfAssertion(err);
  return internal('quorumkv: could not read the request', err);
}

function unmarshalError(err: unknown): CallStatus {
  rethrowIfAssertion(err);
  return status(GrpcCode.INTERNAL, `grpc: error unmarshalling request: ${messageOf(err)}`);
}

function trailerFields(st: CallStatus): [string, string][] {
  const t: [string, string][] = [[GRPC_STATUS, String(st.code)]];
  if (st.message) t.push([GRPC_MESSAGE, encodeURI(st.message)]);
  return t;
}

function reportToStderr(path: string, err: unknown): void {
  console.error(`quorumkv: internal error serving ${path}:`, err);
}

/** Splits a request body into gRPC messages as its chunks arrive. */
export class MessageReader {
  /** Bytes received and not yet part of a whole message: chunks, joined only once a message is
   *  complete (a large message arrives as many 16 KiB frames). */
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Length of the message being received (header already seen), or -1. */
  private need = -1;

  constructor(
    private readonly maxBytes: number,
    private readonly encoding: string | undefined,
  ) {}

  /** Appends to `out` the whole messages completed by `chunk` (decompressed); throws a
   *  CallStatus for a bad one. */
  push(chunk: Buffer, out: Buffer[]): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    for (;;) {
      if (this.need < 0) {
        if (this.buffered < MESSAGE_HEADER_BYTES) return;
        const head = this.peekHeader();
        const len = head.readUInt32BE(1);
        if (len > this.maxBytes) throw status(GrpcCode.RESOURCE_EXHAUSTED, `grpc: received message larger than max (${len} vs. ${this.maxBytes})`);
        this.need = MESSAGE_HEADER_BYTES + len;
      }
      if (this.buffered < this.need) return;
      const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.buffered);
      const msg = all.subarray(0, this.need);
      const rest = all.subarray(this.need);
      this.chunks = rest.length > 0 ? [rest] : [];
      this.buffered = rest.length;
      this.need = -1;
      const body = msg.subarray(MESSAGE_HEADER_BYTES);
      out.push(msg[0] === 0 ? body : this.decompress(body));
    }
  }

  get partial(): boolean {
    return this.buffered > 0;
  }

  /** Bytes received and not yet part of a whole message. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  private peekHeader(): Buffer {
    const first = this.chunks[0]!;
    if (first.length >= MESSAGE_HEADER_BYTES) return first;
    const joined = Buffer.concat(this.chunks, this.buffered);
    this.chunks = [joined];
    return joined;
  }

  private decompress(body: Buffer): Buffer {
    let out: Buffer;
    try {
      if (this.encoding === 'gzip') out = zlib.gunzipSync(body, { maxOutputLength: this.maxBytes + 1 });
      else if (this.encoding === 'deflate') out = zlib.inflateSync(body, { maxOutputLength: this.maxBytes + 1 });
      else throw status(GrpcCode.UNIMPLEMENTED, `grpc: Decompressor is not installed for grpc-encoding "${this.encoding ?? 'identity'}"`);
    } catch (err) {
      if (isStatus(err)) throw err;
      rethrowIfAssertion(err);
      if (err instanceof RangeError) throw status(GrpcCode.RESOURCE_EXHAUSTED, `grpc: received message after decompression larger than max (${this.maxBytes})`);
      throw status(GrpcCode.INTERNAL, `grpc: failed to decompress the received message: ${messageOf(err)}`);
    }
    if (out.length > this.maxBytes) throw status(GrpcCode.RESOURCE_EXHAUSTED, `grpc: received message after decompression larger than max (${out.length} vs. ${this.maxBytes})`);
    return out;
  }
}

/** The writer of one answer in parts (GrpcCall.respondInParts): counts the bytes against the
 *  size its header announced. */
class GrpcPartWriter implements MessagePartWriter {
  private written = 0;
  private ended = false;

  constructor(
    private readonly call: GrpcCall,
    private readonly messageBytes: number,
  ) {}

  write(part: Uint8Array): boolean {
    assert(!this.ended, 'respondInParts: a part after end()');
    this.written += part.length;
    assert(this.written <= this.messageBytes, 'respondInParts: more bytes than the message size given');
    return this.call.writePart(Buffer.isBuffer(part) ? part : Buffer.from(part.buffer, part.byteOffset, part.length));
  }

  whenDrained(fn: () => void): void {
    this.call.whenPartsDrained(fn);
  }

  get over(): boolean {
    return this.call.partsOver;
  }

  end(): void {
    assert(!this.ended, 'respondInParts: end() twice');
    this.ended = true;
    if (this.call.finished) return;
    assert(this.written === this.messageBytes, `respondInParts: ${this.written} bytes written of a ${this.messageBytes}-byte message`);
    this.call.endParts();
  }
}

/**
 * One call, whatever its method's shape: the handlers see it through the narrower interfaces of
 * call.ts (one class, so that their property accesses stay monomorphic). It holds the stream, the
 * request, the listener of a streaming handler, and sends the final status once.
 */
class GrpcCall implements UnaryCall<unknown, unknown>, ServerStreamCall<unknown, unknown>, ClientStreamCall<unknown> {
  request: unknown = undefined;
  cancelled = false;
  finished = false;
  /** A streaming call of any kind (ended at once on close(); unary calls get the grace). */
  streaming = false;
  /** A bidi call (its requests stop being read above REQUEST_READ_PAUSE_BYTES queued). */
  bidi = false;
  private headersSent = false;
  /** The stream is gone (gone() ran). */
  private closed = false;
  private listener: StreamListener | undefined = undefined;
  private md: Map<string, string> | undefined = undefined;
  private drainAwaited = false;
  /** Request messages of a bidi call read but not delivered because its responses were not
   *  drained (the rest of one DATA frame; h2_conn holds what follows), and the half-close that
   *  came after them. */
  private heldMsgs: Buffer[] | undefined = undefined;
  private heldDeserialize: ((b: Buffer) => unknown) | undefined = undefined;
  private halfCloseHeld = false;
  /** The handler asked for no more requests (holdRequests) until it releases them. */
  private heldByHandler = false;
  private readonly onFinish: ((code: number) => void) | undefined;
  /** The deadline bucket holding this call, while it runs (DeadlineWheel). */
  private deadline: Set<GrpcCall> | undefined = undefined;
  /** Hooks to run if the call is abandoned (client gone, deadline passed); undefined once run. */
  private abandonHooks: (() => void)[] | undefined = [];
  private abandoned = false;
  /** Bytes of an incomplete request message its reader holds (counted on the connection and in
   *  the server's partialRequests budget), and its entry in that budget while above 0. */
  private partialBytes = 0;
  private partialHolder: BudgetHolder | undefined = undefined;

  constructor(
    private readonly server: H2GrpcServer,
    readonly stream: H2ServerStream,
    readonly path: string,
    private readonly serialize: (value: unknown) => Buffer,
  ) {
    this.onFinish = server.opts.onCallStart?.(path);
  }

  /** Arms the call's deadline (grpc-timeout): when it passes, the call is abandoned. */
  armDeadline(ms: number): void {
    if (ms > TIMER_MS_MAX) return;
    this.deadline = this.server.deadlines.add(this, ms);
  }

  /** Its deadline bucket's time came (DeadlineWheel). */
  deadlinePassed(): void {
    this.deadline = undefined;
    if (this.finished) return;
    this.fail(this.server.opts.deadlineExceeded ?? DEADLINE_EXCEEDED);
    this.abandon();
  }

  onAbandoned(fn: () => void): void {
    if (this.abandoned) return fn();
    this.abandonHooks?.push(fn);
  }

  /** Runs the abandon hooks once (a hook that throws ends nothing more: the call is over). */
  private abandon(): void {
    const hooks = this.abandonHooks;
    this.abandoned = true;
    this.abandonHooks = undefined;
    if (!hooks) return;
    for (const fn of hooks) {
      try {
        fn();
      } catch (err) {
        rethrowIfAssertion(err);
        this.server.reportInternal(this.path, err);
      }
    }
  }

  metadata(key: string): string | undefined {
    let md = this.md;
    if (md === undefined) {
      md = new Map();
      const headers = this.stream.headers;
      for (const k of Object.keys(headers)) {
        if (k.charCodeAt(0) === 58 /* ':' */ || k.endsWith('-bin') || TRANSPORT_HEADERS.includes(k) || !METADATA_KEY.test(k)) continue;
        const v = headers[k];
        const first = Array.isArray(v) ? v[0] : v;
        if (first !== undefined && METADATA_TEXT_VALUE.test(first)) md.set(k, first);
      }
      this.server.opts.onMetadata?.(md, this.stream.socket);
      this.md = md;
    }
    return md.get(key);
  }

  private get writable(): boolean {
    return !this.stream.closed && !this.stream.localEnded;
  }

  get remoteAddress(): string {
    const sock = this.stream.socket;
    return `${sock.remoteAddress ?? 'unknown'}:${sock.remotePort ?? 0}`;
  }

  get queuedBytes(): number {
    return this.stream.closed ? 0 : this.stream.pendingCost;
  }

  sendHeaders(): void {
    if (this.headersSent || !this.writable) return;
    this.headersSent = true;
    this.stream.respond(RESPONSE_BLOCK, false);
  }

  /** A unary call's answer: headers, the message and OK trailers, queued together. */
  respond(message: unknown): void {
    if (this.finished) return;
    let body: Buffer;
    try {
      body = frameMessage(this.serialize(message));
    } catch (err) {
      rethrowIfAssertion(err);
      return this.fail(internal('quorumkv: could not serialize the response', err));
    }
    this.finished = true;
    this.disarm();
    this.onFinish?.(GrpcCode.OK);
    if (!this.writable) return;
    this.sendHeaders();
    this.stream.write(body, SEND_BUFFER_BYTES);
    this.stream.end(OK_TRAILERS_BLOCK);
  }

  /** respond() in parts as they are produced: the 5-byte gRPC message header with the whole
   *  size, then each part as written (back-pressure: write() returns false once SEND_BUFFER_BYTES
   *  are queued), then OK trailers at end(). Until end() the call runs: a fail() (the handler's,
   *  the deadline's, the response budget's) ends it with that status after the partial message,
   *  which a gRPC client reports as the status. */
  respondInParts(messageBytes: number): MessagePartWriter {
    assert(messageBytes >= 0 && messageBytes <= MESSAGE_BYTES_MAX, 'respondInParts: a size outside the gRPC message limit');
    // A call already over (cancelled, its deadline passed) gets a writer that is over: nothing
    // is sent.
    if (this.finished) return new GrpcPartWriter(this, messageBytes);
    const head = Buffer.allocUnsafe(MESSAGE_HEADER_BYTES);
    head[0] = 0;
    head.writeUInt32BE(messageBytes, 1);
    this.writePart(head);
    return new GrpcPartWriter(this, messageBytes);
  }

  /** The answer in parts is over before its end (its call failed, or the client went away). */
  get partsOver(): boolean {
    return this.finished || !this.writable;
  }

  /** Queues bytes of a message answered in parts; false above SEND_BUFFER_BYTES. */
  writePart(b: Buffer): boolean {
    if (this.partsOver) return true;
    this.sendHeaders();
    return this.stream.write(b, SEND_BUFFER_BYTES);
  }

  whenPartsDrained(fn: () => void): void {
    if (this.partsOver) return fn();
    this.stream.whenDrained(fn, SEND_BUFFER_BYTES);
  }

  /** Every part written: OK trailers. */
  endParts(): void {
    if (this.finished) return;
    this.finished = true;
    this.disarm();
    this.onFinish?.(GrpcCode.OK);
    if (!this.writable) return;
    this.sendHeaders();
    this.stream.end(OK_TRAILERS_BLOCK);
  }

  write(message: unknown): boolean {
    if (this.finished) return true;
    let body: Buffer;
    try {
      body = this.serialize(message);
    } catch (err) {
      rethrowIfAssertion(err);
      this.fail(internal('quorumkv: could not serialize a response', err));
      return true;
    }
    return this.send(frameMessage(body));
  }

  writeEncoded(message: Uint8Array): boolean {
    if (this.finished) return true;
    return this.send(frameMessage(message));
  }

  /** Backpressure in bytes: below SEND_BUFFER_BYTES queued (this stream's data waiting for
   *  flow-control window, plus the connection's unsent bytes) writes return true; above it, false
   *  until the listener's drain(). Every response is queued either way: a burst of small ones (a
   *  put seen by 100 watchers of one stream) must not make the stream look slow. A bidi call
   *  stops reading requests earlier, above REQUEST_READ_PAUSE_BYTES queued. */
  private send(framed: Buffer): boolean {
    if (!this.writable) return true;
    this.sendHeaders();
    const below = this.stream.write(framed, SEND_BUFFER_BYTES);
    if (below && !(this.bidi && this.stream.pendingCost > REQUEST_READ_PAUSE_BYTES)) return true;
    // Back-pressure end to end: no more requests are read (nor their window credited) until
    // the responses drain, so a client that does not read cannot make the member answer it
    // into unbounded memory. (A drain() after writes that all returned true is harmless.)
    this.stream.pause();
    if (!this.drainAwaited) {
      this.drainAwaited = true;
      this.stream.whenDrained(() => this.drained(), below ? REQUEST_READ_PAUSE_BYTES : SEND_BUFFER_BYTES);
    }
    return below;
  }

  private drained(): void {
    this.drainAwaited = false;
    const l = this.listener;
    if (this.finished) return;
    if (l?.drain) {
      try {
        l.drain();
      } catch (err) {
        return this.threw(err);
      }
    }
    this.releaseIfFree();
  }

  holdRequests(): void {
    this.heldByHandler = true;
    this.stream.pause();
  }

  releaseRequests(): void {
    if (!this.heldByHandler) return;
    this.heldByHandler = false;
    this.releaseIfFree();
  }

  /** Delivers what was held and reads on, unless the handler holds requests or what was just
   *  delivered filled the send buffer again. */
  private releaseIfFree(): void {
    if (this.finished || this.heldByHandler || this.drainAwaited) return;
    this.deliverHeld();
    if (!this.drainAwaited && !this.heldByHandler && !this.finished) this.stream.resume();
  }

  /** The request messages held back while the responses were not drained, then the half-close
   *  that came after them. */
  private deliverHeld(): void {
    const held = this.heldMsgs;
    if (held === undefined) return;
    this.heldMsgs = undefined;
    this.deliver(held, this.heldDeserialize!);
    if (this.heldMsgs === undefined && this.halfCloseHeld) {
      this.halfCloseHeld = false;
      this.halfClosed();
    }
  }

  /** Its request reader now holds `bytes` of an incomplete message (after each DATA chunk). False
   *  if that took the connection over its bound: the call has then ended RESOURCE_EXHAUSTED. */
  holdPartial(bytes: number): boolean {
    const delta = bytes - this.partialBytes;
    const conn = this.stream.conn;
    const budget = this.server.partialRequests;
    this.partialBytes = bytes;
    conn.heldRequestBytes += delta;
    assert(conn.heldRequestBytes >= 0, 'grpc: negative held request bytes on a connection');
    if (delta > 0) budget.add(delta);
    else if (delta < 0) budget.sub(-delta);
    if (bytes === 0) {
      if (this.partialHolder !== undefined) budget.unwait(this.partialHolder);
      this.partialHolder = undefined;
      return true;
    }
    if (this.partialHolder === undefined) {
      this.partialHolder = { progressMs: 0, evict: () => this.partialEvicted() };
      budget.wait(this.partialHolder);
    }
    this.partialHolder.progressMs = Date.now();
    if (delta <= 0 || conn.heldRequestBytes <= this.server.partialRequestBytesPerConnectionMax) return true;
    this.holdPartial(0);
    this.fail(status(GrpcCode.RESOURCE_EXHAUSTED, `quorumkv: more than ${this.server.partialRequestBytesPerConnectionMax} bytes of incomplete request messages on this connection`));
    return false;
  }

  /** The member's budget of incomplete request bytes was exceeded while this call's client sent
   *  nothing (limits.ts ResponseBudget.enforce; its entry is already out of the budget's list). */
  private partialEvicted(): void {
    this.partialHolder = undefined;
    this.holdPartial(0);
    this.server.opts.onEvicted?.(this.path);
    this.fail(status(GrpcCode.RESOURCE_EXHAUSTED, `quorumkv: the request was not completed: more than ${this.server.partialRequests.bytesMax} bytes of incomplete requests in this member`));
  }

  /** The member's response budget was exceeded and this call's queued responses were dropped. */
  evicted(): void {
    this.server.opts.onEvicted?.(this.path);
    this.fail(status(GrpcCode.RESOURCE_EXHAUSTED, `quorumkv: the client does not read its responses: more than ${this.server.budget.bytesMax} bytes queued for such clients in this member`));
  }

  end(): void {
    this.finish(OK);
  }

  fail(st: CallStatus): void {
    this.finish(st);
  }

  /** Ends the call with `st` (after any messages written); only the first status counts. A call
   *  ended before the client half-closed (a bad or unexpected message) also stops reading: the
   *  HTTP/2 stream is then reset with NO_ERROR once the status is out (h2_conn.ts localEnd). */
  private finish(st: CallStatus): void {
    // A cause is reported even when the call is already over (the client went away): it is a bug.
    if (st.cause !== undefined) this.server.reportInternal(this.path, st.cause);
    if (this.finished) return;
    this.finished = true;
    this.disarm();
    // Its reader reads no more (onData returns once finished): what it holds is let go of.
    this.holdPartial(0);
    this.onFinish?.(st.code);
    if (!this.writable) return;
    if (!this.headersSent) {
      // Trailers-only: the status goes in the one HEADERS frame.
      this.headersSent = true;
      this.stream.respond(encodeHeaderBlock([...RESPONSE_FIELDS, ...trailerFields(st)]), true);
      return;
    }
    this.stream.end(st.code === GrpcCode.OK && !st.message ? OK_TRAILERS_BLOCK : encodeHeaderBlock(trailerFields(st)));
  }

  private disarm(): void {
    if (this.deadline === undefined) return;
    this.deadline.delete(this);
    this.deadline = undefined;
  }

  /** A handler or listener threw (not an assertion: those crash the member). */
  threw(err: unknown): void {
    rethrowIfAssertion(err);
    this.fail(internal('quorumkv: internal error', err));
  }

  /** A streaming handler's listener; hears closed() at once if the stream is already gone (the
   *  handler ended the call itself and the client had half-closed). */
  listen(l: StreamListener | void): void {
    if (!l) return;
    if (!this.closed) this.listener = l;
    else if (l.closed) l.closed();
  }

  /** Request messages of a bidi or client-streaming call, in order, while the call lasts. */
  deliver(msgs: Buffer[], deserialize: (b: Buffer) => unknown): void {
    if (this.heldMsgs !== undefined) {
      // Requests held from before go first: these queue behind them (the stream can be resumed,
      // and hand on more, while held ones wait: a drain that fired while they were being held).
      for (const m of msgs) this.heldMsgs.push(m);
      if (!this.stream.isPaused) this.releaseIfFree();
      return;
    }
    for (let i = 0; i < msgs.length && !this.finished; i++) {
      if (this.stream.isPaused) {
        this.heldMsgs = msgs.slice(i);
        this.heldDeserialize = deserialize;
        return;
      }
      let req: unknown;
      try {
        req = deserialize(msgs[i]!);
      } catch (err) {
        return this.fail(unmarshalError(err));
      }
      try {
        (this.listener as BidiListener<unknown>).message(req);
      } catch (err) {
        return this.threw(err);
      }
    }
  }

  halfClosed(): void {
    if (this.finished) return;
    if (this.heldMsgs !== undefined) {
      this.halfCloseHeld = true;
      return;
    }
    try {
      (this.listener as BidiListener<unknown>).halfClosed();
    } catch (err) {
      this.threw(err);
    }
  }

  /** The stream is gone: a call still running was cancelled by the client; a streaming
   *  handler's listener hears closed() either way. */
  gone(): void {
    if (this.closed) return;
    this.closed = true;
    this.holdPartial(0);
    this.server.callGone(this);
    this.disarm();
    if (!this.finished) {
      this.finished = true;
      this.cancelled = true;
      this.onFinish?.(GrpcCode.CANCELLED);
      this.abandon();
    }
    const l = this.listener;
    this.listener = undefined;
    if (!l?.closed) return;
    try {
      l.closed();
    } catch (err) {
      this.threw(err);
    }
  }
}

export class H2GrpcServer {
  /** Calls with a grpc-timeout, by deadline. */
  readonly deadlines = new DeadlineWheel();
  private readonly routes = new Map<string, Route>();
  private readonly connections = new Set<H2ServerConnection>();
  private closed = false;
  /** Streaming calls open (ended by close() at once: they never finish by themselves), and the
   *  count of other calls open (close() gives them the grace). */
  private readonly streamingCalls = new Set<GrpcCall>();
  private otherCallsOpen = 0;
  /** Response bytes queued for clients, all connections together (h2_conn, limits.ts). */
  readonly budget: ResponseBudget;
  /** Bytes of incomplete request messages, all connections together; its holders are the calls
   *  holding some, and a stalled one (no data for STALLED_MS_MIN) is evicted as a stalled
   *  response stream is (limits.ts). */
  readonly partialRequests: ResponseBudget;
  readonly partialRequestBytesPerConnectionMax: number;
  private readonly idleSweep: NodeJS.Timeout;

  constructor(readonly opts: H2GrpcServerOptions) {
    this.budget = new ResponseBudget(opts.responseBufferBytesMax ?? RESPONSE_BUFFER_BYTES_MAX_DEFAULT);
    this.partialRequests = new ResponseBudget(opts.partialRequestBytesMax ?? PARTIAL_REQUEST_BYTES_MAX_DEFAULT);
    this.partialRequestBytesPerConnectionMax = Math.max(opts.partialRequestBytesPerConnectionMax ?? PARTIAL_REQUEST_BYTES_PER_CONNECTION_MAX_DEFAULT, 2 * opts.maxReceiveBytes);
    this.idleSweep = setInterval(() => this.closeIdle(Date.now()), IDLE_SWEEP_MS);
    this.idleSweep.unref();
  }

  /** Response bytes queued for clients that have not read them yet (a gauge). */
  get bufferedResponseBytes(): number {
    return this.budget.bytes;
  }

  /** Closes (GOAWAY NO_ERROR, then cuts a second later) connections that opened no stream within
   *  the first-stream timeout, or have had none open for the idle timeout. O(connections) once a
   *  second, nothing per request. */
  private closeIdle(now: number): void {
    const idleMs = this.opts.idleTimeoutMs ?? IDLE_TIMEOUT_MS_DEFAULT;
    const firstMs = this.opts.firstStreamTimeoutMs ?? FIRST_STREAM_TIMEOUT_MS_DEFAULT;
    const kaInterval = this.opts.keepaliveIntervalMs ?? KEEPALIVE_INTERVAL_MS_DEFAULT;
    const kaTimeout = this.opts.keepaliveTimeoutMs ?? KEEPALIVE_TIMEOUT_MS_DEFAULT;
    for (const c of this.connections) {
      if (!c.keepalive(now, kaInterval, kaTimeout)) {
        c.destroy();
        continue;
      }
      if (c.idleSinceMs === -1) c.idleSinceMs = now;
      if (c.isGoingAway || c.idleSinceMs === 0) continue;
      const limit = c.hadStream ? idleMs : firstMs;
      if (limit <= 0 || now - c.idleSinceMs < limit) continue;
      c.goAway();
      setTimeout(() => c.destroy(), 1000).unref();
    }
  }

  /** Registers a handler for every method of a service definition (@grpc/proto-loader's), found by
   *  its name; the definition says each method's shape. */
  addService(def: grpc.ServiceDefinition, handlers: Readonly<Record<string, Handler>>, windows: Readonly<Record<string, RecvWindow>> = {}): void {
    for (const [name, w] of Object.entries(windows)) {
      assert(def[name] !== undefined, `receive window for ${name}, not a method of the service`);
      assert(w.streamBytes > 0 && w.streamBytes <= RECV_WINDOW_BYTES_MAX && w.connectionBytes > 0 && w.connectionBytes <= RECV_WINDOW_BYTES_MAX, `receive window of ${name} out of range`);
    }
    for (const [name, m] of Object.entries(def)) {
      const handler = handlers[name] ?? handlers[(m as { originalName?: string }).originalName ?? ''];
      if (!handler) throw new Error(`no handler for ${m.path}`);
      if (this.routes.has(m.path)) throw new Error(`method ${m.path} registered twice`);
      const shape = m.requestStream ? (m.responseStream ? BIDI : CLIENT_STREAM) : m.responseStream ? SERVER_STREAM : UNARY;
      this.routes.set(m.path, { def: m as MethodDef, shape, handler, window: windows[name] });
    }
  }

  /** An unexpected failure while serving `path` (never an AssertionError: those are not caught). */
  reportInternal(path: string, err: unknown): void {
    (this.opts.onInternalError ?? reportToStderr)(path, err);
  }

  /** Takes over one client connection (a socket routed by its HTTP/2 preface; the bytes read so
   *  far put back). */
  injectConnection(conn: Duplex): void {
    if (this.closed) return void conn.destroy();
    let c: H2ServerConnection;
    try {
      c = new H2ServerConnection(conn, (s) => this.onStream(s), {
        maxHeaderListBytes: MAX_HEADER_LIST_BYTES,
        log: this.opts.log,
        maxConcurrentStreams: this.opts.maxConcurrentStreams ?? MAX_CONCURRENT_STREAMS_DEFAULT,
        budget: this.budget,
      });
    } catch (err) {
      rethrowIfAssertion(err);
      this.reportInternal('(connection)', err);
      return void conn.destroy();
    }
    this.connections.add(c);
    c.onGone = () => this.connections.delete(c);
  }

  /** Stops serving: GOAWAY on every connection (no new streams), streaming calls (watches,
   *  keepalive streams: they never end by themselves, so waiting for them is pointless) ended at
   *  once with opts.stopped, unary calls given up to `graceMs` to finish; then every connection
   *  is cut (a stream whose status cannot go out, its client's window shut, with it). etcd 3.4
   *  drops its connections at once on SIGTERM (no GOAWAY, no status: clients see UNAVAILABLE). */
  async close(graceMs: number): Promise<void> {
    this.closed = true;
    clearInterval(this.idleSweep);
    for (const c of [...this.connections]) c.goAway();
    const stopped = this.opts.stopped ?? SERVER_STOPPED;
    for (const call of [...this.streamingCalls]) call.fail(stopped);
    const deadline = Date.now() + graceMs;
    // One turn at least, so that the statuses just queued are flushed to the sockets.
    await new Promise((r) => setImmediate(r));
    while (this.otherCallsOpen > 0 && this.connections.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    this.destroy();
  }

  /** A call's stream is gone (GrpcCall.gone, once per call). */
  callGone(call: GrpcCall): void {
    if (call.streaming) this.streamingCalls.delete(call);
    else this.otherCallsOpen--;
  }

  /** Cuts every connection now. */
  destroy(): void {
    this.closed = true;
    clearInterval(this.idleSweep);
    for (const c of [...this.connections]) c.destroy();
    this.connections.clear();
  }

  private onStream(stream: H2ServerStream): void {
    const headers = stream.headers;
    const path = headers[':path'];
    const ct = headers['content-type'];
    if (typeof ct !== 'string' || !ct.startsWith('application/grpc')) {
      stream.respond(encodeHeaderBlock([[':status', '415'], [GRPC_STATUS, String(GrpcCode.INTERNAL)], [GRPC_MESSAGE, encodeURI(`invalid gRPC request content-type "${String(ct)}"`)]]), true);
      return;
    }
    const p = typeof path === 'string' ? path : '';
    const route = this.routes.get(p);
    const call = new GrpcCall(this, stream, p, route ? (route.def.responseSerialize as (v: unknown) => Buffer) : unroutable);
    if (!route) return call.fail(status(GrpcCode.UNIMPLEMENTED, `unknown method ${p}`));
    const encoding = headers['grpc-encoding'];
    const reader = new MessageReader(this.opts.maxReceiveBytes, typeof encoding === 'string' && encoding !== 'identity' ? encoding : undefined);
    call.streaming = route.shape !== UNARY;
    call.bidi = route.shape === BIDI;
    if (call.streaming) this.streamingCalls.add(call);
    else this.otherCallsOpen++;
    stream.onClose = () => call.gone();
    stream.onEvict = () => call.evicted();
    const timeoutMs = parseGrpcTimeoutMs(headers['grpc-timeout']);
    if (timeoutMs !== undefined) call.armDeadline(timeoutMs);
    if (route.shape === BIDI || route.shape === CLIENT_STREAM) this.streamedRequests(call, route, reader);
    else this.oneRequest(call, route, reader);
  }

  /** Unary and server-streaming: one request message, then the handler. */
  private oneRequest(call: GrpcCall, route: Route, reader: MessageReader): void {
    const deserialize = route.def.requestDeserialize;
    const msgs: Buffer[] = [];
    let got = 0;
    call.stream.onData = (chunk: Buffer) => {
      if (call.finished) return;
      try {
        reader.push(chunk, msgs);
      } catch (err) {
        return call.fail(readFailure(err));
      }
      if (!call.holdPartial(reader.bufferedBytes)) return;
      if (msgs.length === 0) return;
      got += msgs.length;
      if (got > 1) return call.fail(status(GrpcCode.UNIMPLEMENTED, `grpc: a second request message on unary method ${call.path}`));
      const m = msgs[0]!;
      msgs.length = 0;
      try {
        call.request = deserialize(m);
      } catch (err) {
        return call.fail(unmarshalError(err));
      }
      this.invoke(call, route);
    };
    call.stream.onEnd = () => {
      if (got === 0 && !call.finished) call.fail(status(GrpcCode.INTERNAL, reader.partial ? 'grpc: the request ended inside a message' : `grpc: no request message on unary method ${call.path}`));
    };
  }

  /** Bidi and client-streaming: the handler starts at once; requests go to its listener as they
   *  arrive (unless it holds them). */
  private streamedRequests(call: GrpcCall, route: Route, reader: MessageReader): void {
    const deserialize = route.def.requestDeserialize as (b: Buffer) => unknown;
    const msgs: Buffer[] = [];
    call.stream.onData = (chunk: Buffer) => {
      if (call.finished) return;
      try {
        reader.push(chunk, msgs);
      } catch (err) {
        return call.fail(readFailure(err));
      }
      if (!call.holdPartial(reader.bufferedBytes)) return;
      if (msgs.length === 0) return;
      call.deliver(msgs, deserialize);
      msgs.length = 0;
    };
    // The half-close is delivered after the frames read with it: grpc-js cancels a stream with an
    // empty END_STREAM then RST_STREAM, which must reach the handler as a cancellation, not as
    // the end of its requests (which a handler answers by ending the call OK).
    call.stream.onEnd = () => process.nextTick(() => call.halfClosed());
    this.invoke(call, route);
  }

  /** Runs the method's handler. The handler table erased message types (call.ts Handler); the
   *  request is what the method's own deserializer made, as its definition promises. */
  private invoke(call: GrpcCall, route: Route): void {
    try {
      if (route.shape === UNARY) (route.handler as UnaryHandler<unknown, unknown>)(call);
      else if (route.shape === SERVER_STREAM) call.listen((route.handler as ServerStreamHandler<unknown, unknown>)(call));
      else if (route.shape === CLIENT_STREAM) call.listen((route.handler as ClientStreamHandler<unknown, unknown>)(call));
      else call.listen((route.handler as BidiHandler<unknown, unknown>)(call));
    } catch (err) {
      call.threw(err);
    }
    // Only for a call its handler took (a refused one ended already): a client gets the wider
    // window, and may fill it, once admitted.
    if (route.window !== undefined && !call.finished) call.stream.widenRecvWindow(route.window.streamBytes, route.window.connectionBytes);
  }
}

/** The serializer of a call to no method (it is answered UNIMPLEMENTED and never responds). */
function unroutable(): Buffer {
  throw new Error('no method to serialize for');
}
