// The client-facing gRPC server: registers every etcd v3 service under its etcd name. Methods we
// have not built yet answer UNIMPLEMENTED with a message naming the method, so a client learns
// exactly what is missing instead of hanging or misbehaving.
import * as grpc from '@grpc/grpc-js';
import { unimplemented } from '../util/errors';
import { serviceDefinition } from '../proto';
import { toStatus } from './errors';
import { H2GrpcServer, type H2GrpcServerOptions } from '../grpcserver/server';

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

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Handlers = Record<string, (...args: any[]) => void>;

function unimplementedHandler(def: grpc.MethodDefinition<unknown, unknown>, name: string): Handlers[string] {
  const status = toStatus(unimplemented(name));
  if (!def.requestStream && !def.responseStream) {
    return (_call: unknown, cb: grpc.sendUnaryData<unknown>) => cb(status as grpc.ServiceError, null);
  }
  return (call: grpc.ServerWritableStream<unknown, unknown>) => call.emit('error', status);
}

/** Registers `handlers` for `service`, filling every method without one with UNIMPLEMENTED. */
export function addService(server: grpc.Server | H2GrpcServer, service: string, handlers: Handlers): void {
  const def = serviceDefinition(service);
  const impl: Handlers = {};
  for (const [method, mdef] of Object.entries(def)) {
    impl[method] = handlers[method] ?? unimplementedHandler(mdef as grpc.MethodDefinition<unknown, unknown>, `${service}/${method}`);
  }
  for (const method of Object.keys(handlers)) {
    if (!(method in def)) throw new Error(`handler ${service}/${method} has no method in the proto`);
  }
  if (server instanceof H2GrpcServer) server.addService(def, impl);
  else server.addService(def, impl as grpc.UntypedServiceImplementation);
}

/** The client port's gRPC server (src/api/h2_grpc.ts). `hooks`: the metrics' call counters and
 *  the client-certificate CN (src/gateway/metrics.ts, src/tls/identity.ts). */
export function newGrpcServer(maxRequestBytes: number, hooks: Omit<H2GrpcServerOptions, 'maxReceiveBytes'> = {}): H2GrpcServer {
  return new H2GrpcServer({ ...hooks, maxReceiveBytes: maxRequestBytes + GRPC_OVERHEAD_BYTES });
}
