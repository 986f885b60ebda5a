// What an etcd service needs from a call, and nothing of the transport serving it: the generic
// gRPC call contract of src/grpcserver/call.ts (request, lazy metadata, cancellation and
// abandonment hooks, respond/fail, back-pressured writes, holdRequests), with pre-encoded
// responses typed by their message (`Encoded<T>`). Two transports implement it: the client port's
// gRPC server (src/grpcserver/server.ts) and the JSON gateway (src/http/gateway_call.ts). A
// service is written once, against these types.
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

import type * as G from '../grpcserver/call';

/** How a call ends when it fails: a gRPC status code and its message. An EtcdError is one as it
 *  is (util/errors.ts). `cause`: the exception behind an unexpected failure (INTERNAL), which the
 *  transport logs with the method; the client sees only the message. */
export type Status = G.CallStatus;

/** A message already serialized (protobuf, no gRPC framing) as the method's response type: what
 *  the watch fan-out sends to many watchers after encoding it once (watch_encoding.ts). The brand
 *  exists only in types, so that bytes of one message type cannot be sent as another's. */
export type Encoded<T> = Uint8Array & { readonly __encodedMessageOf: T };

/** What every call offers, whatever its shape (metadata, cancelled, fail, onAbandoned). */
export type CallBase = G.CallBase;
export type UnaryCall<Req, Res> = G.UnaryCall<Req, Res, Encoded<Res>>;
/** A unary answer written in parts (UnaryCall.respondInParts); parts are typed by the message. */
export type MessagePartWriter<Res> = G.MessagePartWriter<Encoded<Res>>;
/** The response side of a streaming call; writeEncoded takes only bytes of its own message type. */
export type ResponseStream<Res> = G.ResponseStream<Res, Encoded<Res>>;
export type ServerStreamCall<Req, Res> = G.ServerStreamCall<Req, Res, Encoded<Res>>;
export type BidiCall<Res> = G.BidiCall<Res, Encoded<Res>>;
/** What a streaming handler may want to hear about its call (drain, closed). */
export type StreamListener = G.StreamListener;
export type BidiListener<Req> = G.BidiListener<Req>;

export type UnaryHandler<Req, Res> = G.UnaryHandler<Req, Res>;
export type ServerStreamHandler<Req, Res> = G.ServerStreamHandler<Req, Res, Encoded<Res>>;
export type BidiHandler<Req, Res> = G.BidiHandler<Req, Res, Encoded<Res>>;

/** Any handler, its message types erased: what a service table holds (services.ts). `never`
 *  requests: a handler of any request type fits; which shape a method has is the .proto's say. */
export type Handler = UnaryHandler<never, unknown> | ServerStreamHandler<never, unknown> | BidiHandler<never, unknown>;
