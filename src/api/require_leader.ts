// etcd's require-leader (clientv3.WithRequireLeader: request metadata `hasleader: true`), as its
// gRPC interceptors do it (v3rpc/interceptor.go):
//   * a unary call, or a new stream, that carries it on a member without a leader fails at once
//     with Unavailable "etcdserver: no leader" (instead of waiting out the request timeout);
//   * a stream opened with it (Watch, LeaseKeepAlive, Observe) is ended with the same error once
//     the member has had no leader for 3 consecutive election timeouts (etcd's maxNoLeaderCnt:
//     more patient with open streams than with new requests, because reconnecting costs more), so
//     that a client stuck behind a cut-off member fails over to another.
//
// Before the member has seen its first leader since it started, new requests are not refused:
// etcd does not serve clients at all until it has published itself through a leader (its client
// handlers wait for ReadyNotify), so an `etcdctl watch` started with the member simply waits for
// the first leader there; here, it is served as it would be without the metadata. Streams are still
// ended after 3 election timeouts without a leader, whenever they were opened.
//
// Cost: with a leader the unary check is one comparison; the metadata is read only when there is
// no leader, or once when a stream starts.
import { Errors } from '../util/errors';
import type { BidiCall, BidiHandler, BidiListener, CallBase, Handler, ServerStreamCall, ServerStreamHandler, StreamListener, UnaryCall, UnaryHandler } from './call';
import type { ServiceHandlers } from './services';
import { serviceDefinition } from '../proto';

/** Election timeouts without a leader before require-leader streams are ended (etcd's
 *  maxNoLeaderCnt). */
export const NO_LEADER_TIMEOUTS_MAX = 3;

const METADATA_REQUIRE_LEADER = 'hasleader';
const METADATA_HAS_LEADER = 'true';

function requiresLeader(call: CallBase): boolean {
  return call.metadata(METADATA_REQUIRE_LEADER) === METADATA_HAS_LEADER;
}

export class RequireLeader {
  /** Streams opened with `hasleader: true` and still running. */
  private readonly streams = new Set<CallBase>();
  private readonly timer: NodeJS.Timeout;
  private noLeaderTimeouts = 0;
  /** Set once the member has known a leader (see the top of the file). */
  private hadLeader = false;

  /** `leaderKnown`: whether the member knows a leader now (asked per request: must be cheap). */
  constructor(
    private readonly leaderKnown: () => boolean,
    electionTimeoutMs: number,
  ) {
    this.timer = setInterval(() => this.check(), electionTimeoutMs);
    this.timer.unref();
  }

  private get hasLeader(): boolean {
    return this.leaderKnown();
  }

  /** No leader now, and this member has had one before (new hasleader requests are refused). */
  private get leaderLost(): boolean {
    if (this.hadLeader) return !this.hasLeader;
    this.hadLeader = this.hasLeader;
    return false;
  }

  /** Once per election timeout (etcd's monitorLeader). */
  private check(): void {
    if (this.hasLeader) {
      this.hadLeader = true;
      this.noLeaderTimeouts = 0;
      return;
    }
    this.noLeaderTimeouts++;
    if (this.noLeaderTimeouts < NO_LEADER_TIMEOUTS_MAX || this.streams.size === 0) return;
    const ended = [...this.streams];
    this.streams.clear();
    for (const call of ended) call.fail(Errors.NoLeader);
  }

  get streamCount(): number {
    return this.streams.size;
  }

  close(): void {
    clearInterval(this.timer);
    this.streams.clear();
  }

  /** `handlers` of `service` with the require-leader check in front of each. */
  wrap(service: string, handlers: ServiceHandlers): ServiceHandlers {
    const def = serviceDefinition(service);
    const out: Record<string, Handler> = {};
    for (const [method, h] of Object.entries(handlers)) {
      const m = def[method];
      if (!m) {
        out[method] = h; // completeService refuses it at registration
        continue;
      }
      if (m.requestStream) out[method] = this.bidi(h as BidiHandler<unknown, unknown>);
      else if (m.responseStream) out[method] = this.serverStream(h as ServerStreamHandler<unknown, unknown>);
      else out[method] = this.unary(h as UnaryHandler<unknown, unknown>);
    }
    return out;
  }

  private unary(h: UnaryHandler<unknown, unknown>): UnaryHandler<unknown, unknown> {
    return (call: UnaryCall<unknown, unknown>) => {
      if (this.leaderLost && requiresLeader(call)) return call.fail(Errors.NoLeader);
      h(call);
    };
  }

  /** Registers a require-leader stream; returns whether the stream may start. */
  private admit(call: CallBase): boolean {
    if (!requiresLeader(call)) return true;
    if (this.leaderLost) {
      call.fail(Errors.NoLeader);
      return false;
    }
    this.streams.add(call);
    return true;
  }

  private serverStream(h: ServerStreamHandler<unknown, unknown>): ServerStreamHandler<unknown, unknown> {
    return (call: ServerStreamCall<unknown, unknown>) => {
      if (!this.admit(call)) return;
      const l = h(call);
      if (!this.streams.has(call)) return l;
      return { drain: l?.drain && (() => l.drain!()), closed: this.untrackOnClose(call, l) };
    };
  }

  private bidi(h: BidiHandler<unknown, unknown>): BidiHandler<unknown, unknown> {
    const ignored: BidiListener<unknown> = { message: () => undefined, halfClosed: () => undefined };
    return (call: BidiCall<unknown>) => {
      if (!this.admit(call)) return ignored;
      const l = h(call);
      if (!this.streams.has(call)) return l;
      return {
        message: (req: unknown) => l.message(req),
        halfClosed: () => l.halfClosed(),
        drain: l.drain && (() => l.drain!()),
        closed: this.untrackOnClose(call, l),
      };
    };
  }

  /** The closed() of a tracked stream: forgets it here, then tells the handler's listener. (The
   *  listener is delegated to, not wrapped by prototype: its methods must keep their own this.) */
  private untrackOnClose(call: CallBase, l: StreamListener | void): () => void {
    return () => {
      this.streams.delete(call);
      l?.closed?.();
    };
  }
}
