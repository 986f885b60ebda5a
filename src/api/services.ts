// The etcd v3 services of the client port, and how they are registered. Every service is written
// once against call.ts; the gRPC server and the JSON gateway serve the same handler tables.
// Methods we have not built answer UNIMPLEMENTED with a message naming the method, so a client
// learns exactly what is missing instead of hanging or misbehaving.
import type * as grpc from '@grpc/grpc-js';
import { unimplemented } from '../util/errors';
import { serviceDefinition } from '../proto';
import type { BidiCall, BidiListener, Handler, ServerStreamCall, UnaryCall } from './call';

/** gRPC framing headroom above --max-request-bytes, as etcd (grpcOverheadBytes). */
export const GRPC_OVERHEAD_BYTES = 512 * 1024;

export const ETCD_SERVICES = [
  'etcdserverpb.KV',
  'etcdserverpb.Watch',
  'etcdserverpb.Lease',
  'etcdserverpb.Cluster',
  'etcdserverpb.Maintenance',
  'etcdserverpb.Auth',
  'v3electionpb.Election',
  'v3lockpb.Lock',
] as const;

/** A service's handlers by method name (as in the .proto), message types erased. */
export type ServiceHandlers = Readonly<Record<string, Handler>>;

/** Where services are served: the client port's gRPC server (src/grpcserver/server.ts) is one, by
 *  its shape (api does not import it). A function-typed property rather than a method, so that the
 *  compiler compares the server's calls with call.ts strictly where src/embed registers services
 *  (method parameters would be compared both ways, which lets a missing member through). */
export interface ServiceRegistry {
  readonly addService: (def: grpc.ServiceDefinition, handlers: ServiceHandlers) => void;
}

/** The requests of a bidi method we do not serve: ignored (the call has already failed). */
const IGNORED_REQUESTS: BidiListener<unknown> = { message: () => undefined, halfClosed: () => undefined };

function unimplementedHandler(m: { requestStream: boolean; responseStream: boolean }, name: string): Handler {
  const status = unimplemented(name);
  if (m.requestStream) {
    return (call: BidiCall<unknown>) => {
      call.fail(status);
      return IGNORED_REQUESTS;
    };
  }
  if (m.responseStream) return (call: ServerStreamCall<never, unknown>) => call.fail(status);
  return (call: UnaryCall<never, unknown>) => call.fail(status);
}

/** `handlers` for every method of `service`: those without one answer UNIMPLEMENTED. A handler for
 *  a method the .proto does not have is a wiring bug, refused at start. */
export function completeService(service: string, handlers: ServiceHandlers): ServiceHandlers {
  const def = serviceDefinition(service);
  const out: Record<string, Handler> = {};
  for (const [method, m] of Object.entries(def)) out[method] = handlers[method] ?? unimplementedHandler(m, `${service}/${method}`);
  for (const method of Object.keys(handlers)) {
    if (!(method in def)) throw new Error(`handler ${service}/${method} has no method in the proto`);
  }
  return out;
}

/** Registers `handlers` for `service` on `registry`, filling every method without one with
 *  UNIMPLEMENTED. */
export function addService(registry: ServiceRegistry, service: string, handlers: ServiceHandlers): void {
  registry.addService(serviceDefinition(service), completeService(service, handlers));
}
