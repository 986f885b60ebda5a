// The calls this gRPC server hands to method handlers: the request (or, for a bidi stream, a
// listener the requests go to), request metadata, cancellation, and the way to answer. Generic
// gRPC, nothing of any service. `Enc` is what writeEncoded takes (bytes here; src/api/call.ts
// specializes it to a message-typed brand), so the etcd services' contract is this one, and no
// adapter object stands between a call and its handler.

/** A call's final status: gRPC code and message (grpc-message). `cause`: the exception behind an
 *  unexpected failure; the server reports it (H2GrpcServerOptions.onInternalError) and sends only
 *  the message. */
export interface CallStatus {
  readonly code: number;
  readonly message: string;
  readonly cause?: unknown;
}

export interface CallBase {
  /** The first value of text metadata `key` (lowercase), or undefined. Built on first use. */
  metadata(key: string): string | undefined;
  /** The client went away before the call ended. */
  readonly cancelled: boolean;
  /** Ends the call with `status` (the first ending counts). */
  fail(status: CallStatus): void;
  /** Runs `fn` once when the call is abandoned (client gone, or its grpc-timeout passed); at once
   *  if it already was. */
  onAbandoned(fn: () => void): void;
}

export interface UnaryCall<Req, Res, Enc = Uint8Array> extends CallBase {
  readonly request: Req;
  respond(message: Res): void;
  /** respond() with the message serialized in parts, written as they are produced (a large
   *  answer is never built whole): `messageBytes` is the whole message's size (gRPC's length
   *  prefix goes first), then the parts through the writer, then writer.end(). Each part is one
   *  or more whole top-level fields of the message, in field-number order (the JSON gateway
   *  converts part by part). fail() after some parts ends the call with that status instead. */
  respondInParts(messageBytes: number): MessagePartWriter<Enc>;
}

/** The writer of a message answered in parts (UnaryCall.respondInParts). */
export interface MessagePartWriter<Enc = Uint8Array> {
  /** Queues the next part; false once the call's send buffer is full: wait for whenDrained
   *  before writing more. Once the call is over (the client went away, a fail()) parts are
   *  dropped and this returns true: the caller checks `over`. */
  write(part: Enc): boolean;
  /** Runs `fn` once the queued parts went out far enough to write more, or the call is over. */
  whenDrained(fn: () => void): void;
  /** The call ended before the message was complete (client gone, deadline, budget, fail()). */
  readonly over: boolean;
  /** Every part written (their sizes add up to messageBytes): ends the call with OK. */
  end(): void;
}

export interface ResponseStream<Res, Enc = Uint8Array> extends CallBase {
  /** Sends one response; false once SEND_BUFFER_BYTES are queued (then wait for drain()). */
  write(message: Res): boolean;
  /** Sends one response already serialized (protobuf bytes, no gRPC framing). */
  writeEncoded(message: Enc): boolean;
  /** Bytes of this call's responses queued and not yet handed to the client's connection (the
   *  transport's own per-buffer overhead included): what a handler that bounds its buffered
   *  responses counts (the watch service). 0 once the call is over. */
  readonly queuedBytes: number;
  /** Ends the call with OK after the responses written. */
  end(): void;
}

export interface ServerStreamCall<Req, Res, Enc = Uint8Array> extends ResponseStream<Res, Enc> {
  readonly request: Req;
}

export interface BidiCall<Res, Enc = Uint8Array> extends ResponseStream<Res, Enc> {
  /** Stops delivering request messages until releaseRequests(): the transport stops reading
   *  them (and crediting their flow-control window) meanwhile. For a handler with work in flight
   *  per request that no write reflects yet (a keepalive relayed to the leader), so that a client
   *  cannot queue unbounded work. A write returning false holds the requests the same way, by
   *  itself (the gRPC server stops crediting the stream's window, the JSON gateway stops reading
   *  the request body). Not counted: one release undoes any number of holds. */
  holdRequests?(): void;
  releaseRequests?(): void;
}

/** A client-streaming call: the requests go to the listener its handler returns (BidiListener),
 *  and the handler answers once, with respond() or fail(), when it has what it needs (usually
 *  after halfClosed()). */
export interface ClientStreamCall<Res> extends CallBase {
  /** Sends the response headers now, before the response: a client that waits for them learns
   *  that its stream was accepted (grpc-js's 'metadata' event). */
  sendHeaders(): void;
  /** The one response, then OK. */
  respond(message: Res): void;
  /** As BidiCall's: no request is delivered (nor its bytes credited to the client's HTTP/2
   *  window) between holdRequests() and releaseRequests(), so a receiver that does not read
   *  holds at most its receive window (RecvWindow) of requests. */
  holdRequests(): void;
  releaseRequests(): void;
  /** The client's address and port ("host:port"), for logs. */
  readonly remoteAddress: string;
}

export interface StreamListener {
  /** After a write returned false: the send buffer is below the mark again. */
  drain?(): void;
  /** The call is over and its stream gone; called once, last. */
  closed?(): void;
}

export interface BidiListener<Req> extends StreamListener {
  message(request: Req): void;
  /** The client half-closed. */
  halfClosed(): void;
}

export type UnaryHandler<Req, Res> = (call: UnaryCall<Req, Res>) => void;
export type ServerStreamHandler<Req, Res, Enc = Uint8Array> = (call: ServerStreamCall<Req, Res, Enc>) => StreamListener | void;
export type BidiHandler<Req, Res, Enc = Uint8Array> = (call: BidiCall<Res, Enc>) => BidiListener<Req>;
export type ClientStreamHandler<Req, Res> = (call: ClientStreamCall<Res>) => BidiListener<Req>;

/** A handler of any method, message types erased (the service definition says which shape). */
export type Handler = UnaryHandler<never, unknown> | ServerStreamHandler<never, unknown> | BidiHandler<never, unknown> | ClientStreamHandler<never, unknown>;
