// What an etcd service needs from a call, and nothing of the transport serving it. Two transports
// implement it: the client port's gRPC server (src/grpcserver/server.ts, whose own generic
// contract in src/grpcserver/call.ts has the same shape and is checked against this one where
// src/embed registers the services) and the JSON gateway (src/http/gateway.ts). A service is
// written once, against these types.
//
// Shapes, as the .proto declares each method:
//   unary            handler(call): read call.request, then call.respond(message) or call.fail(status);
//   server-streaming handler(call): read call.request, call.write(...)* then call.end() or call.fail(status);
//   bidi             handler(call) returns a BidiListener: requests arrive at listener.message(req),
//                    the client's half-close at listener.halfClosed(); answers as server-streaming.
// A streaming handler may return a StreamListener to hear of drain (after a write returned false)
// and of the call's end (closed: ended by either side, or the client went away).
//
// Why listeners returned by the handler instead of events: one typed object per stream, no
// EventEmitter per call, and nothing can arrive before the handler has said where it goes.

/** How a call ends when it fails: a gRPC status code and its message. An EtcdError is one as it
 *  is (util/errors.ts). `cause`: the exception behind an unexpected failure (INTERNAL), which the
 *  transport logs with the method; the client sees only the message. */
export interface Status {
  readonly code: number;
  readonly message: string;
  readonly cause?: unknown;
}

/** A message already serialized (protobuf, no gRPC framing) as the method's response type: what
 *  the watch fan-out sends to many watchers after encoding it once (watch_encoding.ts). The brand
 *  exists only in types, so that bytes of one message type cannot be sent as another's. */
export type Encoded<T> = Uint8Array & { readonly __encodedMessageOf: T };

/** What every call offers, whatever its shape. */
export interface CallBase {
  /** The first value of the request metadata `key` (a lowercase text key: `token`, ...), or
   *  undefined. Built on first use: a request that never asks (auth disabled) pays nothing. */
  metadata(key: string): string | undefined;
  /** True once the client went away (reset the stream, dropped the connection) before the call
   *  ended. */
  readonly cancelled: boolean;
  /** Ends the call with a failure status. The first ending counts; later ones are ignored. */
  fail(status: Status): void;
  /** Runs `fn` once if the call ends without its handler's answer: the client went away, or the
   *  client's deadline (grpc-timeout) passed. At once if that has already happened. What a handler
   *  that waits (Election.Campaign, Lock.Lock) uses to stop waiting and undo its work. */
  onAbandoned(fn: () => void): void;
}

export interface UnaryCall<Req, Res> extends CallBase {
  readonly request: Req;
  /** Answers with `message` (status OK). */
  respond(message: Res): void;
}

/** The response side of a streaming call. */
export interface ResponseStream<Res> extends CallBase {
  /** Sends one response. Returns false once the call's send buffer is full: the caller should
   *  wait for its listener's drain() before writing more (what it writes meanwhile is queued). */
  write(message: Res): boolean;
  /** As write(), for a response already encoded. */
  writeEncoded(message: Encoded<Res>): boolean;
  /** Ends the call with status OK, after every response written. */
  end(): void;
}

export interface ServerStreamCall<Req, Res> extends ResponseStream<Res> {
  readonly request: Req;
}

export interface BidiCall<Res> extends ResponseStream<Res> {
  /** Stops delivering request messages until releaseRequests(): the transport stops reading
   *  them (and crediting their flow-control window) meanwhile. For a handler with work in flight
   *  per request that no write reflects yet (a keepalive relayed to the leader), so that a client
   *  cannot queue unbounded work. A write returning false holds the requests the same way, by
   *  itself. Absent where a transport cannot stop reading (the JSON gateway). Not counted: one
   *  release undoes any number of holds. */
  holdRequests?(): void;
  releaseRequests?(): void;
}

/** What a streaming handler may want to hear about its call. */
export interface StreamListener {
  /** A write returned false earlier; writes may continue now. */
  drain?(): void;
  /** The call is over (ended by either side, or the client went away: call.cancelled tells);
   *  nothing else is delivered after it. */
  closed?(): void;
}

export interface BidiListener<Req> extends StreamListener {
  /** The next request message, in order. */
  message(request: Req): void;
  /** The client sent its last message. */
  halfClosed(): void;
}

export type UnaryHandler<Req, Res> = (call: UnaryCall<Req, Res>) => void;
export type ServerStreamHandler<Req, Res> = (call: ServerStreamCall<Req, Res>) => StreamListener | void;
export type BidiHandler<Req, Res> = (call: BidiCall<Res>) => BidiListener<Req>;

/** Any handler, its message types erased: what a service table holds (services.ts). `never`
 *  requests: a handler of any request type fits; which shape a method has is the .proto's say. */
export type Handler = UnaryHandler<never, unknown> | ServerStreamHandler<never, unknown> | BidiHandler<never, unknown>;
