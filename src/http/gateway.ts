// etcd's JSON gateway (grpc-gateway) under /v3/: each POST carries one request message as JSON and
// is served by the SAME handler the gRPC service registers (the `services` map the member builds),
// called with a GatewayCall (gateway_call.ts), the gateway's implementation of src/api/call.ts.
// There is one implementation of every RPC.
//
//   unary:     body (one JSON object) → request → handler(call) → one JSON object;
//   streaming: body = a sequence of JSON objects, each fed to the handler's listener as it arrives;
//              every response is written as one line {"result": {...}}\n (etcd's framing), an
//              error ends the stream with {"error": {"grpc_code", "http_code", "message", "http_status"}}.
//
// JSON → request: our parser (numbers keep their text) → jsonpb rules (json_pb.ts) → protobufjs
// encode → the method's own requestDeserialize, so the handler gets exactly the object a gRPC
// client's bytes would have produced.
//
// Errors as grpc-gateway v1: HTTP status from the gRPC code (routes.ts) and a body
// {"error": msg, "message": msg, "code": N}. Bad JSON, bad base64 and bodies over the limit are
// 400 / InvalidArgument before any handler runs.
import type http from 'node:http';
import type * as grpc from '@grpc/grpc-js';
import { protoRoot, serviceDefinition } from '../proto';
import { GRPC_OVERHEAD_BYTES, type ServiceHandlers } from '../api/services';
import type { BidiHandler, Handler, ServerStreamHandler, Status, UnaryHandler } from '../api/call';
import { rethrowIfAssertion } from '../util/assert';
import { Errors, GrpcCode, unimplemented } from '../util/errors';
import type { Logger } from '../util/log';
import { JsonLimitError, JsonStreamParser, JsonSyntaxError, type JsonLimits, type JsonValue } from './json_parse';
import { JsonMappingError, messageIn } from './json_pb';
import type { Route } from './routes';
import type { CallObserver } from './metrics';
import { GatewayCall, sendError, type GatewayCallOwner, type GatewayMethod } from './gateway_call';

export { CORS_HEADERS, sendJson } from './gateway_call';

export interface GatewayOptions {
  /** The handler tables of every gRPC service, by full service name (as registered). */
  services: Readonly<Record<string, ServiceHandlers>>;
  maxRequestBytes: number;
  /** --max-txn-ops: also the longest JSON list read (a Txn's compare/success/failure). */
  maxTxnOps: number;
  log: Logger;
  calls?: CallObserver;
  /** A unary body, or one request of a stream once its first byte came, must arrive within this
   *  (slow-body bound; default BODY_TIMEOUT_MS). */
  bodyTimeoutMs?: number;
}

/** The default of GatewayOptions.bodyTimeoutMs: as the headers' bound (http_server.ts). */
export const BODY_TIMEOUT_MS = 30_000;

/** How long a keepalive stream's half-close waits for the answers to its requests. */
const HALF_CLOSE_WAIT_MS = 5000;

/** A request the gateway refuses before calling any handler (always 400 / InvalidArgument). */
class BadRequest extends Error {}

/** A body (or a stream's pending request) that did not arrive in time. */
function slowBody(ms: number): Status {
  return { code: GrpcCode.DEADLINE_EXCEEDED, message: `quorumkv: request body not received within ${ms} ms` };
}

const NO_CALL_END = (): void => undefined;

export class JsonGateway implements GatewayCallOwner {
  private readonly methods = new Map<string, GatewayMethod>();
  private readonly streams = new Set<GatewayCall>();
  /** The largest request message accepted, as gRPC's receive limit. */
  readonly messageBytesMax: number;
  /** The largest body (unary) or pending value (stream) read: JSON and base64 inflate a
   *  message, by 4/3 and a little more. */
  readonly bodyBytesMax: number;
  private readonly unaryLimits: JsonLimits;
  private readonly streamLimits: JsonLimits;
  private readonly bodyTimeoutMs: number;

  constructor(private readonly o: GatewayOptions) {
    this.messageBytesMax = o.maxRequestBytes + GRPC_OVERHEAD_BYTES;
    this.bodyBytesMax = 2 * this.messageBytesMax;
    this.unaryLimits = { valueBytesMax: this.bodyBytesMax, arrayElementsMax: o.maxTxnOps, single: true };
    this.streamLimits = { ...this.unaryLimits, single: false };
    this.bodyTimeoutMs = o.bodyTimeoutMs ?? BODY_TIMEOUT_MS;
  }

  private info(route: Route): GatewayMethod {
    const key = `${route.service}/${route.method}`;
    let m = this.methods.get(key);
    if (!m) {
      const def = serviceDefinition(route.service)[route.method] as grpc.MethodDefinition<unknown, unknown>;
      const method = protoRoot().lookupService(route.service).methods[route.method]!;
      m = { def, reqType: method.resolvedRequestType!, resType: method.resolvedResponseType!, fullName: key };
      this.methods.set(key, m);
    }
    return m;
  }

  // ---- GatewayCallOwner -----------------------------------------------------------------------

  start(method: GatewayMethod): (code: number) => void {
    return this.o.calls?.start(method.def.path) ?? NO_CALL_END;
  }

  reportInternal(method: GatewayMethod, err: unknown): void {
    this.o.log.error('gateway: internal error serving a request', { method: method.fullName, error: String(err), stack: err instanceof Error ? err.stack : undefined });
  }

  ended(call: GatewayCall): void {
    this.streams.delete(call);
  }

  // ---- serving --------------------------------------------------------------------------------

  /** Serves one POST to a gateway route. */
  serve(req: http.IncomingMessage, res: http.ServerResponse, route: Route): void {
    const info = this.info(route);
    const handler = this.o.services[route.service]?.[route.method];
    if (info.def.requestStream) return this.serveStream(req, res, route, info, handler);
    // The body is parsed as it arrives (each byte once); a bad or oversized one is answered at
    // once and the rest of it is not read (the connection closes).
    let value: JsonValue | undefined;
    let size = 0;
    let failed = false;
    const parser = new JsonStreamParser(this.unaryLimits, (v) => (value = v));
    const refuse = (err: unknown, status = badRequestStatus(err)) => {
      failed = true;
      clearTimeout(timer);
      req.removeAllListeners('data');
      req.resume();
      sendError(res, status, true);
    };
    const timer = setTimeout(() => refuse(undefined, slowBody(this.bodyTimeoutMs)), this.bodyTimeoutMs);
    res.once('close', () => clearTimeout(timer));
    req.on('data', (chunk: Buffer) => {
      if (failed) return;
      size += chunk.length;
      try {
        if (size > this.bodyBytesMax) throw new BadRequest(Errors.RequestTooLarge.message);
        parser.write(chunk);
      } catch (err) {
        refuse(err);
      }
    });
    req.on('end', () => {
      clearTimeout(timer);
      if (failed) return;
      let request: unknown;
      try {
        parser.end();
        request = this.decode(info, value);
      } catch (err) {
        return sendError(res, badRequestStatus(err));
      }
      this.call(new GatewayCall(this, info, req, res), handler, request);
    });
    req.on('error', (err) => failed || refuse(err));
  }

  /** A parsed JSON value (undefined = empty body: an empty message, as with etcd) → the request
   *  object the handler would get from a gRPC client. */
  private decode(info: GatewayMethod, value: JsonValue | undefined): unknown {
    const obj = value === undefined ? {} : messageIn(info.reqType, value);
    const bytes = info.reqType.encode(info.reqType.fromObject(obj)).finish();
    if (bytes.length > this.messageBytesMax) throw new BadRequest(Errors.RequestTooLarge.message);
    return info.def.requestDeserialize(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  }

  /** Runs the handler of `call`'s method (UNIMPLEMENTED without one). The handler table erased
   *  message types (api/call.ts Handler); the request is the method's own, decoded above. */
  private call(call: GatewayCall, handler: Handler | undefined, request: unknown): void {
    const def = call.method.def;
    if (def.requestStream || def.responseStream) this.streams.add(call);
    if (!handler) return call.fail(unimplemented(call.method.fullName));
    call.request = request;
    try {
      if (def.requestStream) call.listen((handler as BidiHandler<unknown, unknown>)(call));
      else if (def.responseStream) call.listen((handler as ServerStreamHandler<unknown, unknown>)(call));
      else (handler as UnaryHandler<unknown, unknown>)(call);
    } catch (err) {
      call.threw(err);
    }
  }

  /** Bidi methods: requests are read from the body as they arrive. */
  private serveStream(req: http.IncomingMessage, res: http.ServerResponse, route: Route, info: GatewayMethod, handler: Handler | undefined): void {
    const call = new GatewayCall(this, info, req, res);
    this.call(call, handler, undefined);
    if (call.finished) return;
    // Each request of the stream goes to the handler as soon as its last byte is read.
    const parser = new JsonStreamParser(this.streamLimits, (v) => {
      if (!call.finished) call.pushRequest(this.decode(info, v));
    });
    // A request of the stream that has started must be complete within bodyTimeoutMs (the
    // stream itself may stay open, idle between requests, as long as the client wants).
    let timer: NodeJS.Timeout | undefined;
    // A refused request whose body was read to its end leaves the connection usable: the error
    // line ends the response and a keep-alive client may send its next request on it. One that
    // leaves the rest of the body unread ends the connection once the error is out (else Node
    // would go on reading and discarding whatever the client sends), and says so in the head
    // when the head is still to be written, so that the client does not reuse it.
    const refuse = (st: Status) => {
      const complete = req.complete;
      if (!complete && !res.headersSent) res.setHeader('Connection', 'close');
      call.fail(st);
      if (complete) return;
      if (res.writableFinished) req.socket.destroy();
      else res.once('finish', () => req.socket.destroy());
    };
    const read = (chunk: Buffer | undefined) => {
      if (call.finished) return;
      try {
        if (chunk) parser.write(chunk);
        else parser.end();
      } catch (err) {
        refuse(badRequestStatus(err));
      }
      if (!parser.inValue || call.finished) {
        clearTimeout(timer);
        timer = undefined;
      } else if (timer === undefined) {
        timer = setTimeout(() => refuse(slowBody(this.bodyTimeoutMs)), this.bodyTimeoutMs);
      }
    };
    res.once('close', () => clearTimeout(timer));
    req.on('data', (chunk: Buffer) => read(chunk));
    req.on('end', () => {
      read(undefined);
      if (route.endsOnHalfClose && !call.finished) call.halfCloseWhenAnswered(HALF_CLOSE_WAIT_MS);
    });
  }

  /** Ends every open stream (member shutdown). */
  close(): void {
    for (const c of [...this.streams]) c.fail({ code: GrpcCode.UNAVAILABLE, message: Errors.Stopped.message });
    this.streams.clear();
  }
}

// ---- HTTP helpers ---------------------------------------------------------------------------

function badRequestStatus(err: unknown): Status {
  rethrowIfAssertion(err);
  if (err instanceof JsonLimitError) {
    // etcd's own errors where it has one: a list over --max-txn-ops is its "too many operations",
    // a value over the size limit its "request is too large" (both InvalidArgument).
    if (err.limit === 'array-elements') return Errors.TooManyOps;
    if (err.limit === 'value-bytes') return Errors.RequestTooLarge;
    return { code: GrpcCode.INVALID_ARGUMENT, message: err.message };
  }
  if (err instanceof JsonSyntaxError || err instanceof JsonMappingError || err instanceof BadRequest) return { code: GrpcCode.INVALID_ARGUMENT, message: err.message };
  if (err instanceof Error) return { code: GrpcCode.INVALID_ARGUMENT, message: `quorumkv: bad request: ${err.message}` };
  return { code: GrpcCode.INVALID_ARGUMENT, message: `quorumkv: bad request: ${String(err)}` };
}
