// One gRPC client-streaming call on its own HTTP/2 connection, framed directly on the socket (TCP,
// or TLS when the member has peer TLS files): the sending half of a peer's Raft message stream
// (peer.ts). The wire stays gRPC over HTTP/2, so any member's peer port (ours in src/grpcserver,
// or grpc-js's in older versions) serves it with its limits and metrics.
//
// Why not grpc-js: every write went through a grpc-js call, a node:http2 stream and nghttp2's C++,
// and a bidi echo between two grpc-js endpoints cost 56-82 us against 31-36 us on raw TCP
// (docs/performance.md). Written here, the messages a peer queued in one turn are one gRPC
// message, cut into DATA frames within the receiver's windows and SETTINGS_MAX_FRAME_SIZE, and
// everything the connection has to send in one turn (DATA, WINDOW_UPDATE, PING and SETTINGS
// acknowledgements) goes out in one socket write.
//
// What it does (RFC 9113 from the client's side, one stream, id 1):
//   - the client preface, our SETTINGS (no push, our frame and header-list bounds) and the
//     request's HEADERS in the first write (as grpc-js does, before the server's SETTINGS); the
//     server's first frame must be its SETTINGS; its SETTINGS are acknowledged and applied
//     (initial window, frame size; ENABLE_PUSH=1 is refused), its PINGs answered (not rate
//     limited: a server's BDP estimator sends one per burst of data; but a server that sends them
//     while not reading our socket is cut off past CONTROL_BACKLOG_MAX unsent bytes);
//   - flow control: DATA never exceeds the connection's or the stream's send window nor the
//     server's SETTINGS_MAX_FRAME_SIZE; what does not fit waits for WINDOW_UPDATE, and write()
//     returns false (then 'drain') while anything waits or the socket pushes back. Received DATA
//     (the one small response message) is credited to the connection, never to the stream: a
//     server cannot send more than one stream window;
//   - response headers: :status 200 makes the call ready (the receiver accepted the stream);
//     a trailers-only answer, or trailers after, end it with their grpc-status and grpc-message
//     (percent-decoded); another :status ends it with gRPC's HTTP-to-status mapping;
//   - RST_STREAM and GOAWAY (one that does not cover stream 1, or carries an error) end the call;
//     frames above our SETTINGS_MAX_FRAME_SIZE, a server's push, a broken HPACK block or a window
//     above 2^31-1 end the connection with GOAWAY and the matching error code;
//   - keepalive: a PING every keepaliveIntervalMs; unanswered for keepaliveTimeoutMs, the
//     connection is dropped (a peer that vanished without closing it: power loss, partition);
//   - the call's end is reported once, in a later tick, and the connection is closed with it.
// Not here: a dial timeout and reconnects (peer.ts), several streams per connection, compression.
import net from 'node:net';
import tls from 'node:tls';
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
  MAX_FRAME_SIZE_LIMIT,
  MAX_WINDOW,
  S_ENABLE_PUSH,
  S_INITIAL_WINDOW_SIZE,
  S_MAX_FRAME_SIZE,
  S_MAX_HEADER_LIST_SIZE,
  T_CONTINUATION,
  T_DATA,
  T_GOAWAY,
  T_HEADERS,
  T_PING,
  T_PUSH_PROMISE,
  T_RST_STREAM,
  T_SETTINGS,
  T_WINDOW_UPDATE,
  FrameReader,
  H2ConnectionError,
  frame,
  u32,
  writeFrameHeader,
} from '../grpcserver/h2_frames';
import { HpackDecoder, HpackError, encodeHeaderBlock } from '../grpcserver/hpack';
import { AssertionError, assert } from '../util/assert';
import { GrpcCode } from '../util/errors';
import type { Logger } from '../util/log';
import { LAT_TRACE, latStamp } from '../util/lat_trace';

/** gRPC's message header: compressed flag and length. */
const GRPC_MESSAGE_HEADER_BYTES = 5;
/** Bytes a message given to write() keeps free in front of its payload: a DATA frame header,
 *  then the gRPC message header (both written by write()). */
export const MESSAGE_HEADROOM = FRAME_HEADER_BYTES + GRPC_MESSAGE_HEADER_BYTES;
const STREAM_ID = 1;
/** The response header list we take (grpc-go's default bound is 16 MiB; a gRPC status with its
 *  message is far below). */
const HEADER_LIST_BYTES_MAX = 64 * 1024;
/** Received connection-level bytes credited back once this many are uncredited. */
const CONN_CREDIT_BYTES = DEFAULT_WINDOW >>> 1;
/** Bytes our socket may hold unsent when a server's PING or SETTINGS asks for an answer: past
 *  it, the server sends but does not read, and is cut off (ENHANCE_YOUR_CALM). PINGs are not
 *  rate-limited: a server's BDP estimator (ours, grpc-go's) sends one per burst of data it reads. */
const CONTROL_BACKLOG_MAX = 16 * 1024 * 1024;
const KEEPALIVE_PING_DATA = Buffer.from('qkv-kacl', 'latin1');
/** A turn's frames up to this size are copied into one buffer for the socket; above it they go
 *  as one writev of the pieces (a large message's DATA frames are views into it). */
const CONCAT_BYTES_MAX = 4096;
/** How long a closed connection may take to flush its last frames before it is destroyed. */
const CLOSE_LINGER_MS = 1_000;

/** Our TLS files, as grpc-js's createSsl(ca, key, cert) takes them: the CA we verify the server
 *  with (the system's roots without one), our certificate and key as the client certificate. */
export interface ClientTls {
  readonly ca: Buffer | undefined;
  readonly key: Buffer;
  readonly cert: Buffer;
}

export interface H2CallOptions {
  host: string;
  port: number;
  /** TLS with these files; plain TCP when undefined. */
  tls: ClientTls | undefined;
  path: string;
  /** Metadata sent as request headers (lower-case names, ASCII values). */
  metadata: readonly (readonly [string, string])[];
  keepaliveIntervalMs: number;
  keepaliveTimeoutMs: number;
  log: Logger;
}

export interface H2CallStatus {
  code: GrpcCode;
  details: string;
}

export interface H2CallEvents {
  /** The server answered with response headers: the call is accepted. */
  ready(): void;
  /** A write() returned false and everything written since has gone to the socket. */
  drain(): void;
  /** The call ended (reported once, in a later tick; the connection is closed). */
  end(status: H2CallStatus): void;
}


/** gRPC's mapping of an HTTP status that is not 200 (doc/http-grpc-status-mapping.md). */
function statusOfHttp(httpStatus: string): GrpcCode {
  switch (httpStatus) {
    case '400':
      return GrpcCode.INTERNAL;
    case '401':
      return GrpcCode.UNAUTHENTICATED;
    case '403':
      return GrpcCode.PERMISSION_DENIED;
    case '404':
      return GrpcCode.UNIMPLEMENTED;
    case '429':
    case '502':
    case '503':
    case '504':
      return GrpcCode.UNAVAILABLE;
    default:
      return GrpcCode.UNKNOWN;
  }
}

/** A stream reset's HTTP/2 code as a gRPC status (as grpc-js maps them). */
function statusOfReset(h2code: number): GrpcCode {
  if (h2code === H2_REFUSED_STREAM) return GrpcCode.UNAVAILABLE;
  if (h2code === H2_CANCEL) return GrpcCode.CANCELLED;
  if (h2code === H2_ENHANCE_YOUR_CALM) return GrpcCode.RESOURCE_EXHAUSTED;
  return GrpcCode.INTERNAL;
}

function decodeGrpcMessage(v: string | undefined): string {
  if (v === undefined) return '';
  try {
    return decodeURIComponent(v);
  } catch {
    return v; // not percent-encoded as it should be: shown as sent
  }
}

export class H2ClientCall {
  private readonly socket: net.Socket;
  private readonly hpack = new HpackDecoder(HEADER_LIST_BYTES_MAX);
  // Sending.
  private out: Buffer[] = [];
  private outBytes = 0;
  private flushScheduled = false;
  private socketBlocked = false;
  private connSendWindow = DEFAULT_WINDOW;
  private streamSendWindow = DEFAULT_WINDOW;
  private peerInitialWindow = DEFAULT_WINDOW;
  private peerMaxFrame = DEFAULT_MAX_FRAME;
  /** Message bytes waiting for window: pending[pendingHead] from pendingOffset on, then the rest. */
  private pending: Buffer[] = [];
  private pendingHead = 0;
  private pendingOffset = 0;
  private pendingBytes = 0;
  private endQueued = false;
  private endSent = false;
  private wantDrain = false;
  // Receiving.
  private readonly reader = new FrameReader(DEFAULT_MAX_FRAME, undefined, (type, flags, streamId, payload) => this.onFrame(type, flags, streamId, payload), () => !this.dead);
  private settingsSeen = false;
  private connRecvWindow = DEFAULT_WINDOW;
  private connUncredited = 0;
  private streamRecvWindow = DEFAULT_WINDOW;
  private block: { endStream: boolean; parts: Buffer[]; bytes: number } | undefined;
  private responded = false;
  // Life cycle.
  private finished = false;
  private dead = false;
  private keepaliveTimer: NodeJS.Timeout | undefined;
  private pingTimer: NodeJS.Timeout | undefined;
  private readonly log: Logger;

  constructor(
    private readonly opts: H2CallOptions,
    private readonly events: H2CallEvents,
  ) {
    this.log = opts.log;
    if (opts.tls !== undefined) {
      this.socket = tls.connect({
        host: opts.host,
        port: opts.port,
        // SNI takes a name only; the certificate is checked against the host either way (an IP
        // address against the certificate's IP SANs), as grpc-js does.
        servername: net.isIP(opts.host) === 0 ? opts.host : undefined,
        ca: opts.tls.ca,
        key: opts.tls.key,
        cert: opts.tls.cert,
        ALPNProtocols: ['h2'],
        minVersion: 'TLSv1.2',
      });
    } else {
      this.socket = net.connect({ host: opts.host, port: opts.port });
    }
    this.socket.setNoDelay(true);
    this.socket.on('data', (chunk: Buffer) => this.onBytes(chunk));
    this.socket.on('drain', () => this.onSocketDrain());
    this.socket.on('error', (err) => this.gone(err.message));
    this.socket.on('end', () => this.gone('connection closed by the peer'));
    this.socket.on('close', () => this.gone('connection closed'));
    // Preface, SETTINGS and the request in the first write (buffered until connected).
    const settings = Buffer.allocUnsafe(18);
    settings.writeUInt16BE(S_ENABLE_PUSH, 0);
    settings.writeUInt32BE(0, 2);
    settings.writeUInt16BE(S_MAX_FRAME_SIZE, 6);
    settings.writeUInt32BE(DEFAULT_MAX_FRAME, 8);
    settings.writeUInt16BE(S_MAX_HEADER_LIST_SIZE, 12);
    settings.writeUInt32BE(HEADER_LIST_BYTES_MAX, 14);
    this.queue(H2_PREFACE);
    this.queue(frame(T_SETTINGS, 0, 0, settings));
    const block = encodeHeaderBlock([
      [':method', 'POST'],
      [':scheme', opts.tls !== undefined ? 'https' : 'http'],
      [':path', opts.path],
      [':authority', net.isIPv6(opts.host) ? `[${opts.host}]` : `${opts.host}:${opts.port}`],
      ['content-type', 'application/grpc'],
      ['te', 'trailers'],
      ...opts.metadata,
    ]);
    // One HEADERS frame at the default frame size (the server's may not be known yet): a block of
    // a few metadata fields is far below it.
    assert(block.length <= DEFAULT_MAX_FRAME, 'h2 client: request headers fit one frame');
    this.queue(frame(T_HEADERS, F_END_HEADERS, STREAM_ID, block));
    if (opts.keepaliveIntervalMs > 0) {
      this.keepaliveTimer = setInterval(() => this.keepalivePing(), opts.keepaliveIntervalMs);
      this.keepaliveTimer.unref();
    }
  }

  /** Sends one gRPC message. `msg` starts with MESSAGE_HEADROOM bytes the call writes into; the
   *  buffer is the call's from now on. False when the caller should wait for drain() before the
   *  next write (the message is queued either way). */
  write(msg: Buffer): boolean {
    assert(msg.length >= MESSAGE_HEADROOM, 'h2 client: message without headroom');
    if (this.finished || this.endQueued) return true;
    const bodyBytes = msg.length - MESSAGE_HEADROOM;
    msg[FRAME_HEADER_BYTES] = 0;
    msg.writeUInt32BE(bodyBytes, FRAME_HEADER_BYTES + 1);
    const dataBytes = msg.length - FRAME_HEADER_BYTES;
    if (this.pendingBytes === 0 && dataBytes <= this.peerMaxFrame && dataBytes <= this.connSendWindow && dataBytes <= this.streamSendWindow) {
      // The common case: one DATA frame, its header written in place, no copy.
      writeFrameHeader(msg, 0, dataBytes, T_DATA, 0, STREAM_ID);
      this.connSendWindow -= dataBytes;
      this.streamSendWindow -= dataBytes;
      this.queue(msg);
    } else {
      this.pending.push(msg.subarray(FRAME_HEADER_BYTES));
      this.pendingBytes += dataBytes;
      this.sendPending();
    }
    if (this.pendingBytes > 0 || this.socketBlocked) {
      this.wantDrain = true;
      return false;
    }
    return true;
  }

  /** Half-closes the request side once everything written has been sent. */
  end(): void {
    if (this.finished || this.endQueued) return;
    this.endQueued = true;
    this.sendPending();
  }

  /** Abandons the call: RST_STREAM CANCEL, the connection closed, end() reported CANCELLED. */
  cancel(details = 'Cancelled on client'): void {
    if (this.finished) return;
    this.queue(frame(T_RST_STREAM, 0, STREAM_ID, u32(H2_CANCEL)));
    this.finish({ code: GrpcCode.CANCELLED, details });
  }

  // ---- sending ----

  /** Sends what the windows allow of the pending bytes, then the half-close once none are left. */
  private sendPending(): void {
    while (this.pendingBytes > 0 && !this.dead) {
      const n = Math.min(this.pendingBytes, this.connSendWindow, this.streamSendWindow, this.peerMaxFrame);
      if (n <= 0) break;
      const head = this.pending[this.pendingHead]!;
      const left = head.length - this.pendingOffset;
      if (left >= n) {
        // The frame's payload is a slice of one message: a header and a view, copied once by flush().
        const h = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
        writeFrameHeader(h, 0, n, T_DATA, 0, STREAM_ID);
        this.queue(h);
        this.queue(head.subarray(this.pendingOffset, this.pendingOffset + n));
        this.consumed(n);
      } else {
        const f = Buffer.allocUnsafe(FRAME_HEADER_BYTES + n);
        writeFrameHeader(f, 0, n, T_DATA, 0, STREAM_ID);
        let at = FRAME_HEADER_BYTES;
        while (at < f.length) {
          const b = this.pending[this.pendingHead]!;
          const take = Math.min(b.length - this.pendingOffset, f.length - at);
          b.copy(f, at, this.pendingOffset, this.pendingOffset + take);
          at += take;
          this.consumed(take);
        }
        this.queue(f);
      }
      this.connSendWindow -= n;
      this.streamSendWindow -= n;
    }
    if (this.pendingBytes === 0 && this.endQueued && !this.endSent && !this.dead) {
      this.endSent = true;
      this.queue(frame(T_DATA, F_END_STREAM, STREAM_ID, undefined));
    }
    this.maybeDrain();
  }

  /** `n` bytes of the head of pending went into a frame. */
  private consumed(n: number): void {
    this.pendingOffset += n;
    this.pendingBytes -= n;
    if (this.pendingOffset === this.pending[this.pendingHead]!.length) {
      this.pending[this.pendingHead] = EMPTY;
      this.pendingHead++;
      this.pendingOffset = 0;
      if (this.pendingHead === this.pending.length) {
        this.pending = [];
        this.pendingHead = 0;
      }
    }
  }

  private maybeDrain(): void {
    if (!this.wantDrain || this.pendingBytes > 0 || this.socketBlocked || this.finished) return;
    this.wantDrain = false;
    this.events.drain();
  }

  private onSocketDrain(): void {
    this.socketBlocked = false;
    this.maybeDrain();
  }

  private queue(f: Buffer): void {
    if (this.dead) return;
    this.out.push(f);
    this.outBytes += f.length;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // After the current callback and its microtasks (the transport flushes its peers in a
      // microtask): a turn's frames go out in one socket write.
      process.nextTick(() => this.flush());
    }
  }

  /** Writes what is queued to the socket now instead of after the current callback (the raft
   *  stream's batches: Transport.send). The scheduled flush then finds nothing, or what was
   *  queued since. */
  flushNow(): void {
    if (this.flushScheduled) this.flush();
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.out.length === 0 || this.socket.destroyed) {
      this.out = [];
      this.outBytes = 0;
      return;
    }
    const out = this.out;
    const bytes = this.outBytes;
    this.out = [];
    this.outBytes = 0;
    if (LAT_TRACE) latStamp('cwr', this.socket.remotePort ?? 0, bytes);
    let ok: boolean;
    if (out.length === 1) ok = this.socket.write(out[0]!);
    else if (bytes <= CONCAT_BYTES_MAX) ok = this.socket.write(Buffer.concat(out, bytes));
    else {
      // Frames of a large message (headers and views into it): one writev, not a copy.
      this.socket.cork();
      ok = true;
      for (const b of out) ok = this.socket.write(b);
      this.socket.uncork();
    }
    if (!ok) this.socketBlocked = true;
  }

  private keepalivePing(): void {
    if (this.dead || this.pingTimer !== undefined) return;
    this.queue(frame(T_PING, 0, 0, KEEPALIVE_PING_DATA));
    this.pingTimer = setTimeout(() => {
      this.pingTimer = undefined;
      this.log.debug('peer connection: keepalive PING not answered', { host: this.opts.host, port: this.opts.port, timeout_ms: this.opts.keepaliveTimeoutMs });
      this.finish({ code: GrpcCode.UNAVAILABLE, details: `keepalive PING not answered within ${this.opts.keepaliveTimeoutMs} ms` });
      this.socket.destroy();
    }, this.opts.keepaliveTimeoutMs);
    this.pingTimer.unref();
  }

  // ---- receiving ----

  private onBytes(chunk: Buffer): void {
    if (LAT_TRACE) latStamp('crd', this.socket.remotePort ?? 0, chunk.length);
    if (this.dead) return;
    try {
      this.reader.read(chunk);
    } catch (err) {
      if (err instanceof H2ConnectionError) return this.fail(err.h2code, err.message);
      if (err instanceof AssertionError) throw err;
      this.log.error('peer connection: HTTP/2 client failed', { host: this.opts.host, port: this.opts.port, error: err instanceof Error ? err.message : String(err), stack: err instanceof Error ? err.stack : undefined });
      this.fail(H2_INTERNAL_ERROR, 'internal error');
    }
  }

  private onFrame(type: number, flags: number, streamId: number, payload: Buffer): void {
    if (!this.settingsSeen) {
      if (type !== T_SETTINGS || (flags & F_ACK) !== 0) throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'the server\'s first frame is not SETTINGS');
      this.settingsSeen = true;
    }
    if (this.block && (type !== T_CONTINUATION || streamId !== STREAM_ID)) throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'header block interrupted');
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
      case T_RST_STREAM: {
        if (streamId === 0) throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'RST_STREAM on stream 0');
        if (payload.length !== 4) throw new H2ConnectionError(H2_FRAME_SIZE_ERROR, 'RST_STREAM of the wrong size');
        if (streamId !== STREAM_ID) throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'RST_STREAM on an idle stream');
        const code = payload.readUInt32BE(0);
        return this.finish({ code: statusOfReset(code), details: `stream reset by the server (HTTP/2 error code ${code})` });
      }
      case T_SETTINGS:
        return this.onSettings(flags, streamId, payload);
      case T_PUSH_PROMISE:
        throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'PUSH_PROMISE with push disabled');
      case T_PING:
        if (streamId !== 0) throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'PING on a stream');
        if (payload.length !== 8) throw new H2ConnectionError(H2_FRAME_SIZE_ERROR, 'PING of the wrong size');
        if (flags & F_ACK) {
          if (this.pingTimer !== undefined && payload.equals(KEEPALIVE_PING_DATA)) {
            clearTimeout(this.pingTimer);
            this.pingTimer = undefined;
          }
          return;
        }
        if (this.socket.writableLength > CONTROL_BACKLOG_MAX) throw new H2ConnectionError(H2_ENHANCE_YOUR_CALM, 'PINGs from a server that does not read');
        this.queue(frame(T_PING, F_ACK, 0, payload));
        return;
      case T_GOAWAY:
        return this.onGoAway(streamId, payload);
      case T_WINDOW_UPDATE:
        return this.onWindowUpdate(streamId, payload);
      default:
        return; // PRIORITY and unknown frame types are ignored (RFC 9113 §4.1, §5.3.2)
    }
  }

  private onData(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'DATA on stream 0');
    if (streamId !== STREAM_ID) throw new H2ConnectionError(H2_PROTOCOL_ERROR, `DATA on idle stream ${streamId}`);
    this.connRecvWindow -= payload.length;
    if (this.connRecvWindow < 0) throw new H2ConnectionError(H2_FLOW_CONTROL_ERROR, 'DATA above the connection window');
    this.streamRecvWindow -= payload.length;
    if (this.streamRecvWindow < 0) throw new H2ConnectionError(H2_FLOW_CONTROL_ERROR, 'DATA above the stream window');
    if (flags & F_PADDED) {
      if (payload.length < 1 || payload[0]! >= payload.length) throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'DATA padding exceeds the frame');
    }
    // The response message (an empty StreamResponse) is not looked at; its bytes are credited to
    // the connection, never to the stream (RFC 9113 §6.9: a server cannot send more than the
    // stream's window).
    this.connUncredited += payload.length;
    if (this.connUncredited >= CONN_CREDIT_BYTES) {
      this.queue(frame(T_WINDOW_UPDATE, 0, 0, u32(this.connUncredited)));
      this.connRecvWindow += this.connUncredited;
      this.connUncredited = 0;
    }
    if (this.finished) return;
    if (!this.responded) throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'DATA before response headers');
    if (flags & F_END_STREAM) this.finish({ code: GrpcCode.INTERNAL, details: 'the server ended the stream without trailers' });
  }

  private onHeaders(flags: number, streamId: number, payload: Buffer): void {
    if (streamId !== STREAM_ID) throw new H2ConnectionError(H2_PROTOCOL_ERROR, `HEADERS on stream ${streamId}`);
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
    this.block = { endStream: (flags & F_END_STREAM) !== 0, parts: [], bytes: 0 };
    this.addFragment(p.subarray(0, p.length - pad));
    if (flags & F_END_HEADERS) this.endBlock();
  }

  private addFragment(b: Buffer): void {
    const blk = this.block!;
    blk.bytes += b.length + FRAME_HEADER_BYTES;
    if (blk.bytes > HEADER_LIST_BYTES_MAX) throw new H2ConnectionError(H2_ENHANCE_YOUR_CALM, `header block above ${HEADER_LIST_BYTES_MAX} bytes`);
    blk.parts.push(b);
  }

  private endBlock(): void {
    const blk = this.block!;
    this.block = undefined;
    try {
      this.hpack.decode(blk.parts.length === 1 ? blk.parts[0]! : Buffer.concat(blk.parts));
    } catch (err) {
      if (!(err instanceof HpackError)) throw err;
      throw new H2ConnectionError(H2_COMPRESSION_ERROR, `HPACK: ${err.message}`);
    }
    if (this.finished) return;
    if (this.hpack.listTooLarge) return this.finish({ code: GrpcCode.INTERNAL, details: `response header list above ${HEADER_LIST_BYTES_MAX} bytes` });
    const fields = new Map<string, string>();
    for (let i = 0; i < this.hpack.count; i++) if (!fields.has(this.hpack.names[i]!)) fields.set(this.hpack.names[i]!, this.hpack.values[i]!);
    const grpcStatus = fields.get('grpc-status');
    if (!this.responded) {
      this.responded = true;
      const httpStatus = fields.get(':status') ?? '';
      if (httpStatus !== '200') {
        const code = grpcStatus !== undefined ? Number(grpcStatus) : statusOfHttp(httpStatus);
        return this.finish({ code: validCode(code), details: decodeGrpcMessage(fields.get('grpc-message')) || `received HTTP status ${httpStatus}` });
      }
      if (!blk.endStream) {
        this.events.ready();
        return;
      }
    } else if (!blk.endStream) {
      throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'a second header block without END_STREAM');
    }
    // Trailers, or a trailers-only answer.
    if (grpcStatus === undefined) return this.finish({ code: GrpcCode.UNKNOWN, details: 'the server\'s trailers have no grpc-status' });
    this.finish({ code: validCode(Number(grpcStatus)), details: decodeGrpcMessage(fields.get('grpc-message')) });
  }

  private onSettings(flags: number, streamId: number, payload: Buffer): void {
    if (streamId !== 0) throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'SETTINGS on a stream');
    if (flags & F_ACK) {
      if (payload.length !== 0) throw new H2ConnectionError(H2_FRAME_SIZE_ERROR, 'SETTINGS ACK with a payload');
      return;
    }
    if (payload.length % 6 !== 0) throw new H2ConnectionError(H2_FRAME_SIZE_ERROR, 'SETTINGS of the wrong size');
    if (this.socket.writableLength > CONTROL_BACKLOG_MAX) throw new H2ConnectionError(H2_ENHANCE_YOUR_CALM, 'SETTINGS from a server that does not read');
    for (let off = 0; off < payload.length; off += 6) {
      const id = payload.readUInt16BE(off);
      const value = payload.readUInt32BE(off + 2);
      if (id === S_INITIAL_WINDOW_SIZE) {
        if (value > MAX_WINDOW) throw new H2ConnectionError(H2_FLOW_CONTROL_ERROR, 'SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1');
        this.streamSendWindow += value - this.peerInitialWindow;
        this.peerInitialWindow = value;
        if (this.streamSendWindow > MAX_WINDOW) throw new H2ConnectionError(H2_FLOW_CONTROL_ERROR, 'the stream window above 2^31-1');
      } else if (id === S_MAX_FRAME_SIZE) {
        if (value < DEFAULT_MAX_FRAME || value > MAX_FRAME_SIZE_LIMIT) throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'SETTINGS_MAX_FRAME_SIZE out of range');
        this.peerMaxFrame = value;
      } else if (id === S_ENABLE_PUSH && value !== 0) {
        throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'SETTINGS_ENABLE_PUSH from a server');
      }
      // SETTINGS_HEADER_TABLE_SIZE: our blocks never use the dynamic table; the rest are limits
      // of a server's own (concurrent streams: we open one).
    }
    this.queue(frame(T_SETTINGS, F_ACK, 0, undefined));
    this.sendPending();
  }

  private onWindowUpdate(streamId: number, payload: Buffer): void {
    if (payload.length !== 4) throw new H2ConnectionError(H2_FRAME_SIZE_ERROR, 'WINDOW_UPDATE of the wrong size');
    const inc = payload.readUInt32BE(0) & 0x7fffffff;
    if (streamId === 0) {
      if (inc === 0) throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'WINDOW_UPDATE of 0');
      this.connSendWindow += inc;
      if (this.connSendWindow > MAX_WINDOW) throw new H2ConnectionError(H2_FLOW_CONTROL_ERROR, 'connection window above 2^31-1');
    } else {
      if (streamId !== STREAM_ID) throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'WINDOW_UPDATE on an idle stream');
      if (this.finished) return;
      // Stream errors (RFC 9113 §6.9, §6.9.1) end the call: it is our only stream.
      if (inc === 0) throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'stream WINDOW_UPDATE of 0');
      this.streamSendWindow += inc;
      if (this.streamSendWindow > MAX_WINDOW) throw new H2ConnectionError(H2_FLOW_CONTROL_ERROR, 'stream window above 2^31-1');
    }
    if (this.pendingBytes > 0 || (this.endQueued && !this.endSent)) this.sendPending();
  }

  private onGoAway(streamId: number, payload: Buffer): void {
    if (streamId !== 0) throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'GOAWAY on a stream');
    if (payload.length < 8) throw new H2ConnectionError(H2_FRAME_SIZE_ERROR, 'GOAWAY of the wrong size');
    const lastStreamId = payload.readUInt32BE(0) & 0x7fffffff;
    const code = payload.readUInt32BE(4);
    const debug = payload.subarray(8, 8 + 256).toString('latin1');
    // A graceful GOAWAY that covers our stream lets it run to its end (the server answers it);
    // otherwise the stream was not taken, or the connection is failing.
    if (lastStreamId >= STREAM_ID && code === H2_NO_ERROR) return;
    const details = `the server sent GOAWAY (HTTP/2 error code ${code}${debug ? `: ${debug}` : ''})`;
    this.finish({ code: code === H2_NO_ERROR || code === H2_ENHANCE_YOUR_CALM ? GrpcCode.UNAVAILABLE : GrpcCode.INTERNAL, details });
  }

  // ---- ending ----

  /** A connection error found by us: GOAWAY with `h2code`, the call ends INTERNAL. */
  private fail(h2code: number, reason: string): void {
    if (this.dead) return;
    this.log.warn('peer connection: HTTP/2 protocol error; closing it', { host: this.opts.host, port: this.opts.port, h2code, reason });
    this.finish({ code: GrpcCode.INTERNAL, details: `HTTP/2 connection error: ${reason}` }, h2code, reason);
  }

  /** The socket failed or closed. */
  private gone(reason: string): void {
    this.finish({ code: GrpcCode.UNAVAILABLE, details: reason });
    this.dead = true;
    this.out = [];
    this.outBytes = 0;
  }

  /** Ends the call once: the connection is closed with GOAWAY (`h2code`, `reason`) after what is
   *  queued, the status reported in a later tick. */
  private finish(status: H2CallStatus, h2code = H2_NO_ERROR, reason = ''): void {
    if (this.finished) return;
    this.finished = true;
    this.pending = [];
    this.pendingBytes = 0;
    clearInterval(this.keepaliveTimer);
    clearTimeout(this.pingTimer);
    this.pingTimer = undefined;
    if (!this.dead) {
      this.queue(frame(T_GOAWAY, 0, 0, Buffer.concat([u32(0), u32(h2code), Buffer.from(reason, 'latin1')])));
      this.flush();
      this.dead = true;
      this.socket.end();
      setTimeout(() => this.socket.destroy(), CLOSE_LINGER_MS).unref();
    }
    process.nextTick(() => this.events.end(status));
  }
}

const EMPTY = Buffer.alloc(0);

function validCode(n: number): GrpcCode {
  return Number.isInteger(n) && n >= 0 && n <= 16 ? (n as GrpcCode) : GrpcCode.UNKNOWN;
}
