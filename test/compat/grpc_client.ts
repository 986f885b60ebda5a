// A raw etcd v3 gRPC client for watch protocol tests and the watch benchmark: exactly the wire
// messages, nothing interpreted (unlike etcd3 or clientv3, which hide created/canceled/progress).
import * as grpc from '@grpc/grpc-js';
import { grpcDefinitions } from '../../src/proto';

export interface RawWatchResponse {
  header: { revision: string; cluster_id: string; member_id: string; raft_term: string };
  watch_id: string;
  created: boolean;
  canceled: boolean;
  compact_revision: string;
  cancel_reason: string;
  fragment: boolean;
  events: { type: number; kv: { key: Buffer; value: Buffer; mod_revision: string }; prev_kv: { value: Buffer } | null }[];
}

type Ctor = new (address: string, creds: grpc.ChannelCredentials, opts?: object) => grpc.Client & Record<string, (...a: unknown[]) => unknown>;

function service(name: 'Watch' | 'KV' | 'Lease'): Ctor {
  const pkg = grpcDefinitions().etcdserverpb as Record<string, unknown>;
  return pkg[name] as Ctor;
}

export function kvClient(endpoint: string): grpc.Client & Record<string, (...a: unknown[]) => unknown> {
  const C = service('KV');
  return new C(endpoint, grpc.credentials.createInsecure());
}

/** Unary call as a promise. */
export function unary<T>(client: grpc.Client & Record<string, (...a: unknown[]) => unknown>, method: string, req: object): Promise<T> {
  return new Promise((resolve, reject) => client[method](req, (err: Error | null, res: T) => (err ? reject(err) : resolve(res))));
}

/** One Watch stream: send requests, collect responses, await a response matching a predicate. */
export class RawWatchStream {
  readonly responses: RawWatchResponse[] = [];
  private readonly client: grpc.Client & Record<string, (...a: unknown[]) => unknown>;
  readonly call: grpc.ClientDuplexStream<object, RawWatchResponse>;
  private waiters: { pred: (r: RawWatchResponse) => boolean; resolve: (r: RawWatchResponse) => void }[] = [];
  /** Optional per-response hook (the benchmark counts events without keeping responses). */
  onResponse: ((r: RawWatchResponse) => void) | undefined;
  keep = true;

  constructor(endpoint: string, client?: grpc.Client & Record<string, (...a: unknown[]) => unknown>) {
    const C = service('Watch');
    this.client = client ?? new C(endpoint, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': -1 });
    this.call = (this.client as unknown as { Watch(): grpc.ClientDuplexStream<object, RawWatchResponse> }).Watch();
    this.call.on('data', (r: RawWatchResponse) => {
      if (this.keep) this.responses.push(r);
      this.onResponse?.(r);
      this.waiters = this.waiters.filter((w) => (w.pred(r) ? (w.resolve(r), false) : true));
    });
    this.call.on('error', () => undefined);
  }

  get grpcClient(): grpc.Client & Record<string, (...a: unknown[]) => unknown> {
    return this.client;
  }

  send(req: object): void {
    this.call.write(req);
  }

  create(c: object): void {
    this.send({ create_request: c });
  }

  /** Resolves with the first response (already received or future) matching `pred`. */
  waitFor(pred: (r: RawWatchResponse) => boolean, timeoutMs = 5000): Promise<RawWatchResponse> {
    const have = this.responses.find(pred);
    if (have) return Promise.resolve(have);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no matching watch response within ${timeoutMs} ms; got ${JSON.stringify(this.responses.slice(-5))}`)), timeoutMs);
      this.waiters.push({ pred, resolve: (r) => (clearTimeout(t), resolve(r)) });
    });
  }

  close(): void {
    this.call.cancel();
  }

  closeClient(): void {
    this.call.cancel();
    this.client.close();
  }
}
