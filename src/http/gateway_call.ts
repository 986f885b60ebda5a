// The JSON gateway's calls: one HTTP request/response pair seen as the call of src/api/call.ts, so
// that the etcd services serve it with the very handlers the gRPC server runs. This file is the
// whole adaptation (gateway.ts routes, reads and decodes requests):
//
//   unary:     respond(message) → 200 and one JSON object; fail(status) → grpc-gateway v1's error
//              body {"error", "message", "code"} under the status's HTTP code;
//   streaming: each response is one line {"result": {...}}\n (etcd's framing); fail(status) ends
//              the stream with {"error": {"grpc_code", "http_code", "message", "http_status"}};
//              responses given already encoded are decoded to print them;
//   metadata:  only `token`, from the Authorization header (etcd's gateway forwards it so);
//   cancelled: the HTTP client went away before the call ended (the response 'close').
// Response → JSON: the method's responseSerialize → decode → proto3 JSON (json_pb.ts), so the
// gateway shows exactly what a gRPC client receives.
import type http from 'node:http';
import type * as grpc from '@grpc/grpc-js';
import type protobuf from 'protobufjs';
import type { BidiListener, ServerStreamCall, Status, StreamListener, UnaryCall } from '../api/call';
import type { MessagePartWriter } from '../grpcserver/call';
import { assert, rethrowIfAssertion } from '../util/assert';
import { GrpcCode } from '../util/errors';
import { messageOut } from './json_pb';
import { PartsToJson } from './json_parts';
import { httpStatusOf } from './routes';

/** A method the gateway serves: its gRPC definition and the protobufjs types of its messages. */
export interface GatewayMethod {
  readonly def: grpc.MethodDefinition<unknown, unknown>;
  readonly reqType: protobuf.Type;
  readonly resType: protobuf.Type;
  /** "etcdserverpb.KV/Range". */
  readonly fullName: string;
}

/** What a call needs of the gateway that made it. */
export interface GatewayCallOwner {
  /** A call starts (the member's gRPC metrics); the function returned gets its final code. */
  start(method: GatewayMethod): (code: number) => void;
  /** An unexpected failure of a call (a status's cause, a handler that threw): logged. */
  reportInternal(method: GatewayMethod, err: unknown): void;
  /** A streaming call is over. */
  ended(call: GatewayCall): void;
}

/** Response bytes a streaming call may have queued in its HTTP response before its writes return
 *  false (as the gRPC server's SEND_BUFFER_BYTES). */
const SEND_BUFFER_BYTES = 1024 * 1024;

/** etcd answers every HTTP request with these (its CORS handler). */
export const CORS_HEADERS = {
  'Access-Control-Allow-Headers': 'accept, content-type, authorization',
  'Access-Control-Allow-Methods': 'POST, GET, OPTIONS, PUT, DELETE',
  'Access-Control-Allow-Origin': '*',
};

function statusText(http: number): string {
  return (
    { 200: 'OK', 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 408: 'Request Timeout', 409: 'Conflict', 412: 'Precondition Failed', 429: 'Too Many Requests', 500: 'Internal Server Error', 501: 'Not Implemented', 503: 'Service Unavailable', 504: 'Gateway Timeout' } as Record<number, string>
  )[http] ?? '';
}

export function sendJson(res: http.ServerResponse, status: number, body: string, close = false): void {
  if (res.headersSent || res.destroyed) return void res.end();
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), ...CORS_HEADERS, ...(close ? { Connection: 'close' } : {}) });
  res.end(body);
}

/** A unary call's (or a refused request's) error, as grpc-gateway v1 writes it. */
export function sendError(res: http.ServerResponse, st: Status, close = false): void {
  sendJson(res, httpStatusOf(st.code), JSON.stringify({ error: st.message, message: st.message, code: st.code }), close);
}

/** A handler's (or listener's) exception as the call's status: INTERNAL, the exception kept as
 *  the cause for the log. AssertionErrors are thrown on: they crash the member. */
function internal(err: unknown): Status {
  rethrowIfAssertion(err);
  return { code: GrpcCode.INTERNAL, message: `quorumkv: internal error: ${String(err)}`, cause: err };
}

/** One gateway call, whatever its method's shape (one class: the handlers' accesses stay
 *  monomorphic per transport). */
export class GatewayCall implements UnaryCall<unknown, unknown>, ServerStreamCall<unknown, unknown> {
  request: unknown = undefined;
  cancelled = false;
  finished = false;
  private listener: StreamListener | undefined = undefined;
  private readonly streaming: boolean;
  private headerWritten = false;
  /** respondInParts was called: the answer goes out in parts. */
  private partsStarted = false;
  private drainAwaited = false;
  /** The handler asked to stop receiving requests (holdRequests). */
  private requestsHeld = false;
  /** Requests delivered and responses written (the keepalive half-close waits for the answers). */
  private requests = 0;
  private responses = 0;
  private halfClosePending = false;
  private halfClosed = false;
  private readonly onFinish: (code: number) => void;
  /** Hooks to run if the HTTP client goes away before the answer; undefined once run. */
  private abandonHooks: (() => void)[] | undefined = [];

  constructor(
    private readonly owner: GatewayCallOwner,
    readonly method: GatewayMethod,
    private readonly req: http.IncomingMessage,
    private readonly res: http.ServerResponse,
  ) {
    this.streaming = method.def.requestStream || method.def.responseStream;
    this.onFinish = owner.start(method);
    res.once('close', () => this.gone());
  }

  onAbandoned(fn: () => void): void {
    if (this.cancelled) return fn();
    this.abandonHooks?.push(fn);
  }

  metadata(key: string): string | undefined {
    return key === 'token' ? this.req.headers.authorization || undefined : undefined;
  }

  // ---- unary ----------------------------------------------------------------------------------

  respond(message: unknown): void {
    if (this.finished) return;
    let out: string;
    try {
      out = JSON.stringify(this.toJson(message));
    } catch (err) {
      return this.fail(internal(err));
    }
    this.finished = true;
    this.onFinish(GrpcCode.OK);
    sendJson(this.res, 200, out);
  }

  /** A unary answer in parts (a large Range): each part's complete fields are converted to JSON
   *  and written as they come (json_parts.ts), chunked, with the streaming calls' back-pressure:
   *  the conversion of a large answer is spread over the turns the handler writes it in, and the
   *  member holds about SEND_BUFFER_BYTES of it. */
  respondInParts(_messageBytes: number): MessagePartWriter<Uint8Array> {
    assert(!this.partsStarted, 'gateway: respondInParts twice');
    // A call already over (the client went away) gets a writer that is over: nothing is sent.
    this.partsStarted = !this.finished;
    return new GatewayPartWriter(this, this.res, new PartsToJson(this.method.resType));
  }

  /** The JSON of a part (from GatewayPartWriter): false once SEND_BUFFER_BYTES wait. */
  writePartText(text: string): boolean {
    const res = this.res;
    if (this.partsOver) return true;
    this.head(200);
    // As bytes: http's chunked write of a string measures it (Buffer.byteLength) and then encodes
    // it, two passes over ~170 KB per slice that took a fifth of the gateway's time in a profile.
    if (text.length > 0) res.write(Buffer.from(text, 'utf8'));
    return res.writableLength < SEND_BUFFER_BYTES;
  }

  get partsOver(): boolean {
    return this.finished || this.res.destroyed || this.res.writableEnded;
  }

  /** The last of an answer in parts: the response ends with OK. */
  endParts(text: string): void {
    if (this.partsOver) return;
    this.finished = true;
    this.onFinish(GrpcCode.OK);
    this.head(200);
    this.res.end(text);
  }

  // ---- streaming ------------------------------------------------------------------------------

  write(message: unknown): boolean {
    if (this.finished) return true;
    this.responses++;
    let line: string;
    try {
      line = JSON.stringify({ result: this.toJson(message) }) + '\n';
    } catch (err) {
      this.fail(internal(err));
      return true;
    }
    return this.sendLine(line);
  }

  writeEncoded(message: Uint8Array): boolean {
    if (this.finished) return true;
    this.responses++;
    let line: string;
    try {
      line = JSON.stringify({ result: messageOut(this.method.resType, this.method.resType.decode(message)) }) + '\n';
    } catch (err) {
      this.fail(internal(err));
      return true;
    }
    return this.sendLine(line);
  }

  /** What waits in the HTTP response (and its socket) for the client to read. */
  get queuedBytes(): number {
    return this.res.destroyed ? 0 : this.res.writableLength;
  }

  end(): void {
    this.finish(undefined);
  }

  fail(status: Status): void {
    this.finish(status);
  }

  /** A streaming handler's listener (closed() at once if the client is already gone). */
  listen(l: StreamListener | void): void {
    if (!l) return;
    if (!this.res.destroyed && !this.res.writableFinished) this.listener = l;
    else if (l.closed) l.closed();
  }

  /** The next request of a bidi call (parsed from the body as it arrives). */
  pushRequest(request: unknown): void {
    if (this.finished) return;
    this.requests++;
    try {
      (this.listener as BidiListener<unknown>).message(request);
    } catch (err) {
      this.threw(err);
    }
  }

  /** Stops reading the request body (the socket is not read; TCP pushes back on the client)
   *  until releaseRequests(), as the gRPC server stops crediting a stream's window. */
  holdRequests(): void {
    this.requestsHeld = true;
    this.req.pause();
  }

  releaseRequests(): void {
    this.requestsHeld = false;
    if (!this.drainAwaited) this.req.resume();
  }

  /** The client's half-close, delivered once every request so far has had its answer: etcd's
   *  keepalive loop answers each request before it reads the end of the stream, while a handler
   *  here may still be waiting on the leader (a follower forwarding a keepalive). */
  halfCloseWhenAnswered(timeoutMs: number): void {
    if (this.responses >= this.requests) return this.halfClose();
    this.halfClosePending = true;
    setTimeout(() => this.halfClose(), timeoutMs).unref();
  }

  /** A handler or listener threw. */
  threw(err: unknown): void {
    this.fail(internal(err));
  }

  private halfClose(): void {
    if (this.halfClosed || this.finished || (!this.halfClosePending && this.responses < this.requests)) return;
    this.halfClosed = true;
    this.halfClosePending = false;
    try {
      (this.listener as BidiListener<unknown>).halfClosed();
    } catch (err) {
      this.threw(err);
    }
  }

  private toJson(message: unknown): Record<string, unknown> {
    const resType = this.method.resType;
    return messageOut(resType, resType.decode(this.method.def.responseSerialize(message)));
  }

  private head(status: number): void {
    if (this.headerWritten) return;
    this.headerWritten = true;
    this.res.writeHead(status, { 'Content-Type': 'application/json', ...CORS_HEADERS });
  }

  /** Backpressure in bytes, as the gRPC server's: writes return false once SEND_BUFFER_BYTES wait
   *  in the response (a false from res.write guarantees its 'drain'), until the listener's drain(). */
  private sendLine(line: string): boolean {
    const res = this.res;
    if (res.writableEnded || res.destroyed) return true;
    this.head(200);
    const ok = res.write(line);
    if (this.halfClosePending && this.responses >= this.requests) this.halfClose();
    if (ok || res.writableLength < SEND_BUFFER_BYTES) return true;
    if (!this.drainAwaited) {
      this.drainAwaited = true;
      // A client that does not read its answers is not read either: its requests would only
      // queue more answers (a bidi stream's body stays unread until the answers drain).
      if (this.method.def.requestStream) this.req.pause();
      res.once('drain', () => this.drained());
    }
    return false;
  }

  private drained(): void {
    this.drainAwaited = false;
    if (this.method.def.requestStream && !this.requestsHeld) this.req.resume();
    const l = this.listener;
    if (this.finished || !l?.drain) return;
    try {
      l.drain();
    } catch (err) {
      this.threw(err);
    }
  }

  private finish(st: Status | undefined): void {
    // A cause is reported even when the call is already over (the client went away): it is a bug.
    if (st?.cause !== undefined) this.owner.reportInternal(this.method, st.cause);
    if (this.finished) return;
    this.finished = true;
    this.onFinish(st ? st.code : GrpcCode.OK);
    const res = this.res;
    if (!this.streaming) {
      assert(st, `gateway: unary call ${this.method.fullName} ended without a response`);
      // Part of the answer is out already: the client must not take what it got for a whole
      // answer (an ended chunked body would look complete), so the connection is cut.
      if (this.partsStarted && res.headersSent) return void res.destroy();
      return sendError(res, st);
    }
    if (!res.writableEnded) {
      if (st) {
        const http = httpStatusOf(st.code);
        this.head(http);
        res.write(JSON.stringify({ error: { grpc_code: st.code, http_code: http, message: st.message, http_status: statusText(http) } }) + '\n');
      } else this.head(200);
      res.end();
    }
    this.owner.ended(this);
  }

  /** The response closed: a call still running was cancelled by the client. */
  private gone(): void {
    if (!this.finished && !this.res.writableFinished) {
      this.finished = true;
      this.cancelled = true;
      this.onFinish(GrpcCode.CANCELLED);
      if (this.streaming) this.owner.ended(this);
      const hooks = this.abandonHooks;
      this.abandonHooks = undefined;
      for (const fn of hooks ?? []) {
        try {
          fn();
        } catch (err) {
          this.threw(err);
        }
      }
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

/** The writer of a gateway answer in parts (GatewayCall.respondInParts). */
class GatewayPartWriter implements MessagePartWriter<Uint8Array> {
  private ended = false;

  constructor(
    private readonly call: GatewayCall,
    private readonly res: http.ServerResponse,
    private readonly json: PartsToJson,
  ) {}

  write(part: Uint8Array): boolean {
    assert(!this.ended, 'gateway: a part after end()');
    if (this.call.partsOver) return true;
    let text: string;
    try {
      text = this.json.push(Buffer.isBuffer(part) ? part : Buffer.from(part.buffer, part.byteOffset, part.length));
    } catch (err) {
      this.call.threw(err);
      return true;
    }
    return this.call.writePartText(text);
  }

  whenDrained(fn: () => void): void {
    const res = this.res;
    if (this.call.partsOver || res.writableLength < SEND_BUFFER_BYTES) return fn();
    let done = false;
    const once = () => {
      if (done) return;
      done = true;
      res.off('drain', once);
      res.off('close', once);
      fn();
    };
    res.on('drain', once);
    res.on('close', once);
  }

  get over(): boolean {
    return this.call.partsOver;
  }

  end(): void {
    assert(!this.ended, 'gateway: end() twice');
    this.ended = true;
    if (this.call.partsOver) return;
    let text: string;
    try {
      text = this.json.end();
    } catch (err) {
      return this.call.threw(err);
    }
    this.call.endParts(text);
  }
}
