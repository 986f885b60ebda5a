// The member's side of the cluster: the peer gRPC server (Raft transport + PeerCluster), keeping
// the transport's peer list equal to the membership, and publishing this member's name and client
// URLs through the log (etcd's "publish") so MemberList shows them. Snapshots the transport sends
// and receives are the Snapshotter's (snapshot.ts).
//
// The peer port is our own gRPC server (src/grpcserver, as the client port's, with the same
// limits against hostile clients) behind a listener that takes HTTP/2 only; https:// peer URLs
// terminate TLS there with the --peer-* files (a client certificate required and checked against
// --peer-trusted-ca-file with --peer-client-cert-auth). What we dial (the transport's senders,
// peerHashKV) is grpc-js's client.
import * as grpc from '@grpc/grpc-js';
import { ClientListener } from '../grpcserver/listener';
import { H2GrpcServer } from '../grpcserver/server';
import type { UnaryCall } from '../grpcserver/call';
import type { Logger } from '../util/log';
import { dropPeerTraffic } from '../util/failpoints';
import type { Message } from '../raft';
import { Transport, PEER_MESSAGE_BYTES_MAX } from '../transport';
import type { RaftNode } from './raft_node';
import type { Server } from './server';
import { memberToJson } from './membership';
import type { Snapshotter } from './snapshot';
import { serviceDefinition } from '../proto';
import { credentialsForUrl, tlsServerOptions, type TlsMaterial } from '../tls';
import { EtcdError, GrpcCode } from '../util/errors';
import type { PeerHash } from './corrupt_check';

export interface ClusterNodeOptions {
  memberId: bigint;
  clusterId: bigint;
  name: string;
  clientUrls: string[];
  listenPeerUrls: string[];
  server: Server;
  raftNode: () => RaftNode;
  log: Logger;
  /** Called when a peer refuses this member as removed from the cluster. */
  onRemoved?: () => void;
  /** Sends the backend to followers behind the compaction point, installs the leader's. */
  snapshotter: Snapshotter;
  /** Peer TLS (--peer-*): the peer server serves https:// listen URLs with it, and the transport
   *  dials every peer with it (peer URLs are then expected to be https://). */
  peerTls?: TlsMaterial;
}

/** How often a member retries publishing its attributes until they are applied. */
const PUBLISH_RETRY_MS = 1000;
/** How long close() lets peer calls finish before cutting the connections. */
const PEER_SHUTDOWN_GRACE_MS = 1000;

export class ClusterNode {
  readonly transport: Transport;
  readonly peerServer: H2GrpcServer;
  private readonly peerListener: ClientListener;
  private publishTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly o: ClusterNodeOptions) {
    this.transport = new Transport({
      id: o.memberId,
      clusterId: o.clusterId,
      log: o.log,
      onMessage: (m) => {
        if (!dropPeerTraffic(m.from)) o.raftNode().step(m);
      },
      onSnapshot: (m, data) => (dropPeerTraffic(m.from) ? Promise.reject(new Error('failpoint: peer traffic dropped')) : o.snapshotter.install(m, data)),
      onUnreachable: (id) => o.raftNode().reportUnreachable(id),
      onSnapshotStatus: (id, ok) => o.raftNode().reportSnapshot(id, ok),
      getSnapshotData: (m) => o.snapshotter.sendData(m),
      isRemovedMember: (id) => o.server.membership.removed.has(id),
      onRemoved: () => o.onRemoved?.(),
      tls: o.peerTls,
    });
    this.peerServer = new H2GrpcServer({
      maxReceiveBytes: PEER_MESSAGE_BYTES_MAX,
      log: o.log,
      onInternalError: (path, err) => o.log.error('internal error serving a peer call', { method: path, error: String(err), stack: (err as Error | undefined)?.stack }),
    });
    this.transport.register(this.peerServer);
    this.peerServer.addService(serviceDefinition('quorumkvpb.PeerCluster'), {
      Members: (call: UnaryCall<unknown, unknown>) =>
        call.respond({
          cluster_id: o.clusterId.toString(),
          members_json: Buffer.from(JSON.stringify(o.server.membership.list().map(memberToJson))),
        }),
      // The corruption check's question (corrupt_check.ts): our HashKV at the leader's revision.
      HashKV: (call: UnaryCall<{ revision: string }, unknown>) => {
        const rev = Number(call.request.revision);
        if (!Number.isSafeInteger(rev) || rev < 0) return call.fail({ code: GrpcCode.INVALID_ARGUMENT, message: 'quorumkv: bad revision' });
        o.server.hashKV(rev).then(
          (h) =>
            call.respond({
              member_id: o.memberId.toString(),
              hash: h.hash,
              compact_revision: h.compactRevision,
              hash_revision: h.hashRevision,
              current_revision: o.server.store.currentRevision,
            }),
          (err: unknown) => call.fail(err instanceof EtcdError ? { code: err.code, message: err.message } : { code: GrpcCode.INTERNAL, message: String(err), cause: err }),
        );
      },
    });
    this.peerListener = new ClientListener({
      grpc: this.peerServer,
      tls: o.peerTls ? tlsServerOptions(o.peerTls) : undefined,
      // etcd logs these too ("rejected connection from ..."): a peer without a valid certificate.
      onTlsError: (err, remote) => o.log.warn('rejected peer connection', { remote, error: err.message }),
    });
  }

  send(msgs: Message[]): void {
    this.transport.send(msgs.filter((m) => !dropPeerTraffic(m.to)));
  }

  async start(): Promise<void> {
    this.syncPeers();
    this.o.server.onMembershipChange(() => this.syncPeers());
    await this.listenPeers();
    this.publish();
  }

  /** Binds every --listen-peer-urls URL; https:// ones with the peer TLS files (checked by the
   *  flags: an https URL without them never gets here). */
  private async listenPeers(): Promise<void> {
    await this.peerListener.listen(this.o.listenPeerUrls);
  }

  /** The transport's peers = every member but us, at its current peer URLs. */
  private syncPeers(): void {
    const want = new Map(this.o.server.membership.list().filter((m) => m.id !== this.o.memberId).map((m) => [m.id, m.peerURLs]));
    for (const [id, urls] of want) {
      if (urls.length === 0) continue;
      if (this.transport.hasPeer(id)) this.transport.updatePeer(id, urls);
      else this.transport.addPeer(id, urls);
    }
    for (const m of this.o.server.membership.removed) if (this.transport.hasPeer(m)) this.transport.removePeer(m);
  }

  /** Proposes this member's name and client URLs until the applied membership shows them. */
  private publish(): void {
    if (this.closed) return;
    const me = this.o.server.membership.get(this.o.memberId);
    const done = me !== undefined && me.name === this.o.name && sameUrls(me.clientURLs, this.o.clientUrls);
    if (done) return;
    if (me !== undefined && this.o.server.raftStatus().leader !== 0n) {
      this.o.server
        .propose({ member_attributes: { ID: this.o.memberId.toString(), name: this.o.name, clientURLs: this.o.clientUrls } })
        .catch((err) => this.o.log.warn('publishing the member\'s name and client URLs failed; retrying', { 'retry-ms': PUBLISH_RETRY_MS, error: String(err) }));
    }
    this.publishTimer = setTimeout(() => this.publish(), PUBLISH_RETRY_MS);
  }

  /** Stops the peer service: the transport's streams end without waiting for the peers to
   *  acknowledge (Raft messages may be lost, and peers redial), and at the same time the peer
   *  listener closes: the peers' raft and snapshot streams end at once, PeerCluster calls in
   *  flight (HashKV, Members) get PEER_SHUTDOWN_GRACE_MS (H2GrpcServer.close). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.publishTimer) clearTimeout(this.publishTimer);
    await Promise.all([this.transport.close(0), this.peerListener.close(PEER_SHUTDOWN_GRACE_MS)]);
  }
}

/** Asks a member, at the first of its peer URLs that answers, for its HashKV at `rev`. */
export async function peerHashKV(peerUrls: readonly string[], rev: number, peerTls: TlsMaterial | undefined, timeoutMs = 10_000): Promise<PeerHash> {
  const Ctor = grpc.makeGenericClientConstructor(serviceDefinition('quorumkvpb.PeerCluster'), 'PeerCluster');
  const errors: string[] = [];
  for (const url of peerUrls) {
    const u = new URL(url);
    const client = new Ctor(`${u.hostname}:${u.port}`, credentialsForUrl(url, peerTls, 'peer URL')) as unknown as {
      HashKV(req: object, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: Record<string, string | number>) => void): void;
      close(): void;
    };
    try {
      const r = await new Promise<Record<string, string | number>>((resolve, reject) =>
        client.HashKV({ revision: rev }, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res))),
      );
      return {
        memberId: BigInt(r.member_id!),
        hash: Number(r.hash),
        compactRevision: Number(r.compact_revision),
        hashRevision: Number(r.hash_revision),
        currentRevision: Number(r.current_revision),
      };
    } catch (err) {
      errors.push(`${url}: ${(err as Error).message}`);
    } finally {
      client.close();
    }
  }
  throw new Error(errors.join('; '));
}

function sameUrls(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && [...a].sort().join(',') === [...b].sort().join(',');
}

