// The client port's gRPC server: gRPC's HTTP/2 mapping served on our own HTTP/2 framing
// (h2_conn.ts).
//
// Why not grpc-js's Server: on this machine a trivial unary method behind grpc-js's server costs
// about 47 µs of event-loop time per call against 29 µs on bare node:http2 (etcd's benchmark,
// 100 clients: 21k vs 34k calls/s); its interceptor chain, per-call metadata objects, deadline
// timers and message decoder are the difference. And node:http2 itself costs a stream object
// and nghttp2's C++ per call, and sends trailers a loop turn after the data (h2_conn.ts). A
// member's loop is its bottleneck (docs/performance.md), so the client port speaks gRPC and
// HTTP/2 itself. The peer port and every client we dial (forwarding to the leader, the peer
// transport) still use grpc-js.
//
// What it implements (the gRPC-over-HTTP/2 protocol, as grpc-go and grpc-js servers answer it):
//   - routes by :path to the method tables of the service definitions (the same ones grpc-js
//     used: @grpc/proto-loader's serializers), UNIMPLEMENTED for unknown methods;
//   - length-prefixed messages, with gzip/deflate-compressed ones accepted (grpc-encoding);
//     messages above the receive limit are refused with RESOURCE_EXHAUSTED;
//   - unary, server-streaming, client-streaming and bidi calls. Unary handlers get grpc-js's
//     (call, callback) shape; streaming calls are object-mode Duplex streams as in grpc-js
//     (write/end/'data'/'end'/'drain'/'cancelled', emit('error', status) ends the call with that
//     status), so the service code is the same for both servers;
//   - statuses as trailers (grpc-status, grpc-message), trailers-only when no message was sent;
//   - request metadata as a grpc.Metadata, built only when a handler asks for it;
//   - a client that resets its stream or drops the connection cancels the call ('cancelled').
// Not implemented: server-side deadlines (grpc-timeout is not enforced: etcd answers or times out
// requests itself) and response compression (responses are sent uncompressed, which every client
// accepts).
import { Duplex } from 'node:stream';
import { EventEmitter } from 'node:events';
import zlib from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { GrpcCode } from '../util/errors';
import { toStatus } from '../api/errors';
import { H2ServerConnection, encodeHeaderBlock, type H2Headers, type H2ServerStream } from './h2_conn';

export interface CallStatus {
  code: number;
  details?: string;
  message?: string;
  metadata?: grpc.Metadata | null;
}

export interface H2GrpcServerOptions {
  /** Largest request message accepted (bytes, after decompression). */
  maxReceiveBytes: number;
  /** Every call as it starts (by its :path); the function returned is called once with its final
   *  status code (CANCELLED if the client went away). The member's gRPC metrics. */
  onCallStart?(path: string): ((code: number) => void) | undefined;
  /** Every call's metadata once built (client-certificate CN: src/tls/identity.ts), with the
   *  connection's socket. */
  onMetadata?(md: grpc.Metadata, socket: { localAddress?: string; localPort?: number; remoteAddress?: string; remotePort?: number } | undefined): void;
}

type MethodDef = grpc.MethodDefinition<unknown, unknown>;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyHandler = (...args: any[]) => void;

interface Route {
  def: MethodDef;
  handler: AnyHandler;
}

const GRPC_STATUS = 'grpc-status';
const GRPC_MESSAGE = 'grpc-message';
const RESPONSE_FIELDS: [string, string][] = [[':status', '200'], ['content-type', 'application/grpc+proto']];
const RESPONSE_BLOCK = encodeHeaderBlock(RESPONSE_FIELDS);
const OK_TRAILERS_BLOCK = encodeHeaderBlock([[GRPC_STATUS, '0']]);
const MESSAGE_HEADER_BYTES = 5;
/** Response bytes a streaming call may have queued in HTTP/2 before its writes wait (backpressure). */
export const SEND_BUFFER_BYTES = 1024 * 1024;
/** Largest request header list we take (as node:http2's maxHeaderListSize before). */
const MAX_HEADER_LIST_BYTES = 1024 * 1024;
/** Headers grpc-js also leaves out of a call's metadata (transport-level, not the client's). */
const TRANSPORT_HEADERS = ['grpc-timeout', 'grpc-encoding', 'grpc-accept-encoding', 'content-type', 'te', 'user-agent'];

/** Prefixes a serialized message with gRPC's 5-byte header (uncompressed). */
export function frameMessage(body: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(MESSAGE_HEADER_BYTES + body.length);
  out[0] = 0;
  out.writeUInt32BE(body.length, 1);
  out.set(body, MESSAGE_HEADER_BYTES);
  return out;
}

/** A status given as one (services pass toStatus() results), else toStatus's INTERNAL. */
function statusOf(err: unknown): CallStatus {
  if (err && typeof err === 'object' && typeof (err as CallStatus).code === 'number') return err as CallStatus;
  return toStatus(err);
}

function unmarshalError(err: unknown): CallStatus {
  return { code: GrpcCode.INTERNAL, details: `grpc: error unmarshalling request: ${err instanceof Error ? err.message : String(err)}` };
}

/** A grpc.Metadata as header fields (binary values base64, as grpc-js sends them). */
function metadataFields(md: grpc.Metadata): [string, string][] {
  const out: [string, string][] = [];
  for (const [name, v] of Object.entries(md.toHttp2Headers())) {
    if (v === undefined) continue;
    for (const one of Array.isArray(v) ? v : [v]) out.push([name, String(one)]);
  }
  return out;
}

function trailerFields(st: CallStatus): [string, string][] {
  const details = st.details ?? st.message ?? '';
  const t: [string, string][] = [[GRPC_STATUS, String(st.code)]];
  if (details) t.push([GRPC_MESSAGE, encodeURI(details)]);
  if (st.metadata) t.push(...metadataFields(st.metadata));
  return t;
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
        if (len > this.maxBytes) throw { code: GrpcCode.RESOURCE_EXHAUSTED, details: `grpc: received message larger than max (${len} vs. ${this.maxBytes})` };
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
      else throw { code: GrpcCode.UNIMPLEMENTED, details: `grpc: Decompressor is not installed for grpc-encoding "${this.encoding ?? 'identity'}"` };
    } catch (err) {
      if (err && typeof err === 'object' && 'code' in err && typeof (err as CallStatus).code === 'number') throw err;
      if (err instanceof RangeError) throw { code: GrpcCode.RESOURCE_EXHAUSTED, details: `grpc: received message after decompression larger than max (${this.maxBytes})` };
      throw { code: GrpcCode.INTERNAL, details: `grpc: failed to decompress the received message: ${err instanceof Error ? err.message : String(err)}` };
    }
    if (out.length > this.maxBytes) throw { code: GrpcCode.RESOURCE_EXHAUSTED, details: `grpc: received message after decompression larger than max (${out.length} vs. ${this.maxBytes})` };
    return out;
  }
}

/** What every call shares: the stream, its request headers, the final status (sent once). */
class CallCore {
  finished = false;
  headersSent = false;
  cancelled = false;
  private md: grpc.Metadata | undefined;
  private readonly end: ((code: number) => void) | undefined;

  constructor(
    readonly server: H2GrpcServer,
    readonly stream: H2ServerStream,
    readonly headers: H2Headers,
    readonly path: string,
  ) {
    this.end = server.opts.onCallStart?.(path);
  }

  get metadata(): grpc.Metadata {
    if (this.md === undefined) {
      const h: H2Headers = {};
      for (const k of Object.keys(this.headers)) {
        if (k.charCodeAt(0) === 58 /* ':' */ || TRANSPORT_HEADERS.includes(k)) continue;
        h[k] = this.headers[k];
      }
      this.md = grpc.Metadata.fromHttp2Headers(h);
      this.server.opts.onMetadata?.(this.md, this.stream.socket);
    }
    return this.md;
  }

  getPeer(): string {
    const s = this.stream.socket;
    if (!s.remoteAddress) return 'unknown';
    return s.remotePort ? `${s.remoteAddress}:${s.remotePort}` : s.remoteAddress;
  }

  get writable(): boolean {
    return !this.stream.closed && !this.stream.localEnded;
  }

  sendHeaders(md?: grpc.Metadata): void {
    if (this.headersSent || !this.writable) return;
    this.headersSent = true;
    this.stream.respond(md ? encodeHeaderBlock([...RESPONSE_FIELDS, ...metadataFields(md)]) : RESPONSE_BLOCK, false);
  }

  /** Ends the call with `st` (after any messages written); only the first status counts. A call
   *  ended before the client half-closed (a bad or unexpected message) also stops reading: the
   *  HTTP/2 stream is then reset with NO_ERROR once the status is out (h2_conn.ts localEnd). */
  finish(st: CallStatus): void {
    if (this.finished) return;
    this.finished = true;
    this.end?.(st.code);
    if (!this.writable) return;
    if (!this.headersSent) {
      // Trailers-only: the status goes in the one HEADERS frame.
      this.headersSent = true;
      this.stream.respond(encodeHeaderBlock([...RESPONSE_FIELDS, ...trailerFields(st)]), true);
      return;
    }
    this.stream.end(st.code === 0 && !st.details && !st.metadata ? OK_TRAILERS_BLOCK : encodeHeaderBlock(trailerFields(st)));
  }

  /** One unary response: headers, the message, OK trailers. */
  finishWith(body: Buffer): void {
    if (this.finished) return;
    this.finished = true;
    this.end?.(0);
    if (!this.writable) return;
    this.sendHeaders();
    this.stream.write(body, SEND_BUFFER_BYTES);
    this.stream.end(OK_TRAILERS_BLOCK);
  }

  /** The client reset the stream or went away before the call ended. */
  markCancelled(): boolean {
    if (this.finished) return false;
    this.finished = true;
    this.cancelled = true;
    this.end?.(GrpcCode.CANCELLED);
    return true;
  }
}

/** What grpc-js's server calls offer besides reading and writing, shared by both call shapes below
 *  (their base classes differ: EventEmitter and Duplex). */
interface CallSurface {
  readonly metadata: grpc.Metadata;
  readonly cancelled: boolean;
  getPeer(): string;
  getDeadline(): number;
  getPath(): string;
  sendMetadata(md: grpc.Metadata): void;
}

const CALL_SURFACE: CallSurface & ThisType<{ core: CallCore }> = {
  get metadata(): grpc.Metadata {
    return this.core.metadata;
  },
  get cancelled(): boolean {
    return this.core.cancelled;
  },
  getPeer(): string {
    return this.core.getPeer();
  },
  getDeadline(): number {
    return Infinity;
  },
  getPath(): string {
    return this.core.path;
  },
  sendMetadata(md: grpc.Metadata): void {
    this.core.sendHeaders(md);
  },
};

/** A unary (or the request side of a server-streaming) call, shaped like grpc-js's ServerUnaryCall. */
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
interface UnaryCall extends CallSurface {}
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
class UnaryCall extends EventEmitter {
  request: unknown;

  constructor(readonly core: CallCore) {
    super();
  }
}

/** A streaming call, shaped like grpc-js's ServerDuplexStream: an object-mode Duplex whose readable
 *  side yields requests and whose writable side sends responses. */
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
interface StreamCall extends CallSurface {}
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
class StreamCall extends Duplex {
  request: unknown;
  /** A Uint8Array written is sent as an already encoded message (watch fan-out: watch_encoding.ts). */
  readonly acceptsEncoded = true;

  constructor(
    readonly core: CallCore,
    private readonly serialize: (v: unknown) => Buffer,
  ) {
    super({ objectMode: true, writableHighWaterMark: 16, readableHighWaterMark: 16 });
    // grpc-js's convention, which the services use: emit('error', status) ends the call with it.
    this.on('error', (err) => this.core.finish(statusOf(err)));
  }

  override _read(): void {
    if (this.core.stream.isPaused) this.core.stream.resume();
  }

  override _write(msg: unknown, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this._writev([{ chunk: msg }], cb);
  }

  override _writev(chunks: { chunk: unknown }[], cb: (err?: Error | null) => void): void {
    const core = this.core;
    if (core.finished || !core.writable) return cb();
    let out: Buffer;
    try {
      if (chunks.length === 1) out = frameMessage(this.encode(chunks[0]!.chunk));
      else out = Buffer.concat(chunks.map((c) => frameMessage(this.encode(c.chunk))));
    } catch (err) {
      core.finish({ code: GrpcCode.INTERNAL, details: `quorumkv: could not serialize a response: ${err instanceof Error ? err.message : String(err)}` });
      return cb();
    }
    core.sendHeaders();
    // Backpressure in bytes: below SEND_BUFFER_BYTES queued (this stream's data waiting for
    // flow-control window, plus the connection's unsent bytes), the next responses are taken at
    // once; above it, only once the queue is back under it. (Waiting for every write would hold a
    // burst of small responses — a put seen by 100 watchers of one stream — in this stream's
    // object queue, and the watch service would take the stream for a slow one.)
    const h2 = core.stream;
    if (h2.write(out, SEND_BUFFER_BYTES)) cb();
    else h2.whenDrained(() => cb(), SEND_BUFFER_BYTES);
  }

  private encode(msg: unknown): Uint8Array {
    return msg instanceof Uint8Array ? msg : this.serialize(msg);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.core.finish({ code: 0 });
    cb();
  }

  /** Requests from the client, in order; pauses the HTTP/2 stream when nobody is reading. */
  deliver(msgs: Buffer[], deserialize: (b: Buffer) => unknown): void {
    for (const m of msgs) {
      let req: unknown;
      try {
        req = deserialize(m);
      } catch (err) {
        return this.core.finish(unmarshalError(err));
      }
      if (!this.push(req)) this.core.stream.pause();
    }
  }
}

for (const C of [UnaryCall, StreamCall]) Object.defineProperties(C.prototype, Object.getOwnPropertyDescriptors(CALL_SURFACE));

export class H2GrpcServer {
  private readonly routes = new Map<string, Route>();
  private readonly connections = new Set<H2ServerConnection>();
  private closed = false;

  constructor(readonly opts: H2GrpcServerOptions) {}

  /** Registers every method of a service (as grpc.Server.addService). */
  addService(def: grpc.ServiceDefinition, impl: Record<string, AnyHandler>): void {
    for (const [name, m] of Object.entries(def)) {
      const handler = impl[name] ?? impl[(m as { originalName?: string }).originalName ?? ''];
      if (!handler) throw new Error(`no handler for ${m.path}`);
      if (this.routes.has(m.path)) throw new Error(`method ${m.path} registered twice`);
      this.routes.set(m.path, { def: m as MethodDef, handler });
    }
  }

  /** Takes over one client connection (a socket routed by its HTTP/2 preface; the bytes read so
   *  far put back). */
  injectConnection(conn: Duplex): void {
    if (this.closed) return void conn.destroy();
    let c: H2ServerConnection;
    try {
      c = new H2ServerConnection(conn, (s) => this.onStream(s), { maxHeaderListBytes: MAX_HEADER_LIST_BYTES });
    } catch {
      return void conn.destroy();
    }
    this.connections.add(c);
    c.onGone = () => this.connections.delete(c);
  }

  /** Asks every connection to finish its calls (GOAWAY), and cuts them all after `graceMs`. */
  async close(graceMs: number): Promise<void> {
    this.closed = true;
    for (const c of [...this.connections]) c.goAway();
    const deadline = Date.now() + graceMs;
    while (this.connections.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    this.destroy();
  }

  /** Cuts every connection now. */
  destroy(): void {
    this.closed = true;
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
    const core = new CallCore(this, stream, headers, typeof path === 'string' ? path : '');
    const route = this.routes.get(core.path);
    if (!route) return void core.finish({ code: GrpcCode.UNIMPLEMENTED, details: `unknown method ${core.path}` });
    const encoding = headers['grpc-encoding'];
    const reader = new MessageReader(this.opts.maxReceiveBytes, typeof encoding === 'string' && encoding !== 'identity' ? encoding : undefined);
    const def = route.def;
    if (!def.requestStream) this.unaryRequest(core, route, reader);
    else this.streamingRequest(core, route, reader);
  }

  /** Unary and server-streaming: one request message, then the handler. */
  private unaryRequest(core: CallCore, route: Route, reader: MessageReader): void {
    const def = route.def;
    let call: UnaryCall | StreamCall | undefined;
    let got = 0;
    this.readMessages(core, reader, (msgs) => {
      got += msgs.length;
      if (got > 1) return core.finish({ code: GrpcCode.UNIMPLEMENTED, details: `grpc: a second request message on unary method ${core.path}` });
      let req: unknown;
      try {
        req = def.requestDeserialize(msgs[0]!);
      } catch (err) {
        return core.finish(unmarshalError(err));
      }
      if (!def.responseStream) {
        const c = new UnaryCall(core);
        call = c;
        c.request = req;
        route.handler(c, (err: unknown, value: unknown) => this.reply(core, def, err, value));
      } else {
        const c = new StreamCall(core, def.responseSerialize as (v: unknown) => Buffer);
        call = c;
        c.request = req;
        c.push(null);
        route.handler(c);
      }
    });
    core.stream.onEnd = () => {
      if (got === 0 && !core.finished) core.finish({ code: GrpcCode.INTERNAL, details: reader.partial ? 'grpc: the request ended inside a message' : `grpc: no request message on unary method ${core.path}` });
    };
    this.onGone(core, () => call);
  }

  /** Feeds the request body to `reader` and whole messages to `onMessages`; a message the reader
   *  refuses (too large, bad compression) ends the call. */
  private readMessages(core: CallCore, reader: MessageReader, onMessages: (msgs: Buffer[]) => void): void {
    const msgs: Buffer[] = [];
    core.stream.onData = (chunk: Buffer) => {
      if (core.finished) return;
      try {
        reader.push(chunk, msgs);
      } catch (err) {
        return core.finish(statusOf(err));
      }
      if (msgs.length > 0) onMessages(msgs.splice(0));
    };
  }

  /** The client reset the stream, the connection dropped, or the stream closed: a call still
   *  running is cancelled; a streaming call's Duplex is destroyed either way. */
  private onGone(core: CallCore, callOf: () => UnaryCall | StreamCall | undefined): void {
    core.stream.onClose = () => {
      const call = callOf();
      if (core.markCancelled() && call) call.emit('cancelled', 'cancelled');
      if (call instanceof StreamCall) call.destroy();
    };
  }

  private reply(core: CallCore, def: MethodDef, err: unknown, value: unknown): void {
    if (core.finished) return;
    if (err) return core.finish(statusOf(err));
    let body: Buffer;
    try {
      body = frameMessage(def.responseSerialize(value));
    } catch (e) {
      return core.finish({ code: GrpcCode.INTERNAL, details: `quorumkv: could not serialize the response: ${e instanceof Error ? e.message : String(e)}` });
    }
    core.finishWith(body);
  }

  /** Client-streaming and bidi: the handler starts at once; requests flow as they arrive. */
  private streamingRequest(core: CallCore, route: Route, reader: MessageReader): void {
    const def = route.def;
    const call = new StreamCall(core, def.responseSerialize as (v: unknown) => Buffer);
    this.readMessages(core, reader, (msgs) => call.deliver(msgs, def.requestDeserialize as (b: Buffer) => unknown));
    core.stream.onEnd = () => {
      if (!core.finished) call.push(null);
    };
    this.onGone(core, () => call);
    if (!def.responseStream) route.handler(call, (err: unknown, value: unknown) => this.reply(core, def, err, value));
    else route.handler(call);
  }
}
