// Assembles one member from its configuration: store and apply path, the log under them, and the
// client gRPC server with every etcd service.
import fs from 'node:fs';
import type * as grpc from '@grpc/grpc-js';
import type { ServerConfig } from '../config/flags';
import { Logger } from '../util/log';
import { computeClusterId, computeMemberId, idToHex } from '../util/ids';
import { Server, SingleNodeLog } from '../server/server';
import { ETCD_SERVICES, addService, listen, newGrpcServer, type Handlers } from '../api/grpc_server';
import { kvService } from '../api/kv_service';
import { healthService } from '../api/health_service';

export interface RunningMember {
  readonly server: Server;
  readonly grpc: grpc.Server;
  readonly clientPorts: number[];
  stop(): Promise<void>;
}

export async function startMember(cfg: ServerConfig, log: Logger): Promise<RunningMember> {
  fs.mkdirSync(cfg.dataDir, { recursive: true, mode: 0o700 });
  const memberId = computeMemberId(cfg.initialAdvertisePeerUrls, cfg.initialClusterToken);
  const clusterId = computeClusterId([memberId]);
  const mlog = log.child({ member: idToHex(memberId), name: cfg.name });
  const server = new Server(new SingleNodeLog(), { memberId, clusterId, maxRequestBytes: cfg.maxRequestBytes, log: mlog });

  const g = newGrpcServer(cfg.maxRequestBytes);
  const services: Record<string, Handlers> = {
    'etcdserverpb.KV': kvService(server, { maxTxnOps: cfg.maxTxnOps }),
  };
  for (const name of ETCD_SERVICES) addService(g, name, services[name] ?? {});
  let serving = true;
  addService(g, 'grpc.health.v1.Health', healthService(() => serving));
  const clientPorts = await listen(g, cfg.listenClientUrls);
  mlog.info('ready to serve client requests', {
    'listen-client-urls': cfg.listenClientUrls,
    'data-dir': cfg.dataDir,
    'cluster-id': idToHex(clusterId),
    durability: 'in-memory only (no WAL yet): data is lost when the process exits',
  });

  return {
    server,
    grpc: g,
    clientPorts,
    stop: () =>
      new Promise<void>((resolve) => {
        serving = false;
        server.stop();
        const t = setTimeout(() => {
          g.forceShutdown();
          resolve();
        }, 2000);
        g.tryShutdown(() => {
          clearTimeout(t);
          resolve();
        });
      }),
  };
}
