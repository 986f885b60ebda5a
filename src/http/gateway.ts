// etcd's JSON gateway (grpc-gateway) under /v3/: each POST carries one request message as JSON and
// is served by the SAME handler the gRPC service registers (the `services` map the member builds),
// called with a stand-in for grpc-js's call object. There is one implementation of every RPC.
//
//   unary:     body (one JSON object) → request → handler(call, callback) → one JSON object;
//   streaming: body = a sequence of JSON objects, each fed to the handler as it arrives; every
//              response is written as one line {"result": {...}}\n (etcd's framing), an error
//              ends the stream with {"error": {"grpc_code", "http_code", "message", "http_status"}}.
//
// JSON → request: our parser (numbers keep their text) → jsonpb rules (json_pb.ts) → protobufjs
// encode → the method's own requestDeserialize, so the handler gets exactly the object a gRPC
// client's bytes would have produced. Response → JSON: the method's responseSerialize → decode →
// proto3 JSON, so the gateway shows exactly what a gRPC client receives.
//
// Errors as grpc-gateway v1: HTTP status from the gRPC code (routes.ts) and a body
// {"error": msg, "message": msg, "code": N}. Bad JSON, bad base64 and bodies over the limit are
// 400 / InvalidArgument before any handler runs.
import { Duplex } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import path from 'node:path';
import type http from 'node:http';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { PROTO_DIR, serviceDefinition } from '../proto';
import { GRPC_OVERHEAD_BYTES, type Handlers } from '../api/services';
import { toStatus } from '../api/errors';
import { Errors, GrpcCode, unimplemented } from '../util/errors';
import type { Logger } from '../util/log';
import { JsonIncomplete, JsonSyntaxError, parseJson, parseNext, type JsonValue } from './json_parse';
import { JsonMappingError, messageIn, messageOut } from './json_pb';
import { httpStatusOf, type Route } from './routes';
import type { CallObserver } from './metrics';

export interface GatewayOptions {
  /** The handler objects of every gRPC service, by full service name (as registered). */
  services: Readonly<Record<string, Handlers>>;
  maxRequestBytes: number;
  log: Logger;
  calls?: CallObserver;
}

interface MethodInfo {
  def: grpc.MethodDefinition<unknown, unknown>;
  reqType: protobuf.Type;
  resType: protobuf.Type;
  fullName: string;
}

interface Status {
  code: number;
  message: string;
}

/** How long a keepalive stream's half-close waits for the answers to its requests. */
const HALF_CLOSE_WAIT_MS = 5000;

/** A request the gateway refuses before calling any handler (always 400 / InvalidArgument). */
class BadRequest extends Error {}

let root: protobuf.Root | undefined;
function gatewayRoot(): protobuf.Root {
  if (!root) {
    const r = new protobuf.Root();
    r.resolvePath = (_origin, target) => (path.isAbsolute(target) ? target : path.join(PROTO_DIR, target));
    r.loadSync(['etcdserverpb/rpc.proto', 'v3electionpb/v3election.proto', 'v3lockpb/v3lock.proto'], { keepCase: true });
    r.resolveAll();
    root = r;
  }
  return root;
}

function statusOf(err: unknown): Status {
  const e = err as { code?: unknown; details?: unknown; message?: unknown } | null;
  if (e && typeof e.code === 'number') return { code: e.code, message: String(e.details ?? e.message ?? '') };
  const s = toStatus(err);
  return { code: s.code, message: s.details };
}

export class JsonGateway {
  private readonly methods = new Map<string, MethodInfo>();
  private readonly streams = new Set<GatewayCall>();
  /** The largest request message accepted, as gRPC's receive limit. */
  readonly messageBytesMax: number;
  /** The largest body read: JSON and base64 inflate a message, by 4/3 and a little more. */
  readonly bodyBytesMax: number;

  constructor(private readonly o: GatewayOptions) {
    this.messageBytesMax = o.maxRequestBytes + GRPC_OVERHEAD_BYTES;
    this.bodyBytesMax = 2 * this.messageBytesMax;
  }

  private info(route: Route): MethodInfo {
    const key = `${route.service}/${route.method}`;
    let m = this.methods.get(key);
    if (!m) {
      const def = serviceDefinition(route.service)[route.method] as grpc.MethodDefinition<unknown, unknown>;
      const method = gatewayRoot().lookupService(route.service).methods[route.method]!;
      m = { def, reqType: method.resolvedRequestType!, resType: method.resolvedResponseType!, fullName: key };
      this.methods.set(key, m);
    }
    return m;
  }

  /** Serves one POST to a gateway route. */
  serve(req: http.IncomingMessage, res: http.ServerResponse, route: Route): void {
    const info = this.info(route);
    const handler = this.o.services[route.service]?.[route.method];
    const md = new grpc.Metadata();
    const auth = req.headers.authorization;
    if (auth) md.set('token', auth);
    if (info.def.requestStream) return this.serveStream(req, res, route, info, handler, md);
    readBody(req, this.bodyBytesMax).then(
      (body) => {
        let request: unknown;
        try {
          request = this.decode(info, body.length === 0 ? undefined : parseJson(body.toString('utf8')));
        } catch (err) {
          return sendError(res, badRequestStatus(err));
        }
        if (info.def.responseStream) return this.startStream(req, res, info, handler, md, request);
        this.callUnary(req, res, info, handler, md, request);
      },
      (err) => sendError(res, badRequestStatus(err), true),
    );
  }

  /** A parsed JSON value (undefined = empty body: an empty message, as with etcd) → the request
   *  object the handler would get from a gRPC client. */
  private decode(info: MethodInfo, value: JsonValue | undefined): unknown {
    const obj = value === undefined ? {} : messageIn(info.reqType, value);
    const bytes = info.reqType.encode(info.reqType.fromObject(obj)).finish();
    if (bytes.length > this.messageBytesMax) throw new BadRequest(Errors.RequestTooLarge.message);
    return info.def.requestDeserialize(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  }

  private encode(info: MethodInfo, resp: unknown): Record<string, unknown> {
    const bytes = info.def.responseSerialize(resp);
    return messageOut(info.resType, info.resType.decode(bytes));
  }

  private callUnary(req: http.IncomingMessage, res: http.ServerResponse, info: MethodInfo, handler: Handlers[string] | undefined, md: grpc.Metadata, request: unknown): void {
    const end = this.o.calls?.start(info.def.path) ?? (() => undefined);
    const call = new GatewayCall(md, req, () => undefined, () => undefined);
    call.request = request;
    res.once('close', () => {
      if (!res.writableFinished) (call.cancel(), end(GrpcCode.CANCELLED));
    });
    const reply = (err: unknown, resp: unknown) => {
      if (err) {
        const st = statusOf(err);
        end(st.code);
        return sendError(res, st);
      }
      let out: string;
      try {
        out = JSON.stringify(this.encode(info, resp));
      } catch (e) {
        this.o.log.error('gateway: response does not encode', { method: info.fullName, error: String(e) });
        end(GrpcCode.INTERNAL);
        return sendError(res, { code: GrpcCode.INTERNAL, message: `quorumkv: internal error: ${String(e)}` });
      }
      end(GrpcCode.OK);
      sendJson(res, 200, out);
    };
    if (!handler) return reply(toStatus(unimplemented(info.fullName)), null);
    try {
      handler(call, reply);
    } catch (err) {
      this.o.log.error('gateway: handler threw', { method: info.fullName, error: String(err) });
      reply({ code: GrpcCode.INTERNAL, details: `quorumkv: internal error: ${String(err)}` }, null);
    }
  }

  /** Client-streaming (and bidi) methods: requests are read from the body as they arrive. */
  private serveStream(req: http.IncomingMessage, res: http.ServerResponse, route: Route, info: MethodInfo, handler: Handlers[string] | undefined, md: grpc.Metadata): void {
    const call = this.startStream(req, res, info, handler, md, undefined);
    if (!call) return;
    const decoder = new StringDecoder('utf8');
    let pending = '';
    const feed = (atEnd: boolean) => {
      try {
        for (;;) {
          const next = parseNext(pending, 0, atEnd);
          if (!next) break;
          pending = pending.slice(next.end);
          call.pushRequest(this.decode(info, next.value));
        }
        pending = pending.trimStart();
      } catch (err) {
        if (err instanceof JsonIncomplete) return;
        call.fail(badRequestStatus(err));
      }
    };
    req.on('data', (chunk: Buffer) => {
      if (call.finished) return;
      pending += decoder.write(chunk);
      if (pending.length > this.bodyBytesMax) return call.fail(badRequestStatus(new BadRequest(`quorumkv: request message larger than ${this.bodyBytesMax} bytes of JSON`)));
      feed(false);
    });
    req.on('end', () => {
      if (call.finished) return;
      pending += decoder.end();
      feed(true);
      if (route.endsOnHalfClose && !call.finished) call.halfCloseWhenAnswered(HALF_CLOSE_WAIT_MS);
    });
  }

  private startStream(req: http.IncomingMessage, res: http.ServerResponse, info: MethodInfo, handler: Handlers[string] | undefined, md: grpc.Metadata, request: unknown): GatewayCall | undefined {
    const end = this.o.calls?.start(info.def.path) ?? (() => undefined);
    let wroteHeader = false;
    const head = (status: number) => {
      if (wroteHeader) return;
      wroteHeader = true;
      res.writeHead(status, { 'Content-Type': 'application/json', ...CORS_HEADERS });
    };
    const finish = (st: Status | undefined) => {
      if (res.writableEnded) return;
      end(st ? st.code : GrpcCode.OK);
      if (st) {
        const http = httpStatusOf(st.code);
        head(http);
        res.write(JSON.stringify({ error: { grpc_code: st.code, http_code: http, message: st.message, http_status: statusText(http) } }) + '\n');
      } else head(200);
      res.end();
      this.streams.delete(call);
    };
    const write = (resp: unknown, done: () => void) => {
      if (res.writableEnded || res.destroyed) return done();
      let line: string;
      try {
        line = JSON.stringify({ result: this.encode(info, resp) }) + '\n';
      } catch (e) {
        call.fail({ code: GrpcCode.INTERNAL, message: `quorumkv: internal error: ${String(e)}` });
        return done();
      }
      head(200);
      if (res.write(line)) done();
      else res.once('drain', done);
    };
    const call = new GatewayCall(md, req, write, finish);
    call.request = request;
    this.streams.add(call);
    res.once('close', () => {
      this.streams.delete(call);
      if (!res.writableFinished) (end(GrpcCode.CANCELLED), call.cancel());
    });
    if (!handler) {
      call.fail(statusOf(toStatus(unimplemented(info.fullName))));
      return undefined;
    }
    try {
      handler(call);
    } catch (err) {
      this.o.log.error('gateway: stream handler threw', { method: info.fullName, error: String(err) });
      call.fail({ code: GrpcCode.INTERNAL, message: `quorumkv: internal error: ${String(err)}` });
      return undefined;
    }
    return call;
  }

  /** Ends every open stream (member shutdown). */
  close(): void {
    for (const c of [...this.streams]) c.fail({ code: GrpcCode.UNAVAILABLE, message: Errors.Stopped.message });
    this.streams.clear();
  }
}

/** What the handlers use of grpc-js's call objects: `request`, `metadata`, `cancelled`, and for
 *  streams the Duplex (data/end/close/cancelled events; write, end, writableLength, 'drain';
 *  emit('error', status) to fail the call). */
export class GatewayCall extends Duplex {
  request: unknown;
  cancelled = false;
  finished = false;
  private requests = 0;
  private responses = 0;
  private halfClosePending = false;
  private halfClosed = false;

  constructor(
    readonly metadata: grpc.Metadata,
    private readonly req: http.IncomingMessage,
    private readonly sink: (resp: unknown, done: () => void) => void,
    private readonly onFinish: (status: Status | undefined) => void,
  ) {
    super({ objectMode: true });
    // A handler fails a stream with call.emit('error', status), as with grpc-js.
    this.on('error', (err) => this.fail(statusOf(err)));
  }

  override _read(): void {
    // Requests are pushed as they are parsed from the body.
  }

  override _write(resp: unknown, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.responses++;
    this.sink(resp, () => done());
    if (this.halfClosePending && this.responses >= this.requests) this.halfClose();
  }

  pushRequest(req: unknown): void {
    this.requests++;
    this.push(req);
  }

  /** The client's half-close, delivered once every request so far has had its answer: etcd's
   *  keepalive loop answers each request before it reads the end of the stream, while a handler
   *  here may still be waiting on the leader (a follower forwarding a keepalive). */
  halfCloseWhenAnswered(timeoutMs: number): void {
    if (this.responses >= this.requests) return this.halfClose();
    this.halfClosePending = true;
    setTimeout(() => this.halfClose(), timeoutMs).unref();
  }

  private halfClose(): void {
    if (this.halfClosed || this.destroyed || (!this.halfClosePending && this.responses < this.requests)) return;
    this.halfClosed = true;
    this.halfClosePending = false;
    this.push(null);
  }

  override _final(done: (err?: Error | null) => void): void {
    this.complete(undefined);
    done();
  }

  fail(status: Status): void {
    this.complete(status);
    if (!this.destroyed) this.destroy();
  }

  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.finished = true;
    this.emit('cancelled', 'cancelled');
    if (!this.destroyed) this.destroy();
  }

  private complete(status: Status | undefined): void {
    if (this.finished) return;
    this.finished = true;
    this.onFinish(status);
  }

  getPeer(): string {
    return `${this.req.socket.remoteAddress ?? 'unknown'}:${this.req.socket.remotePort ?? 0}`;
  }

  getDeadline(): number {
    return Infinity;
  }

  sendMetadata(): void {
    // HTTP has no separate response metadata here.
  }
}

// ---- HTTP helpers ---------------------------------------------------------------------------

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

function badRequestStatus(err: unknown): Status {
  if (err instanceof JsonSyntaxError || err instanceof JsonMappingError || err instanceof BadRequest) return { code: GrpcCode.INVALID_ARGUMENT, message: err.message };
  if (err instanceof RangeError || err instanceof TypeError || err instanceof Error) return { code: GrpcCode.INVALID_ARGUMENT, message: `quorumkv: bad request: ${err.message}` };
  return { code: GrpcCode.INVALID_ARGUMENT, message: `quorumkv: bad request: ${String(err)}` };
}

export function sendJson(res: http.ServerResponse, status: number, body: string, close = false): void {
  if (res.headersSent || res.destroyed) return void res.end();
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), ...CORS_HEADERS, ...(close ? { Connection: 'close' } : {}) });
  res.end(body);
}

function sendError(res: http.ServerResponse, st: Status, close = false): void {
  sendJson(res, httpStatusOf(st.code), JSON.stringify({ error: st.message, message: st.message, code: st.code }), close);
}

/** Reads a whole body, refusing (without buffering) one larger than `limit` bytes. */
export function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    req.on('data', (c: Buffer) => {
      if (refused) return;
      size += c.length;
      if (size > limit) {
        refused = true;
        chunks.length = 0;
        reject(new BadRequest(`quorumkv: request body larger than ${limit} bytes (--max-request-bytes plus gRPC overhead, twice for JSON and base64)`));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => refused || resolve(Buffer.concat(chunks)));
    req.on('error', (err) => refused || ((refused = true), reject(err)));
  });
}
