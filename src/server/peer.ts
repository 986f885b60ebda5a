// The member's side of the cluster: the peer gRPC server (Raft transport + PeerCluster), keeping
// the transport's peer list equal to the membership, sending snapshots to followers behind the
// compaction point and installing the ones received, and publishing this member's name and client
// URLs through the log (etcd's "publish") so MemberList shows them.
import fs from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../util/log';
import { dropPeerTraffic } from '../util/failpoints';
import type { Message } from '../raft';
import { MessageType } from '../raft';
import { Transport, PEER_SERVER_OPTIONS } from '../transport';
import type { RaftNode } from './raft_node';
import type { Server } from './server';
import { Membership, memberFromJson, memberToJson, type MemberJson } from './membership';
import { Backend, type LoadedState } from '../storage/backend/backend';
import { restoreSnapshotInto } from '../storage/backend/snapshot';
import { serviceDefinition } from '../proto';
import { grpcChannelCredentials, grpcServerCredentials, type TlsMaterial } from '../tls';

export interface ClusterNodeOptions {
  memberId: bigint;
  clusterId: bigint;
  name: string;
  clientUrls: string[];
  listenPeerUrls: string[];
  memberDir: string;
  server: Server;
  raftNode: () => RaftNode;
  log: Logger;
  /** Called when a peer refuses this member as removed from the cluster. */
  onRemoved?: () => void;
  /** Called after a snapshot from the leader replaced the applied state. */
  onStateInstalled: (loaded: LoadedState) => void;
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
  private installing = false;
  private closed = false;

  constructor(private readonly o: ClusterNodeOptions) {
    this.transport = new Transport({
      id: o.memberId,
      clusterId: o.clusterId,
      log: o.log,
      onMessage: (m) => {
        if (!dropPeerTraffic(m.from)) o.raftNode().step(m);
      },
      onSnapshot: (m, data) => (dropPeerTraffic(m.from) ? Promise.reject(new Error('failpoint: peer traffic dropped')) : this.installSnapshot(m, data)),
      onUnreachable: (id) => o.raftNode().reportUnreachable(id),
      onSnapshotStatus: (id, ok) => o.raftNode().reportSnapshot(id, ok),
      getSnapshotData: (m) => this.snapshotData(m),
      isRemovedMember: (id) => o.server.membership.removed.has(id),
      onRemoved: () => o.onRemoved?.(),
      credentials: o.peerTls ? grpcChannelCredentials(o.peerTls) : undefined,
    });
    this.peerServer = new grpc.Server(PEER_SERVER_OPTIONS);
    this.transport.register(this.peerServer);
    // The peer port is grpc-js's server; PeerCluster's one method is registered on it directly.
    this.peerServer.addService(serviceDefinition('quorumkvpb.PeerCluster'), {
      Members: (_call: unknown, cb: grpc.sendUnaryData<unknown>) =>
        cb(null, {
          cluster_id: o.clusterId.toString(),
          members_json: Buffer.from(JSON.stringify(o.server.membership.list().map(memberToJson))),
        }),
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
        .catch(() => undefined);
    }
    this.publishTimer = setTimeout(() => this.publish(), PUBLISH_RETRY_MS);
  }

  /** A follower needs a snapshot: send the backend as it is now (a consistent LevelDB view), with
   *  the metadata rewritten to the index and term that view is at (etcd's merged snapshot). */
  private async snapshotData(m: Message): Promise<Uint8Array> {
    const backend = this.o.server.durableBackend;
    if (!backend) throw new Error('no backend to snapshot');
    const { meta, chunks } = await backend.openSnapshot();
    const parts: Buffer[] = [];
    for await (const c of chunks) parts.push(c);
    m.snapshot = {
      data: new Uint8Array(0),
      metadata: { index: meta.appliedIndex, term: meta.appliedTerm, confState: this.o.server.membership.confState() },
    };
    this.o.log.info('prepared snapshot for a follower', { to: m.to.toString(16), index: meta.appliedIndex, bytes: parts.reduce((n, p) => n + p.length, 0) });
    return Buffer.concat(parts);
  }

  /** A snapshot from the leader: write it as a new backend, swap it in, then let Raft take it. */
  private async installSnapshot(m: Message, data: Buffer): Promise<void> {
    if (this.installing) throw new Error('a snapshot install is already in progress');
    const raft = this.o.raftNode();
    const index = m.snapshot?.metadata.index ?? 0;
    if (index <= raft.committedIndex) return; // stale: we already have more than it holds
    this.installing = true;
    try {
      const dir = this.o.memberDir;
      const incoming = path.join(dir, 'backend.incoming');
      fs.rmSync(incoming, { recursive: true, force: true });
      const meta = await restoreSnapshotInto(incoming, (async function* () {
        yield data;
      })());
      if (meta.appliedIndex <= raft.committedIndex) {
        fs.rmSync(incoming, { recursive: true, force: true });
        return;
      }
      // Swap directories: close the old backend first (LevelDB holds a lock on its directory).
      const old = this.o.server.durableBackend;
      await old?.close();
      const backendDir = path.join(dir, 'backend');
      const oldDir = path.join(dir, 'backend.old');
      fs.rmSync(oldDir, { recursive: true, force: true });
      fs.renameSync(backendDir, oldDir);
      fs.renameSync(incoming, backendDir);
      fs.rmSync(oldDir, { recursive: true, force: true });
      const backend = await Backend.open(backendDir);
      const loaded = await backend.load();
      const membership = new Membership(
        loaded.members.map((b) => memberFromJson(JSON.parse(b.toString('utf8')) as MemberJson)),
        loaded.removed,
      );
      await this.o.server.installState(backend, loaded, membership);
      this.o.onStateInstalled(loaded);
      const accepted = raft.installSnapshot(m.from, m.term, {
        data: new Uint8Array(0),
        metadata: { index: loaded.appliedIndex, term: loaded.appliedTerm, confState: membership.confState() },
      });
      this.o.log.info('installed snapshot from the leader', { from: m.from.toString(16), index: loaded.appliedIndex, term: loaded.appliedTerm, accepted });
    } finally {
      this.installing = false;
    }
    void MessageType;
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

function sameUrls(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && [...a].sort().join(',') === [...b].sort().join(',');
}
