// Assembles one member from its configuration: the data dir (locked), the backend (LevelDB) and the
// WAL recovered from it, Raft over the WAL, the store and apply path, and the client gRPC server
// with every etcd service.
import path from 'node:path';
import type { ServerConfig } from '../config/flags';
import type { Logger } from '../util/log';
import { idToHex } from '../util/ids';
import { watchLoopStalls } from '../util/loop_stall';
import { Errors } from '../util/errors';
import { Server } from '../server/server';
import { RaftNode } from '../server/raft_node';
import { openStorage } from '../server/bootstrap';
import { ClusterNode, peerHashKV } from '../server/peer';
import { CorruptChecker } from '../server/corrupt_check';
import { LearnerPromoter } from '../server/learner_promoter';
import { ConfChangeType } from '../raft';
import { Snapshotter } from '../server/snapshot';
import { ETCD_SERVICES, addService, type ServiceHandlers } from '../api/services';
import type { H2GrpcServer } from '../grpcserver/server';
import { MemberMetrics, newGrpcServer, serveClients, type ClientEndpoint } from './client_port';
import { kvService } from '../api/kv_service';
import { RangeAnswerBudget } from '../api/range_budget';
import { healthService } from '../api/health_service';
import { WatchableStore } from '../mvcc';
import { LeaseRunner, Lessor, minLeaseTtlSec, restoreLeases } from '../lease';
import { WatchHub, watchService } from '../api/watch_service';
import { leaseService } from '../api/lease_service';
import { clusterService } from '../api/cluster_service';
import { LeaderForwarder } from '../api/forward';
import { STATUS_VERSION, maintenanceService } from '../api/maintenance_service';
import { authService } from '../api/auth_service';
import { electionService } from '../api/election_service';
import { lockService } from '../api/lock_service';
import { RequireLeader } from '../api/require_leader';
import { AuthStore, JwtTokens } from '../auth';
import { AlarmAction, AlarmType } from '../server/alarms';
import { Compactor } from '../server/compactor';
import { ConnectionIdentities, certIdentityHook, credentialsForUrl, loadTls } from '../tls';

/** How often the leader checks its learners with --auto-promote-learners. */
const LEARNER_PROMOTE_INTERVAL_MS = 1000;

/** etcd's suggested maximum for --quota-backend-bytes (it warns above it). */
const QUOTA_BACKEND_BYTES_MAX_SUGGESTED = 8 * 1024 * 1024 * 1024;

export interface RunningMember {
  readonly server: Server;
  readonly grpc: H2GrpcServer;
  readonly clientPorts: number[];
  /** Resolves when this member learns it was removed from the cluster (it should then stop). */
  readonly removed: Promise<void>;
  stop(): Promise<void>;
}

/** How often, and for how long, a starting member looks for connected peers before it gives up
 *  fast-forwarding its election timer (etcd: every 50 ms for its 5 s connection read timeout). */
const TICK_ADVANCE_POLL_MS = 50;
const TICK_ADVANCE_WAIT_MS = 5000;

/** etcd's adjustTicks for a cluster of several members: polls until more than one peer is
 *  connected, then calls `advance` once (nothing after TICK_ADVANCE_WAIT_MS). A lone voter
 *  campaigns at once anyway (RaftNode). Returns a stop. */
function advanceTicksOnceConnected(o: { peers: () => bigint[]; isConnected: (id: bigint) => boolean; advance: (activePeers: number) => void }): () => void {
  let polls = 0;
  const timer = setInterval(() => {
    if (++polls > TICK_ADVANCE_WAIT_MS / TICK_ADVANCE_POLL_MS) return clearInterval(timer);
    const active = o.peers().filter(o.isConnected).length;
    if (active > 1) {
      clearInterval(timer);
      o.advance(active);
    }
  }, TICK_ADVANCE_POLL_MS);
  timer.unref();
  return () => clearInterval(timer);
}

/** etcd's start-up lines about the quota (and its warning above the suggested maximum). */
function logQuota(log: Logger, quotaBytes: number): void {
  if (quotaBytes === Infinity) return log.warn('disabled backend quota (--quota-backend-bytes is negative)');
  if (quotaBytes > QUOTA_BACKEND_BYTES_MAX_SUGGESTED) {
    log.warn('quota exceeds the maximum suggested value', { 'quota-size-bytes': quotaBytes, 'quota-maximum-size-bytes': QUOTA_BACKEND_BYTES_MAX_SUGGESTED });
  }
  log.info('enabled backend quota', { 'quota-size-bytes': quotaBytes });
}

export async function startMember(cfg: ServerConfig, log: Logger): Promise<RunningMember> {
  // TLS files are read once, before anything else, so that a bad file fails start-up at once.
  const clientTls = cfg.clientTls ? loadTls(cfg.clientTls, '') : undefined;
  const peerTls = cfg.peerTls ? loadTls(cfg.peerTls, 'peer-') : undefined;
  // Leader forwarding dials client URLs: with the client TLS files (client CA + our certificate).
  const clientUrlCredentials = (url: string) => credentialsForUrl(url, clientTls, 'leader client URL');
  const st = await openStorage(cfg, log, peerTls);
  const mlog = log.child({ member: idToHex(st.memberId), name: cfg.name });
  // Blocks of the event loop as long as a heartbeat interval are logged, with their GC share.
  const loopStalls = watchLoopStalls(mlog, cfg.heartbeatIntervalMs);
  // Leases and watchers hang off the apply path: the lessor is the state machine's lease half, and
  // every applied revision's events go to the watchable store (created once the store exists).
  const lessor = new Lessor({
    minTtlSec: minLeaseTtlSec(cfg.electionTimeoutMs),
    checkpointIntervalMs: cfg.leaseCheckpointIntervalMs,
    now: () => performance.now(),
    persist: (id, state) => server.durableBackend?.stageLease(id, state),
  });
  restoreLeases(lessor, st.loaded.leases, st.loaded.store);
  // The auth store is replicated state like the leases: changed only by applied entries, staged
  // into the backend batch of the entry that changed it.
  const auth = new AuthStore({
    now: () => performance.now(),
    tokenTtlMs: cfg.authTokenTtlMs,
    tokens: cfg.authToken.kind === 'jwt' ? new JwtTokens(cfg.authToken) : undefined,
    persist: {
      user: (name, rec) => server.durableBackend?.stageAuthUser(name, rec),
      role: (name, rec) => server.durableBackend?.stageAuthRole(name, rec),
      state: (enabled, revision) => server.durableBackend?.stageAuthState(enabled, revision),
    },
    leaseKeys: (id) => lessor.timeToLive(id, true)?.keys ?? [],
  });
  auth.restore(st.loaded.auth);

  // Raft over the WAL, talking to the other members through the cluster node's transport.
  const electionTicks = Math.max(2, Math.round(cfg.electionTimeoutMs / cfg.heartbeatIntervalMs));
  let cluster: ClusterNode | undefined;
  let metrics: MemberMetrics | undefined; // created with the server; hooks below observe into it
  const raftNode = new RaftNode({
    id: st.memberId,
    confState: st.confState,
    wal: st.wal,
    recovered: { ...st.recovered, appliedTerm: st.loaded.appliedTerm },
    log: mlog,
    tickMs: cfg.heartbeatIntervalMs,
    electionTicks,
    send: (msgs) => (metrics?.messagesSent(msgs), cluster?.send(msgs)),
  });

  // Raft snapshots: taken every --snapshot-count applied entries, sent to followers behind the
  // compaction point, installed from the leader (then leases and watchers follow the new state).
  let watchable: WatchableStore | undefined;
  const snapshotter = new Snapshotter({
    server: () => server,
    raftNode: () => raftNode,
    memberDir: path.join(cfg.dataDir, 'member'),
    log: mlog,
    snapshotCount: cfg.snapshotCount,
    appliedIndex: st.loaded.appliedIndex,
    hotValueBytes: cfg.hotValueBytes,
    onStateInstalled: (loaded) => {
      lessor.reset();
      restoreLeases(lessor, loaded.leases, server.store);
      if (server.isLeader()) lessor.promote(cfg.electionTimeoutMs);
      watchable!.resyncAll();
    },
  });
  const server: Server = new Server(raftNode, {
    leases: lessor,
    onEvents: (events, rev) => (metrics?.observeEvents(events), watchable?.notify(events, rev)),
    onApplyDuration: (data, ms) => metrics?.observeApply(data, ms),
    onProposalFailed: () => metrics?.proposalFailed(),
    memberId: st.memberId,
    clusterId: st.clusterId,
    maxRequestBytes: cfg.maxRequestBytes,
    log: mlog,
    store: st.loaded.store,
    appliedIndex: st.loaded.appliedIndex,
    backend: st.backend,
    membership: st.membership,
    auth,
    quotaBackendBytes: cfg.quotaBackendBytes,
    alarms: st.loaded.alarms,
    onApplied: (index, term, bytes) => snapshotter.onApplied(index, term, bytes),
  });

  watchable = new WatchableStore(server.store);
  const watchHub = new WatchHub(server, watchable, {
    progressNotifyIntervalMs: cfg.watchProgressNotifyIntervalMs,
    maxRequestBytes: cfg.maxRequestBytes,
    streamBufferBytesMax: cfg.watchStreamBufferBytesMax,
    bufferBytesMax: cfg.watchBufferBytesMax,
  });
  const leaseRunner = new LeaseRunner(lessor, server, (what, err) => mlog.debug(`${what} not applied`, { error: String(err) }));
  // Only the leader's clock decides expiry; a new leader extends every lease by an election
  // timeout so that clients get the chance to reach it with their keepalives (as etcd).
  server.onLeadershipChange((leader) => (leader ? lessor.promote(cfg.electionTimeoutMs) : lessor.demote()));
  if (server.isLeader()) lessor.promote(cfg.electionTimeoutMs);
  leaseRunner.start();

  // --auto-compaction-*: the leader compacts old history through the log, as a client's Compact.
  const compactor = cfg.autoCompaction
    ? new Compactor(
        cfg.autoCompaction,
        {
          currentRevision: () => server.store.currentRevision,
          isLeader: () => server.isLeader(),
          compact: (revision) => server.propose({ compaction: { revision: String(revision), physical: false } }),
        },
        undefined,
        {
          onCompacted: (revision) => mlog.info('auto compaction done', { revision, mode: cfg.autoCompaction!.mode }),
          onFailed: (revision, err) => mlog.warn('auto compaction failed; retrying later', { revision, error: String(err) }),
        },
      )
    : undefined;
  compactor?.start();

  let removedByPeer: () => void = () => undefined;
  cluster = new ClusterNode({
    memberId: st.memberId,
    clusterId: st.clusterId,
    name: cfg.name,
    clientUrls: cfg.advertiseClientUrls,
    listenPeerUrls: cfg.listenPeerUrls,
    server,
    raftNode: () => raftNode,
    log: mlog,
    peerTls,
    onRemoved: () => removedByPeer(),
    snapshotter,
  });

  const forwarder = new LeaderForwarder(server, clientUrlCredentials);
  metrics = new MemberMetrics({ server, log: mlog, serverVersion: STATUS_VERSION, watchers: () => watchable!.syncedWatchers + watchable!.unsyncedWatchers });
  const m = metrics;
  st.wal.onFsync = (ms) => m.observeWalFsync(ms);
  raftNode.observer = { received: (msg) => m.messageReceived(msg), leader: (lead) => m.leaderSeen(lead) };
  // With --client-cert-auth, verified certificate CNs reach the auth check (src/tls/identity.ts);
  // the metadata hook always runs, so that no client can send the CN metadata key itself.
  const identities = clientTls?.commonNameAuth ? new ConnectionIdentities() : undefined;
  const g = newGrpcServer(cfg.maxRequestBytes, {
    onMetadata: certIdentityHook(identities),
    onCallStart: (path) => m.start(path),
    onEvicted: () => m.grpcCallEvicted(),
    maxConcurrentStreams: cfg.maxConcurrentStreams,
    keepaliveIntervalMs: cfg.grpcKeepaliveIntervalMs,
    keepaliveTimeoutMs: cfg.grpcKeepaliveTimeoutMs,
    log: mlog.child({ component: 'grpcserver' }),
    deadlineExceeded: Errors.DeadlineExceeded,
    // etcd's ErrGRPCStopped: UNAVAILABLE, as an etcd client sees its connection dropped on SIGTERM.
    stopped: Errors.Stopped,
    onInternalError: (path, err) => mlog.error('internal error serving a request', { method: path, error: String(err), stack: err instanceof Error ? err.stack : undefined }),
  });
  m.watchGrpcResponseBuffers(() => g.bufferedResponseBytes);
  const rangeBudget = new RangeAnswerBudget(cfg.rangeAnswerBytesMax);
  m.watchRangeAnswers(rangeBudget);
  m.watchSlowWatchers({
    bufferedBytes: () => watchHub.bufferedBytes,
    unsyncedWatchers: () => watchable!.unsyncedWatchers,
    slowWatcherMoves: () => watchable!.slowWatcherMoves,
    streamsOverBound: () => watchHub.streamsOverBound,
    compactedWatchers: () => watchable!.compactedWatchers,
  });
  // `hasleader: true` requests fail without a leader; such streams end after 3 election timeouts
  // without one (etcd's interceptors).
  const requireLeader = new RequireLeader(() => raftNode.leaderId !== 0n, cfg.electionTimeoutMs);
  const handlers: Record<string, ServiceHandlers> = {
    'etcdserverpb.KV': kvService(server, { maxTxnOps: cfg.maxTxnOps, rangeBudget }),
    'etcdserverpb.Watch': watchService(watchHub),
    'etcdserverpb.Lease': leaseService(server, leaseRunner, forwarder),
    'etcdserverpb.Cluster': clusterService(server, {
      clusterToken: cfg.initialClusterToken,
      raftNode,
      credentialsFor: clientUrlCredentials,
      isActive: (id) => raftNode.isActive(id) && (id === st.memberId || cluster!.transport.isConnected(id)),
    }),
    'etcdserverpb.Maintenance': maintenanceService(server),
    'etcdserverpb.Auth': authService(server, { bcryptCost: cfg.bcryptCost }),
    'v3electionpb.Election': electionService({ server, hub: watchHub, log: mlog, leases: leaseRunner, forwarder }),
    'v3lockpb.Lock': lockService(server, watchHub, mlog),
  };
  const services: Record<string, ServiceHandlers> = {};
  for (const name of ETCD_SERVICES) services[name] = requireLeader.wrap(name, handlers[name] ?? {});
  for (const name of ETCD_SERVICES) addService(g, name, services[name]);
  let serving = true;
  addService(g, 'grpc.health.v1.Health', healthService(() => serving && server.healthy));
  let clients: ClientEndpoint;
  try {
    await cluster.start();
    // One port per client URL for gRPC and HTTP (/health, /metrics, /version, the JSON gateway).
    clients = await serveClients(
      { grpc: g, server, services, maxRequestBytes: cfg.maxRequestBytes, maxTxnOps: cfg.maxTxnOps, metrics: m, version: STATUS_VERSION, log: mlog, tls: clientTls, identities, maxTlsHandshakes: cfg.maxTlsHandshakes, tlsHandshakeTimeoutMs: cfg.tlsHandshakeTimeoutMs },
      cfg.listenClientUrls,
    );
  } catch (err) {
    loopStalls.stop();
    g.destroy();
    requireLeader.close();
    await cluster.close().catch((closeErr) => mlog.warn('closing the peer service after a failed start failed', { error: String(closeErr) }));
    await server.stop();
    st.lock.release();
    throw err;
  }
  // etcd's --initial-election-tick-advance (its adjustTicks): once more than one peer is
  // connected, the election timer jumps to two ticks before its timeout, so that a restarted
  // cluster elects a leader about an election timeout sooner.
  const stopTickAdvance = cfg.initialElectionTickAdvance
    ? advanceTicksOnceConnected({
        peers: () => server.membership.list().flatMap((x) => (x.id === st.memberId ? [] : [x.id])),
        // Dials a peer not connected yet: streams are otherwise opened by the first message, and
        // before an election nothing is sent.
        isConnected: (id) => cluster!.transport.isConnected(id) || (cluster!.transport.connect(id), false),
        advance: (activePeers) => {
          const ticks = Math.max(0, electionTicks - 2);
          mlog.info('initialized peer connections; fast-forwarding election ticks', { 'forward-ticks': ticks, 'election-ticks': electionTicks, 'active-remote-members': activePeers });
          raftNode.advanceTicks(ticks);
        },
      })
    : () => undefined;
  const corruptCheck = new CorruptChecker({
    intervalMs: cfg.corruptCheckTimeMs,
    log: mlog.child({ component: 'corrupt-check' }),
    isLeader: () => server.isLeader(),
    hashKV: (rev) => server.hashKV(rev),
    currentRevision: () => server.store.currentRevision,
    compactRevision: () => server.store.compactRevision,
    peers: () => server.membership.list().filter((x) => x.id !== st.memberId && x.peerURLs.length > 0),
    peerHashKV: (urls, rev) => peerHashKV(urls, rev, peerTls),
    raiseCorrupt: async (id) => {
      await server.propose({ alarm: { action: AlarmAction.ACTIVATE, memberID: id.toString(), alarm: AlarmType.CORRUPT } });
    },
  });
  corruptCheck.start();
  const promoter = cfg.autoPromoteLearners
    ? new LearnerPromoter({
        intervalMs: LEARNER_PROMOTE_INTERVAL_MS,
        log: mlog.child({ component: 'learner-promoter' }),
        isLeader: () => server.isLeader(),
        members: () => server.membership.list(),
        selfId: st.memberId,
        lastIndex: () => server.raftStatus().lastIndex,
        matchIndex: (id) => raftNode.matchIndex(id),
        isActive: (id) => raftNode.isActive(id),
        promote: async (learner) => {
          await server.proposeMemberChange(ConfChangeType.AddNode, { ...learner, isLearner: false });
        },
        onPromoted: () => m.learnerPromoted(),
      })
    : undefined;
  promoter?.start();
  logQuota(mlog, cfg.quotaBackendBytes);
  if (server.alarms.has(AlarmType.CORRUPT)) mlog.error('a CORRUPT alarm is active: writes are refused until an operator repairs the member and disarms it (docs/operations.md)', { alarms: server.alarms.describe() });
  if (server.alarms.has(AlarmType.NOSPACE)) mlog.warn('a NOSPACE alarm is active: writes are refused until an operator disarms it (docs/operations.md)', { alarms: server.alarms.describe() });
  mlog.info('ready to serve client requests', {
    'listen-client-urls': cfg.listenClientUrls,
    'listen-peer-urls': cfg.listenPeerUrls,
    'data-dir': cfg.dataDir,
    'cluster-id': idToHex(st.clusterId),
    'applied-index': st.loaded.appliedIndex,
    revision: server.store.currentRevision,
    'since-start-ms': Math.round(performance.now()),
  });

  const removed = new Promise<void>((resolve) => {
    const check = () => {
      if (server.membership.removed.has(st.memberId)) {
        mlog.warn('the member has been permanently removed from the cluster; shutting down');
        server.markRemoved();
        resolve();
      }
    };
    server.onMembershipChange(check);
    // A member that missed its own removal learns it from a peer refusing it.
    removedByPeer = () => {
      mlog.warn('a peer refused this member as removed from the cluster; shutting down');
      server.markRemoved();
      resolve();
    };
    check();
  });

  return {
    server,
    grpc: g,
    clientPorts: clients.ports,
    removed,
    stop: async () => {
      serving = false;
      loopStalls.stop();
      stopTickAdvance();
      leaseRunner.stop();
      compactor?.stop();
      corruptCheck.stop();
      promoter?.stop();
      watchHub.close();
      requireLeader.close();
      forwarder.close();
      const t0 = process.hrtime.bigint();
      const sinceMs = () => Math.round(Number(process.hrtime.bigint() - t0) / 1e4) / 100;
      // Client calls first (unary ones in flight get the grace, and still need Raft and the
      // store); then the peer service and the storage, which do not depend on each other, at once.
      await clients.close();
      await g.close(2000);
      const clientsMs = sinceMs();
      let peerMs = 0;
      await Promise.all([cluster!.close().then(() => (peerMs = sinceMs())), server.stop()]);
      st.lock.release();
      mlog.info('member stopped', { 'client-port-ms': clientsMs, 'peer-ms': peerMs, 'total-ms': sinceMs() });
    },
  };
}
