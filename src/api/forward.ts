// Requests only the leader can answer (lease keepalives and TimeToLive: lease expiry lives on the
// leader's clock), sent by a follower to the leader's client URL, as etcd followers forward them.
import * as grpc from '@grpc/grpc-js';
import { EtcdError, Errors } from '../util/errors';
import type { Server } from '../server/server';
import { serviceDefinition } from '../proto';

const FORWARD_TIMEOUT_MS = 5000;

/** A generic client (makeGenericClientConstructor): one method per RPC of the service. */
type AnyClient = grpc.Client & Record<string, (...args: unknown[]) => unknown>;

interface KeepAliveStream {
  url: string;
  call: grpc.ClientDuplexStream<unknown, { ID: string; TTL: string }>;
  pending: { resolve: (ttl: number) => void; reject: (e: unknown) => void }[];
}

export class LeaderForwarder {
  private clients = new Map<string, AnyClient>();
  private keepAlive: KeepAliveStream | undefined;

  /** `credentialsFor`: how to dial a client URL (https needs TLS: src/tls credentialsForUrl). */
  constructor(
    private readonly server: Server,
    private readonly credentialsFor: (clientUrl: string) => grpc.ChannelCredentials = () => grpc.credentials.createInsecure(),
  ) {}

  /** The leader's first client URL, or NoLeader. */
  private leaderTarget(): string {
    const leader = this.server.membership.get(this.server.raftStatus().leader);
    const url = leader?.clientURLs[0];
    if (!leader || !url) throw Errors.NoLeader;
    return url;
  }

  /** A client per service and leader URL (the URL's scheme decides TLS). */
  private client(service: string, url: string): AnyClient {
    const key = `${service}@${url}`;
    let c = this.clients.get(key);
    if (!c) {
      const u = new URL(url);
      const Ctor = grpc.makeGenericClientConstructor(serviceDefinition(service), service);
      c = new Ctor(`${u.hostname}:${u.port}`, this.credentialsFor(url)) as unknown as AnyClient;
      this.clients.set(key, c);
    }
    return c;
  }

  unary<T>(service: string, method: string, request: object): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let target: string;
      try {
        target = this.leaderTarget();
      } catch (err) {
        return reject(err as Error);
      }
      this.client(service, target)[method]!(request, { deadline: Date.now() + FORWARD_TIMEOUT_MS }, (err: grpc.ServiceError | null, res: T) =>
        err ? reject(new EtcdError(err.code as EtcdError['code'], err.details)) : resolve(res),
      );
    });
  }

  /** One keepalive through a long-lived stream to the leader; resolves with the TTL it granted
   *  (0: not found / expired, as the leader answers). */
  renew(id: string): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      let target: string;
      try {
        target = this.leaderTarget();
      } catch (err) {
        return reject(err as Error);
      }
      let s = this.keepAlive;
      if (!s || s.url !== target) {
        this.closeKeepAlive(Errors.LeaderChanged);
        const call = this.client('etcdserverpb.Lease', target).LeaseKeepAlive!() as KeepAliveStream['call'];
        const stream: KeepAliveStream = { url: target, call, pending: [] };
        // The leader answers one stream's keepalives in order: responses match requests FIFO.
        call.on('data', (res: { ID: string; TTL: string }) => stream.pending.shift()?.resolve(Number(res.TTL)));
        call.on('error', (err: grpc.ServiceError) => {
          if (this.keepAlive === stream) this.keepAlive = undefined;
          for (const p of stream.pending.splice(0)) p.reject(new EtcdError(err.code as EtcdError['code'], err.details));
        });
        call.on('end', () => {
          if (this.keepAlive === stream) this.keepAlive = undefined;
          for (const p of stream.pending.splice(0)) p.reject(Errors.LeaderChanged);
        });
        this.keepAlive = s = stream;
      }
      s.pending.push({ resolve, reject });
      s.call.write({ ID: id });
    });
  }

  private closeKeepAlive(err: EtcdError): void {
    const s = this.keepAlive;
    if (!s) return;
    this.keepAlive = undefined;
    for (const p of s.pending.splice(0)) p.reject(err);
    s.call.end();
  }

  close(): void {
    this.closeKeepAlive(Errors.Stopped);
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}
