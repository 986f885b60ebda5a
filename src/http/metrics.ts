// Prometheus metrics of one member, under etcd's metric names where etcd has one (so existing
// dashboards and alerts work), served at /metrics. See docs/operations.md for the list.
//
// Cost: state that already lives somewhere (leader, indexes, sizes, key count) is read only when
// scraped (gauges with collect()); what happens on a hot path is one counter increment or one
// histogram observation through a child created up front. The gRPC counters are pre-created for
// every method and code, as go-grpc-prometheus does for etcd (a scrape shows zeros rather than
// missing series); a call only adds to plain numbers, handed to prom-client when scraped (a
// prom-client child's inc hashes and validates its labels on every call: ~two per call on the
// put path).
import * as grpc from '@grpc/grpc-js';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, exponentialBuckets } from 'prom-client';
import type { Server } from '../server/server';
import type { Backend } from '../storage/backend/backend';
import { decodeRequest } from '../server/codec';
import { serviceDefinitions } from '../proto';
import { MessageType, type Message } from '../raft';
import type { Logger } from '../util/log';
import { idToHex } from '../util/ids';

/** etcd's --warning-apply-duration default (etcd 3.4: 100 ms). */
export const WARNING_APPLY_DURATION_MS_DEFAULT = 100;
/** A heartbeat unanswered for this long is forgotten rather than measured (it was lost). */
const RTT_SAMPLE_AGE_MS_MAX = 5000;

/** gRPC status code names as go-grpc-prometheus labels them. */
export const GRPC_CODE_NAMES = [
  'OK', 'Canceled', 'Unknown', 'InvalidArgument', 'DeadlineExceeded', 'NotFound', 'AlreadyExists', 'PermissionDenied',
  'ResourceExhausted', 'FailedPrecondition', 'Aborted', 'OutOfRange', 'Unimplemented', 'Internal', 'Unavailable',
  'DataLoss', 'Unauthenticated',
] as const;

/** The counts of one gRPC method since the last scrape: `started`, then `handled[code]` once it
 *  ends; each scrape adds them to the method's prom-client children and zeroes them. */
export interface MethodCounters {
  started: number;
  handled: number[];
  startedChild: Counter.Internal;
  handledChildren: Counter.Internal[];
}

/** What a gateway call reports to the gRPC metrics (the same series a gRPC call moves). */
export interface CallObserver {
  /** `path` is "/package.Service/Method"; the returned function is called once with the code. */
  start(path: string): (code: number) => void;
}

export interface MemberMetricsOptions {
  server: Server;
  log: Logger;
  serverVersion: string;
  warningApplyDurationMs?: number;
  /** Watchers on the member's watchable store (client watches, Observe streams, Campaign and Lock
   *  waiters): etcd_debugging_mvcc_watcher_total. */
  watchers?: () => number;
}

function methodType(def: grpc.MethodDefinition<unknown, unknown>): string {
  if (def.requestStream && def.responseStream) return 'bidi_stream';
  if (def.requestStream) return 'client_stream';
  if (def.responseStream) return 'server_stream';
  return 'unary';
}

/** What the watch metrics read at each scrape. */
export interface WatchBufferReadings {
  readonly bufferedBytes: () => number;
  readonly unsyncedWatchers: () => number;
  readonly slowWatcherMoves: () => number;
  readonly streamsOverBound: () => number;
  readonly compactedWatchers: () => number;
}

export class MemberMetrics implements CallObserver {
  readonly registry = new Registry();
  private readonly methods = new Map<string, MethodCounters>();
  private readonly leaderChanges: Counter;
  private readonly proposalsFailed: Counter;
  private readonly putTotal: Counter;
  private readonly slowApplies: Counter;
  private readonly learnerPromotions: Counter;
  private readonly grpcCallsEvicted: Counter;
  private readonly walFsyncSeconds: Histogram;
  private readonly backendCommit: Histogram;
  private readonly peerRtt: Histogram<'To'>;
  private readonly rttChildren = new Map<bigint, Histogram.Internal<'To'>>();
  /** Per peer: when the oldest unanswered heartbeat went out (performance.now()). */
  private readonly heartbeatSentAt = new Map<bigint, number>();
  private lastLeader = 0n;
  private hookedBackend: Backend | undefined;
  private readonly warnApplyMs: number;

  constructor(private readonly o: MemberMetricsOptions) {
    const r = this.registry;
    const s = o.server;
    this.warnApplyMs = o.warningApplyDurationMs ?? WARNING_APPLY_DURATION_MS_DEFAULT;
    collectDefaultMetrics({ register: r });
    const gauge = (name: string, help: string, read: () => number) =>
      new Gauge({ name, help, registers: [r], collect() { this.set(read()); } });
    gauge('etcd_server_has_leader', 'Whether or not a leader exists. 1 is existence, 0 is not.', () => (s.raftStatus().leader !== 0n ? 1 : 0));
    gauge('etcd_server_is_leader', 'Whether or not this member is a leader. 1 if is, 0 otherwise.', () => (s.isLeader() ? 1 : 0));
    // etcd exports these two as gauges (of the commit and applied indexes) despite the _total.
    gauge('etcd_server_proposals_committed_total', 'The total number of consensus proposals committed.', () => s.raftStatus().commit);
    gauge('etcd_server_proposals_applied_total', 'The total number of consensus proposals applied.', () => s.appliedIndex);
    gauge('etcd_server_proposals_pending', 'The current number of pending proposals to commit.', () => s.pendingProposals);
    gauge('etcd_mvcc_db_total_size_in_bytes', 'Total size of the underlying database physically allocated in bytes.', () => {
      this.hookBackend();
      return s.durableBackend?.allocatedBytes ?? 0;
    });
    gauge('etcd_mvcc_db_total_size_in_use_in_bytes', 'Total size of the underlying database logically in use in bytes.', () => s.durableBackend?.liveBytes ?? 0);
    gauge('etcd_debugging_mvcc_keys_total', 'Total number of keys.', () => s.store.keyCount);
    gauge('etcd_debugging_mvcc_watcher_total', 'Total number of watchers.', () => o.watchers?.() ?? 0);
    // quorumkv's own (--hot-value-bytes): values kept in memory, and the spill file behind the rest.
    gauge('quorumkv_mvcc_heap_value_bytes', 'Bytes of values kept in memory under --hot-value-bytes (0 with -1).', () => s.store.heapValueBytes);
    gauge('quorumkv_mvcc_spill_file_bytes', 'Size of the value spill files, garbage included.', () => s.store.spillBytes.file);
    gauge('quorumkv_mvcc_spill_live_bytes', 'Bytes of values in the spill files that versions still reference.', () => s.store.spillBytes.live);
    gauge('etcd_debugging_mvcc_current_revision', 'The current revision of store.', () => s.store.currentRevision);
    gauge('etcd_debugging_mvcc_compact_revision', 'The revision of the last compaction in store.', () => s.store.compactRevision);
    new Gauge({ name: 'etcd_server_version', help: "Which version is running. 1 for 'server_version' label with current version.", labelNames: ['server_version'], registers: [r] }).set({ server_version: o.serverVersion }, 1);
    new Gauge({ name: 'etcd_server_id', help: "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.", labelNames: ['server_id'], registers: [r] }).set({ server_id: idToHex(s.memberId) }, 1);
    this.leaderChanges = new Counter({ name: 'etcd_server_leader_changes_seen_total', help: 'The number of leader changes seen.', registers: [r] });
    this.proposalsFailed = new Counter({ name: 'etcd_server_proposals_failed_total', help: 'The total number of failed proposals seen.', registers: [r] });
    this.putTotal = new Counter({ name: 'etcd_mvcc_put_total', help: 'Total number of puts seen by this member.', registers: [r] });
    this.learnerPromotions = new Counter({ name: 'etcd_server_learner_promote_successes', help: 'The total number of successful learner promotions while this member is leader.', registers: [r] });
    this.grpcCallsEvicted = new Counter({
      name: 'quorumkv_grpc_server_calls_evicted_total',
      help: 'Calls ended with RESOURCE_EXHAUSTED because the responses queued for clients that do not read them exceeded the member budget.',
      registers: [r],
    });
    this.slowApplies = new Counter({ name: 'etcd_server_slow_apply_total', help: 'The total number of slow apply requests (likely overloaded from slow disk).', registers: [r] });
    // etcd's buckets: 1 ms .. 8 s (disk), 0.1 ms .. 0.8 s (peer round trips).
    this.walFsyncSeconds = new Histogram({ name: 'etcd_disk_wal_fsync_duration_seconds', help: 'The latency distributions of fsync called by WAL.', buckets: exponentialBuckets(0.001, 2, 14), registers: [r] });
    this.backendCommit = new Histogram({ name: 'etcd_disk_backend_commit_duration_seconds', help: 'The latency distributions of commit called by backend.', buckets: exponentialBuckets(0.001, 2, 14), registers: [r] });
    this.peerRtt = new Histogram({ name: 'etcd_network_peer_round_trip_time_seconds', help: 'Round-Trip-Time histogram between peers (leader heartbeat to heartbeat response).', labelNames: ['To'], buckets: exponentialBuckets(0.0001, 2, 14), registers: [r] });
    this.initGrpcCounters();
    this.hookBackend();
  }

  private initGrpcCounters(): void {
    const methods = this.methods;
    const started = new Counter({
      name: 'grpc_server_started_total',
      help: 'Total number of RPCs started on the server.',
      labelNames: ['grpc_type', 'grpc_service', 'grpc_method'],
      registers: [this.registry],
      collect() {
        for (const c of methods.values()) {
          if (c.started > 0) c.startedChild.inc(c.started);
          c.started = 0;
        }
      },
    });
    const handled = new Counter({
      name: 'grpc_server_handled_total',
      help: 'Total number of RPCs completed on the server, regardless of success or failure.',
      labelNames: ['grpc_type', 'grpc_service', 'grpc_method', 'grpc_code'],
      registers: [this.registry],
      collect() {
        for (const c of methods.values()) {
          for (let code = 0; code < c.handled.length; code++) {
            if (c.handled[code]! > 0) c.handledChildren[code]!.inc(c.handled[code]);
            c.handled[code] = 0;
          }
        }
      },
    });
    const services = serviceDefinitions();
    for (const [service, def] of services) {
      if (service.startsWith('quorumkvpb.')) continue; // the peer protocol is not a client API
      for (const [method, mdef] of Object.entries(def)) {
        const labels = { grpc_type: methodType(mdef as grpc.MethodDefinition<unknown, unknown>), grpc_service: service, grpc_method: method };
        const c: MethodCounters = {
          started: 0,
          handled: GRPC_CODE_NAMES.map(() => 0),
          startedChild: started.labels(labels),
          handledChildren: GRPC_CODE_NAMES.map((code) => handled.labels({ ...labels, grpc_code: code })),
        };
        c.startedChild.inc(0);
        for (const h of c.handledChildren) h.inc(0);
        this.methods.set(`/${service}/${method}`, c);
      }
    }
  }

  start(path: string): (code: number) => void {
    const c = this.methods.get(path);
    if (!c) return () => undefined;
    c.started++;
    let done = false;
    return (code) => {
      if (done) return;
      done = true;
      // An unknown code counts as Unknown (2), as before.
      c.handled[c.handled[code] === undefined ? 2 : code]!++;
    };
  }

  // ---- hooks called by the member -------------------------------------------------------------

  /** Server option: how long applying one entry took; warns as etcd does above the threshold. */
  observeApply(data: Uint8Array, durationMs: number): void {
    if (durationMs < this.warnApplyMs) return;
    this.slowApplies.inc();
    let kind = 'unknown';
    try {
      kind = decodeRequest(data).request ?? 'empty';
    } catch {
      /* leave it unknown */
    }
    this.o.log.warn('apply request took too long', { took: `${durationMs.toFixed(1)}ms`, 'expected-duration': `${this.warnApplyMs}ms`, request: kind });
  }

  /** The leader promoted a learner by itself (--auto-promote-learners). */
  learnerPromoted(): void {
    this.learnerPromotions.inc();
  }

  /** The client port's queued response bytes (read when scraped). */
  watchGrpcResponseBuffers(bufferedBytes: () => number): void {
    new Gauge({
      name: 'quorumkv_grpc_server_buffered_response_bytes',
      help: 'Response bytes queued on the client port for clients that have not read them yet (flow-control window or socket).',
      registers: [this.registry],
      collect() {
        this.set(bufferedBytes());
      },
    });
  }

  /** A counter that follows `value()` (a running total kept elsewhere) when scraped. */
  private collectedCounter(name: string, help: string, value: () => number): void {
    let seen = 0;
    new Counter({
      name,
      help,
      registers: [this.registry],
      collect() {
        const v = value();
        if (v > seen) this.inc(v - seen);
        seen = Math.max(seen, v);
      },
    });
  }

  /** A gauge set to `value()` when scraped. */
  private collectedGauge(name: string, help: string, value: () => number): void {
    new Gauge({ name, help, registers: [this.registry], collect() { this.set(value()); } });
  }

  /** The member's budget of large range answers (read when scraped; api/range_budget.ts). */
  watchRangeAnswers(b: { readonly bytes: number; readonly waiting: number; readonly refused: number; readonly waited: number }): void {
    const counter = (name: string, help: string, value: () => number) => this.collectedCounter(name, help, value);
    const gauge = (name: string, help: string, value: () => number) => this.collectedGauge(name, help, value);
    gauge('quorumkv_range_answer_bytes', 'Bytes held by large range answers being read and sent (bounded by --max-range-answer-bytes).', () => b.bytes);
    gauge('quorumkv_range_answers_waiting', 'Large range answers waiting for room under --max-range-answer-bytes.', () => b.waiting);
    counter('quorumkv_range_answers_waited_total', 'Large range answers that waited for room under --max-range-answer-bytes before they were sent.', () => b.waited);
    counter('quorumkv_range_answers_refused_total', 'Large range answers refused with RESOURCE_EXHAUSTED: too many waiting, or waited too long, for room under --max-range-answer-bytes.', () => b.refused);
  }

  /** The watch streams' buffers and slow watchers (read when scraped; api/watch_service.ts). */
  watchSlowWatchers(read: WatchBufferReadings): void {
    const counter = (name: string, help: string, value: () => number) => this.collectedCounter(name, help, value);
    const gauge = (name: string, help: string, value: () => number) => this.collectedGauge(name, help, value);
    gauge('etcd_debugging_mvcc_slow_watcher_total', 'Total number of unsynced slow watchers.', read.unsyncedWatchers);
    gauge('quorumkv_watch_buffered_bytes', 'Watch response bytes held for clients that have not read them yet (--max-watch-buffer-bytes bounds them).', read.bufferedBytes);
    counter('quorumkv_watch_slow_watchers_total', 'Watchers moved to catch-up from history because their stream was over its buffer bound or not reading.', read.slowWatcherMoves);
    counter('quorumkv_watch_streams_over_bound_total', 'Times a watch stream was over --max-watch-stream-buffer-bytes, or over its share while the member was over --max-watch-buffer-bytes.', read.streamsOverBound);
    counter('quorumkv_watch_compacted_watchers_total', 'Watchers cancelled with compact_revision because the history they still needed was compacted.', read.compactedWatchers);
  }

  /** A call ended because the member's response budget was exceeded. */
  grpcCallEvicted(): void {
    this.grpcCallsEvicted.inc();
  }

  proposalFailed(): void {
    this.proposalsFailed.inc();
  }

  /** Events applied to the store (one PUT event per put, including those in txns). */
  observeEvents(events: readonly { type: number }[]): void {
    let puts = 0;
    for (const e of events) if (e.type === 0) puts++;
    if (puts > 0) this.putTotal.inc(puts);
  }

  observeWalFsync(durationMs: number): void {
    this.walFsyncSeconds.observe(durationMs / 1000);
  }

  /** Raft's soft state: counts changes to a new, known leader (etcd's leaderChanges). */
  leaderSeen(lead: bigint): void {
    if (lead !== 0n && lead !== this.lastLeader) this.leaderChanges.inc();
    this.lastLeader = lead;
    if (lead === 0n) this.heartbeatSentAt.clear();
  }

  /** Outgoing Raft messages: the leader's heartbeats start a round-trip sample per peer. */
  messagesSent(msgs: readonly Message[]): void {
    for (const m of msgs) {
      if (m.type !== MessageType.MsgHeartbeat) continue;
      const sent = this.heartbeatSentAt.get(m.to);
      const now = performance.now();
      if (sent === undefined || now - sent > RTT_SAMPLE_AGE_MS_MAX) this.heartbeatSentAt.set(m.to, now);
    }
  }

  /** Incoming Raft messages: a heartbeat response ends the sample of its peer. */
  messageReceived(m: Message): void {
    if (m.type !== MessageType.MsgHeartbeatResp) return;
    const sent = this.heartbeatSentAt.get(m.from);
    if (sent === undefined) return;
    this.heartbeatSentAt.delete(m.from);
    let child = this.rttChildren.get(m.from);
    if (!child) this.rttChildren.set(m.from, (child = this.peerRtt.labels({ To: idToHex(m.from) })));
    child.observe((performance.now() - sent) / 1000);
  }

  /** The backend can be replaced (a snapshot from the leader): hook whichever is current. */
  private hookBackend(): void {
    const b = this.o.server.durableBackend;
    if (!b || b === this.hookedBackend) return;
    this.hookedBackend = b;
    b.onCommit = (ms) => this.backendCommit.observe(ms / 1000);
  }
}
