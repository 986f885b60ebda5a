// The member's side of the cluster: the peer gRPC server (Raft transport + PeerCluster), keeping
// the transport's peer list equal to the membership, and publishing this member's name and client
// URLs through the log (etcd's "publish") so MemberList shows them. Snapshots the transport sends
// and receives are the Snapshotter's (snapshot.ts).
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../util/log';
import { dropPeerTraffic } from '../util/failpoints';
import type { Message } from '../raft';
import { Transport, PEER_SERVER_OPTIONS } from '../transport';
import type { RaftNode } from './raft_node';
import type { Server } from './server';
import { memberToJson } from './membership';
import type { Snapshotter } from './snapshot';
import { serviceDefinition } from '../proto';
import { credentialsForUrl, grpcChannelCredentials, grpcServerCredentials, type TlsMaterial } from '../tls';
import { EtcdError } from '../util/errors';
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

export class ClusterNode {
  readonly transport: Transport;
  readonly peerServer: grpc.Server;
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
      credentials: o.peerTls ? grpcChannelCredentials(o.peerTls) : undefined,
    });
    this.peerServer = new grpc.Server(PEER_SERVER_OPTIONS);
    this.transport.register(this.peerServer);
    // The peer port is grpc-js's server; PeerCluster's methods are registered on it directly.
    this.peerServer.addService(serviceDefinition('quorumkvpb.PeerCluster'), {
      Members: (_call: unknown, cb: grpc.sendUnaryData<unknown>) =>
        cb(null, {
          cluster_id: o.clusterId.toString(),
          members_json: Buffer.from(JSON.stringify(o.server.membership.list().map(memberToJson))),
        }),
      // The corruption check's question (corrupt_check.ts): our HashKV at the leader's revision.
      HashKV: (call: grpc.ServerUnaryCall<{ revision: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        const rev = Number(call.request.revision);
        if (!Number.isSafeInteger(rev) || rev < 0) return cb({ code: grpc.status.INVALID_ARGUMENT, details: 'quorumkv: bad revision' });
        o.server.hashKV(rev).then(
          (h) =>
            cb(null, {
              member_id: o.memberId.toString(),
              hash: h.hash,
              compact_revision: h.compactRevision,
              hash_revision: h.hashRevision,
              current_revision: o.server.store.currentRevision,
            }),
          (err: unknown) => cb(err instanceof EtcdError ? { code: err.code, details: err.message } : { code: grpc.status.INTERNAL, details: String(err) }),
        );
      },
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
    for (const raw of this.o.listenPeerUrls) {
      const url = new URL(raw);
      const creds = url.protocol === 'https:' ? grpcServerCredentials(this.o.peerTls!) : grpc.ServerCredentials.createInsecure();
      await new Promise<number>((resolve, reject) =>
        this.peerServer.bindAsync(`${url.hostname}:${url.port}`, creds, (err, p) => (err ? reject(err) : resolve(p))),
      );
    }
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

  async close(): Promise<void> {
    this.closed = true;
    if (this.publishTimer) clearTimeout(this.publishTimer);
    await this.transport.close();
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => (this.peerServer.forceShutdown(), resolve()), 1000);
      this.peerServer.tryShutdown(() => (clearTimeout(t), resolve()));
    });
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

