// The client port: the gRPC server, the HTTP side and the shared listener, as src/embed/member.ts
// wires them.
import { H2GrpcServer, type H2GrpcServerOptions } from '../grpcserver/server';
import type { Server } from '../server/server';
import { GRPC_OVERHEAD_BYTES, type ServiceHandlers } from '../api/services';
import type { Logger } from '../util/log';
import { ClientListener } from '../grpcserver/listener';
import { JsonGateway } from '../http/gateway';
import { createClientHttpServer } from '../http/http_server';
import type { MemberMetrics } from '../http/metrics';
import { gatewayCommonNameGuard, tlsServerOptions, type ConnectionIdentities, type TlsMaterial } from '../tls';

export { MemberMetrics, WARNING_APPLY_DURATION_MS_DEFAULT } from '../http/metrics';
export { ClientListener, HTTP2_PREFACE } from '../grpcserver/listener';
export { JsonGateway } from '../http/gateway';
export { GATEWAY_ROUTES } from '../http/routes';

export interface ClientEndpointOptions {
  grpc: H2GrpcServer;
  server: Server;
  /** The handler tables registered on `grpc`, by service: the gateway calls the same ones. */
  services: Readonly<Record<string, ServiceHandlers>>;
  maxRequestBytes: number;
  /** --max-txn-ops: the gateway refuses a longer JSON list while reading it. */
  maxTxnOps: number;
  metrics: MemberMetrics;
  /** What /version reports (etcd's API version we speak). */
  version: string;
  log: Logger;
  /** Client TLS (https:// listen URLs), from --cert-file & co. */
  tls?: TlsMaterial;
  /** With --client-cert-auth: where the listener records verified certificate CNs. */
  identities?: ConnectionIdentities;
  /** --max-tls-handshakes and --tls-handshake-timeout (https:// client URLs). */
  maxTlsHandshakes: number;
  tlsHandshakeTimeoutMs: number;
}

export interface ClientEndpoint {
  readonly ports: number[];
  /** Ends gateway streams, stops accepting, and closes connections after a grace period. */
  close(): Promise<void>;
}

/** The client port's gRPC server (src/grpcserver/server.ts), its receive limit etcd's:
 *  --max-request-bytes plus gRPC's framing headroom. `hooks`: the metrics' call counters, the
 *  client-certificate CN (src/http/metrics.ts, src/tls/identity.ts) and the log of internal
 *  errors. The etcd services are registered on it with api/services.ts addService. */
export function newGrpcServer(maxRequestBytes: number, hooks: Omit<H2GrpcServerOptions, 'maxReceiveBytes'> = {}): H2GrpcServer {
  return new H2GrpcServer({ ...hooks, maxReceiveBytes: maxRequestBytes + GRPC_OVERHEAD_BYTES });
}

/** Serves gRPC and HTTP (health, version, metrics, JSON gateway) on every client URL. */
export async function serveClients(o: ClientEndpointOptions, urls: readonly string[]): Promise<ClientEndpoint> {
  const gateway = new JsonGateway({ services: o.services, maxRequestBytes: o.maxRequestBytes, maxTxnOps: o.maxTxnOps, log: o.log, calls: o.metrics });
  const http = createClientHttpServer({ server: o.server, gateway, metrics: o.metrics.registry, version: o.version });
  if (o.tls?.commonNameAuth) gatewayCommonNameGuard(http, () => o.server.auth.enabled);
  const listener = new ClientListener({
    grpc: o.grpc,
    http,
    tls: o.tls ? { ...tlsServerOptions(o.tls), handshakeTimeout: o.tlsHandshakeTimeoutMs } : undefined,
    identities: o.identities,
    // etcd logs these too ("rejected connection from ..."): a client without a valid certificate.
    onTlsError: (err, remote) => o.log.warn('rejected connection', { remote, error: err.message }),
    maxTlsHandshakes: o.maxTlsHandshakes,
    onHandshakesShed: (count) => o.log.warn('TLS handshakes in progress at --max-tls-handshakes: connections closed', { count, maxTlsHandshakes: o.maxTlsHandshakes }),
  });
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
