// The HTTP side of the client port and the shared listener: what src/cli/member.ts wires up.
import type * as grpc from '@grpc/grpc-js';
import type { Server } from '../server/server';
import type { Handlers } from '../api/grpc_server';
import type { Logger } from '../util/log';
import { ClientListener } from './listener';
import { JsonGateway } from './gateway';
import { createClientHttpServer } from './http_server';
import type { MemberMetrics } from './metrics';

export { MemberMetrics, WARNING_APPLY_DURATION_MS_DEFAULT } from './metrics';
export { ClientListener, HTTP2_PREFACE } from './listener';
export { JsonGateway } from './gateway';
export { GATEWAY_ROUTES } from './routes';

export interface ClientEndpointOptions {
  grpc: grpc.Server;
  server: Server;
  /** The handler objects registered on `grpc`, by service: the gateway calls the same ones. */
  services: Readonly<Record<string, Handlers>>;
  maxRequestBytes: number;
  metrics: MemberMetrics;
  /** What /version reports (etcd's API version we speak). */
  version: string;
  log: Logger;
}

export interface ClientEndpoint {
  readonly ports: number[];
  /** Ends gateway streams, stops accepting, and closes connections after a grace period. */
  close(): Promise<void>;
}

/** Serves gRPC and HTTP (health, version, metrics, JSON gateway) on every client URL. */
export async function serveClients(o: ClientEndpointOptions, urls: readonly string[]): Promise<ClientEndpoint> {
  const gateway = new JsonGateway({ services: o.services, maxRequestBytes: o.maxRequestBytes, log: o.log, calls: o.metrics });
  const http = createClientHttpServer({ server: o.server, gateway, metrics: o.metrics.registry, version: o.version });
  const listener = new ClientListener({ grpc: o.grpc, http });
  let ports: number[];
  try {
    ports = await listener.listen(urls);
  } catch (err) {
    await listener.close(0);
    throw err;
  }
  return {
    ports,
    close: async () => {
      gateway.close();
      await listener.close();
    },
  };
}
