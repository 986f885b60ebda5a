// quorumctl's connection to a member: raw @grpc/grpc-js clients over our etcd v3 protos. Picks the
// first of --endpoints that accepts a connection within --dial-timeout (etcdctl balances over all
// of them; for a one-shot command the first reachable one is what matters), and turns gRPC errors
// into etcd's own messages, which is what users search for.
import * as grpc from '@grpc/grpc-js';
import { serviceDefinition } from '../../proto';

export type EtcdService = 'KV' | 'Watch' | 'Lease' | 'Cluster' | 'Maintenance';

/** Any of the generated client's methods, called dynamically. */
export type RawClient = grpc.Client & Record<string, (...args: unknown[]) => unknown>;

/** A failure to print as `Error: <message>` (exit code 1). */
export class CommandError extends Error {
  override name = 'CommandError';
}

/** etcd clients accept responses of any size (MaxInt32); a large range must not fail here. */
const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.max_receive_message_length': -1,
  'grpc.max_send_message_length': -1,
};

const ctors = new Map<EtcdService, grpc.ServiceClientConstructor>();
function ctor(service: EtcdService): grpc.ServiceClientConstructor {
  let c = ctors.get(service);
  if (!c) {
    c = grpc.makeGenericClientConstructor(serviceDefinition(`etcdserverpb.${service}`), service);
    ctors.set(service, c);
  }
  return c;
}

export interface ConnectionOptions {
  dialTimeoutMs: number;
  commandTimeoutMs: number;
  /** TLS (--cacert/--cert/--key or https:// endpoints); insecure when absent. */
  credentials?: grpc.ChannelCredentials;
}

/** "http://host:port" or "host:port" → "host:port". */
export function normalizeEndpoint(e: string): string {
  const t = e.trim();
  if (/^[a-z]+:\/\//i.test(t)) {
    const u = new URL(t);
    return `${u.hostname}:${u.port || '2379'}`;
  }
  return t;
}

export function splitEndpoints(raw: string): string[] {
  const list = raw.split(',').map((e) => e.trim()).filter((e) => e.length > 0).map(normalizeEndpoint);
  if (list.length === 0) throw new CommandError('no endpoints given (--endpoints=host:port[,host:port...])');
  return list;
}

export class Connection {
  private readonly clients = new Map<EtcdService, RawClient>();

  private constructor(
    readonly endpoint: string,
    private readonly channel: grpc.Channel,
    readonly opts: ConnectionOptions,
  ) {}

  /** Connects to the first endpoint that answers within the dial timeout. */
  static async open(endpoints: readonly string[], opts: ConnectionOptions): Promise<Connection> {
    const failures: string[] = [];
    for (const ep of endpoints) {
      const c = await Connection.openOne(ep, opts).catch((err: Error) => (failures.push(`${ep}: ${err.message}`), undefined));
      if (c) return c;
    }
    throw new CommandError(`no endpoint is reachable (${failures.join('; ')})`);
  }

  /** Connects to exactly this endpoint (endpoint status/health look at each one). */
  static async openOne(endpoint: string, opts: ConnectionOptions): Promise<Connection> {
    const channel = new grpc.Channel(endpoint, opts.credentials ?? grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
    const deadline = Date.now() + opts.dialTimeoutMs;
    for (;;) {
      const state = channel.getConnectivityState(true);
      if (state === grpc.connectivityState.READY) return new Connection(endpoint, channel, opts);
      if (Date.now() >= deadline) {
        channel.close();
        throw new CommandError(`context deadline exceeded (could not connect within ${opts.dialTimeoutMs} ms)`);
      }
      await new Promise<void>((resolve) => channel.watchConnectivityState(state, deadline, () => resolve()));
    }
  }

  client(service: EtcdService): RawClient {
    let c = this.clients.get(service);
    if (!c) {
      const Ctor = ctor(service);
      c = new Ctor(this.endpoint, this.opts.credentials ?? grpc.credentials.createInsecure(), { ...CHANNEL_OPTIONS, channelOverride: this.channel }) as unknown as RawClient;
      this.clients.set(service, c);
    }
    return c;
  }

  /** One unary call with the command timeout; rejects with etcd's message. */
  unary<T>(service: EtcdService, method: string, req: object): Promise<T> {
    const c = this.client(service);
    return new Promise<T>((resolve, reject) => {
      c[method]!(req, { deadline: Date.now() + this.opts.commandTimeoutMs }, (err: grpc.ServiceError | null, res: T) =>
        err ? reject(toCommandError(err)) : resolve(res),
      );
    });
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.channel.close();
  }
}

/** etcd's message as the server sent it ("etcdserver: mvcc: database space exceeded"); gRPC's own
 *  failures (deadline, unavailable) keep grpc-js's description. */
export function toCommandError(err: unknown): CommandError {
  const e = err as Partial<grpc.ServiceError>;
  if (e && typeof e.code === 'number') {
    if (e.code === grpc.status.DEADLINE_EXCEEDED) return new CommandError('context deadline exceeded');
    if (e.details) return new CommandError(e.details);
  }
  return new CommandError(err instanceof Error ? err.message : String(err));
}
