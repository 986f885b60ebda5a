// Transport: the member's side of the peer protocol (proto/quorumkv/raft.proto). Sending is per peer
// (peer.ts: the message stream on our own HTTP/2 client, h2_client.ts; snapshots on grpc-js
// clients); receiving is the two client-streaming handlers below, served by our
// own gRPC server (src/grpcserver, which the member's peer port runs). Design note: index.ts.

import * as grpc from '@grpc/grpc-js';
import type { BidiListener, CallStatus, ClientStreamCall } from '../grpcserver/call';
import { RequestQueue } from '../grpcserver/request_queue';
import { HTTP2_DEFAULT_WINDOW, type H2GrpcServer, type RecvWindow } from '../grpcserver/server';
import { GrpcCode } from '../util/errors';
import { MessageType, isLocalMsg, type Message, type NodeId } from '../raft';
import { assert } from '../util/assert';
import type { Logger } from '../util/log';
import { DEFAULT_BACKOFF, type BackoffOptions } from './backoff';
import { CodecError, decodeMessages } from './codec';
import type { ClientTls } from './h2_client';
import { KEEPALIVE_INTERVAL_MS, KEEPALIVE_TIMEOUT_MS, Peer, type PeerContext, type TransportStats } from './peer';
import {
  SNAPSHOT_BYTES_PER_SECOND_MAX_DEFAULT,
  SNAPSHOT_CHUNK_BYTES_DEFAULT,
  SNAPSHOT_RECEIVE_WINDOW_BYTES_DEFAULT,
  SNAPSHOT_RECEIVE_WINDOW_BYTES_MAX,
  SNAPSHOT_READ_AHEAD_CHUNKS,
  SnapshotReceiver, SnapshotRejected, sendSnapshot, type SendTimings, type SnapshotSource } from './snapshot';
import {
  ERR_CLUSTER_ID_MISMATCH,
  ERR_MEMBER_REMOVED,
  ERR_TO_MISMATCH,
  MD_CLUSTER_ID,
  MD_FROM,
  MD_TO,
  parseHexId,
  peerMetadata,
  peerTarget,
  serviceDefinition,
  type MessageBatchPb,
  type SnapshotChunkPb,
  type SnapshotResponsePb,
} from './wire';

/** etcd's streamBufSize: messages queued per peer before the transport starts dropping. */
export const MAX_QUEUED_MESSAGES_PER_PEER_DEFAULT = 4096;
/** Soft bound of one stream write; a single larger message still goes out alone. Below gRPC's 4 MiB. */
export const MAX_BATCH_BYTES_DEFAULT = 1024 * 1024;
/** Twice etcd's largest recommended quota (8 GiB): the stream also carries versions that physical
 *  compaction has not deleted yet. Streamed, so no Buffer limit applies. */
export const MAX_SNAPSHOT_BYTES_DEFAULT = 16 * 1024 ** 3;
export const DIAL_TIMEOUT_MS_DEFAULT = 3_000;
/** gRPC's default receive limit (4 MiB) minus room for the chunk's envelope: any peer server accepts it. */
const SNAPSHOT_CHUNK_BYTES_MAX = 4 * 1024 * 1024 - 1024;

/**
 * The largest message the member's peer gRPC server takes (its maxReceiveBytes), and peer clients
 * too. gRPC's default 4 MiB would break the stream on a single MsgApp larger than that; snapshot
 * chunks stay far below.
 */
export const PEER_MESSAGE_BYTES_MAX = 64 * 1024 * 1024;

/**
 * The receive window of an incoming raft message stream (register()).
 *
 * Why: HTTP/2 starts every stream and connection at 64 KiB. With 4 KiB values a leader's MsgApp
 * batch under 100 clients is 100-200 KiB: each batch then waits for several WINDOW_UPDATE round
 * trips, each one a turn of the follower's event loop, while the batches behind it queue on the
 * leader. Measured (h-write, 2026-12-07, 3 members, 100 clients, 4 KiB values, a loaded 2-core
 * machine, then on grpc-js's server): leader send -> follower receive p50 58-104 ms with the
 * default window, 35-41 ms with this one. etcd's peer streams are HTTP/1.1 over TCP, bounded by the
 * kernel's socket buffers only.
 *
 * Memory: a peer may have up to `streamBytes` of one stream (`connectionBytes` over all streams of
 * its connection) received and not yet read by us: the stream's handler reads at once, so only
 * while the member's loop is busy. An incoming snapshot, on its own connection, has the snapshot
 * receive window instead (TransportOptions.snapshotReceiveWindowBytes).
 */
export const RAFT_STREAM_RECV_WINDOW: RecvWindow = { streamBytes: 2 * 1024 * 1024, connectionBytes: 4 * 1024 * 1024 };

export interface TransportOptions {
  id: NodeId;
  clusterId: bigint;
  log: Logger;
  /** A message arrived from a peer (never MsgSnap: those come through onSnapshot). */
  onMessage(m: Message): void;
  /** A snapshot is arriving (m.type = MsgSnap, m.snapshot.metadata set, m.snapshot.data empty):
   *  `data` yields its bytes as they arrive (the next chunk is read from the network only when
   *  asked for) and throws if the stream breaks or is malformed. Resolve when installed/accepted;
   *  resolving without reading `data` to its end is allowed (e.g. a stale snapshot). */
  onSnapshot(m: Message, data: AsyncIterable<Buffer>): Promise<void>;
  /** A peer could not be reached, its stream broke, or its queue overflowed (Raft: reportUnreachable). */
  onUnreachable?(id: NodeId): void;
  /** Result of sending a snapshot (Raft: reportSnapshot). */
  onSnapshotStatus?(id: NodeId, ok: boolean): void;
  /** Data of an outgoing MsgSnap; without it, m.snapshot.data is sent. */
  getSnapshotData?(m: Message): SnapshotSource | Promise<SnapshotSource>;
  /** A peer refused this member as removed from the cluster (etcd then stops the member). */
  onRemoved?(): void;
  /** Incoming calls from a member for which this returns true are refused (etcd's removed-member check). */
  isRemovedMember?(id: NodeId): boolean;
  /** Back-pressure bound; beyond it messages are dropped (Raft tolerates loss) and the peer reported unreachable. */
  maxQueuedMessagesPerPeer?: number;
  maxBatchBytes?: number;
  snapshotChunkBytes?: number;
  maxSnapshotBytes?: number;
  /** Average send rate of one snapshot stream (0: unlimited). */
  snapshotBytesPerSecondMax?: number;
  /** HTTP/2 receive window of an incoming snapshot's connection and stream (0: HTTP/2's 64 KiB). */
  snapshotReceiveWindowBytes?: number;
  dialTimeoutMs?: number;
  backoff?: BackoffOptions;
  /** Peer TLS (the member's --peer-* files): every peer is dialed with TLS when set, the CA (or
   *  the system's roots) verifying its certificate, ours presented as the client certificate.
   *  Plain TCP when undefined, for http:// peer URLs. */
  tls?: ClientTls;
  /** Extra gRPC channel options for the snapshot sender's connections (override the defaults below). */
  channelOptions?: grpc.ChannelOptions;
}

type StreamCall = ClientStreamCall<Record<string, never>>;
type SnapshotCall = ClientStreamCall<SnapshotResponsePb>;

const TRANSPORT_CLOSED: CallStatus = { code: GrpcCode.UNAVAILABLE, message: 'quorumkv: transport closed' };

export class Transport {
  readonly stats: TransportStats = { sentBatches: 0, sentMessages: 0, dropped: 0, received: 0 };
  private readonly peers = new Map<NodeId, Peer>();
  private readonly dirty = new Set<Peer>();
  private readonly inbound = new Set<() => void>();
  private readonly ctx: PeerContext;
  private readonly snapshotChunkBytes: number;
  private readonly maxSnapshotBytes: number;
  private readonly snapshotBytesPerSecondMax: number;
  private readonly snapshotReceiveWindowBytes: number;
  private readonly log: Logger;
  /** The snapshot sender's grpc-js channel: credentials from `tls`, options. */
  private readonly snapshotCredentials: grpc.ChannelCredentials;
  private readonly snapshotChannelOptions: grpc.ChannelOptions;
  private closed = false;

  constructor(private readonly opts: TransportOptions) {
    this.log = opts.log;
    const backoff = opts.backoff ?? DEFAULT_BACKOFF;
    this.snapshotChunkBytes = opts.snapshotChunkBytes ?? SNAPSHOT_CHUNK_BYTES_DEFAULT;
    this.maxSnapshotBytes = opts.maxSnapshotBytes ?? MAX_SNAPSHOT_BYTES_DEFAULT;
    this.snapshotBytesPerSecondMax = opts.snapshotBytesPerSecondMax ?? SNAPSHOT_BYTES_PER_SECOND_MAX_DEFAULT;
    this.snapshotReceiveWindowBytes = opts.snapshotReceiveWindowBytes ?? SNAPSHOT_RECEIVE_WINDOW_BYTES_DEFAULT;
    const maxQueuedMessages = opts.maxQueuedMessagesPerPeer ?? MAX_QUEUED_MESSAGES_PER_PEER_DEFAULT;
    const maxBatchBytes = opts.maxBatchBytes ?? MAX_BATCH_BYTES_DEFAULT;
    assert(opts.id !== 0n, 'transport: member ID must not be 0 (raft.None)');
    assert(maxQueuedMessages > 0 && maxBatchBytes > 0, 'transport: queue and batch bounds must be positive');
    assert(this.snapshotChunkBytes > 0 && this.snapshotChunkBytes <= SNAPSHOT_CHUNK_BYTES_MAX, 'transport: snapshot chunk must fit gRPC\'s default 4 MiB frame');
    assert(this.maxSnapshotBytes > 0 && this.snapshotBytesPerSecondMax >= 0, 'transport: snapshot limits must be positive');
    assert(
      this.snapshotReceiveWindowBytes >= 0 && this.snapshotReceiveWindowBytes <= SNAPSHOT_RECEIVE_WINDOW_BYTES_MAX,
      'transport: snapshot receive window out of range',
    );
    this.snapshotCredentials = opts.tls !== undefined ? grpc.credentials.createSsl(opts.tls.ca ?? null, opts.tls.key, opts.tls.cert) : grpc.credentials.createInsecure();
    this.snapshotChannelOptions = {
      // gRPC's own reconnect backoff defaults to 1 s .. 120 s. Keep it in step with ours.
      'grpc.initial_reconnect_backoff_ms': backoff.initialMs,
      'grpc.max_reconnect_backoff_ms': backoff.maxMs,
      // A peer that vanished without a FIN (power loss, partition) is noticed within ~15 s.
      'grpc.keepalive_time_ms': KEEPALIVE_INTERVAL_MS,
      'grpc.keepalive_timeout_ms': KEEPALIVE_TIMEOUT_MS,
      'grpc.max_receive_message_length': PEER_MESSAGE_BYTES_MAX,
      ...opts.channelOptions,
    };
    this.ctx = {
      localId: opts.id,
      clusterId: opts.clusterId,
      log: opts.log,
      stats: this.stats,
      maxQueuedMessages,
      maxBatchBytes,
      dialTimeoutMs: opts.dialTimeoutMs ?? DIAL_TIMEOUT_MS_DEFAULT,
      backoff,
      tls: opts.tls,
      reportUnreachable: (id) => this.opts.onUnreachable?.(id),
      reportRemoved: () => this.opts.onRemoved?.(),
    };
  }

  /** Registers the RaftTransport service on the member's peer gRPC server (its maxReceiveBytes
   *  PEER_MESSAGE_BYTES_MAX), with the receive windows of its streams: RAFT_STREAM_RECV_WINDOW,
   *  and snapshotReceiveWindowBytes for both the snapshot's stream and its connection (0: HTTP/2's
   *  64 KiB, kept: not grown by the server's BDP estimate either). */
  register(server: H2GrpcServer): void {
    const snapshotWindow = this.snapshotReceiveWindowBytes;
    server.addService(
      serviceDefinition(),
      {
        Stream: (call: StreamCall) => this.serveStream(call),
        Snapshot: (call: SnapshotCall) => this.serveSnapshot(call),
      },
      {
        Stream: RAFT_STREAM_RECV_WINDOW,
        Snapshot: snapshotWindow > 0 ? { streamBytes: snapshotWindow, connectionBytes: snapshotWindow } : HTTP2_DEFAULT_WINDOW,
      },
    );
  }

  addPeer(id: NodeId, urls: string[]): void {
    assert(id !== this.opts.id, `transport: cannot add self (${id}) as a peer`);
    if (this.closed || this.peers.has(id)) return; // etcd: adding a known peer is a no-op
    this.peers.set(id, new Peer(id, urls, this.ctx));
  }

  updatePeer(id: NodeId, urls: string[]): void {
    const p = this.peers.get(id);
    if (p === undefined) return this.addPeer(id, urls);
    p.updateUrls(urls);
  }

  removePeer(id: NodeId): void {
    const p = this.peers.get(id);
    if (p === undefined) return;
    this.peers.delete(id);
    this.dirty.delete(p);
    void p.close();
  }

  hasPeer(id: NodeId): boolean {
    return this.peers.has(id);
  }

  /** Whether the stream to `id` is up right now (etcd's transport "active" notion). */
  isConnected(id: NodeId): boolean {
    return this.peers.get(id)?.connected ?? false;
  }

  /** Dials peer `id` if no stream to it is up or being dialed (peer.ts connect). */
  connect(id: NodeId): void {
    this.peers.get(id)?.connect();
  }

  /**
   * Sends messages: everything for a peer in one call (the Ready loop's one Ready) goes to its
   * stream's socket before this returns, as one stream write (split only above maxBatchBytes), or
   * waits in the peer's queue while the stream is down or pushes back. MsgSnap goes through its own
   * snapshot stream. Never blocks.
   */
  send(msgs: readonly Message[]): void {
    for (const m of msgs) {
      assert(!isLocalMsg(m.type), `transport: local message ${MessageType[m.type]} cannot be sent`);
      assert(m.to !== this.opts.id, `transport: message ${MessageType[m.type]} addressed to self`);
      const p = this.closed ? undefined : this.peers.get(m.to);
      if (p === undefined) {
        this.stats.dropped++;
        this.log.debug('dropped raft message to unknown peer', { remote: m.to, type: MessageType[m.type] });
        continue;
      }
      if (m.type === MessageType.MsgSnap) {
        this.startSnapshot(p, m);
        continue;
      }
      if (p.enqueue(m)) this.dirty.add(p);
    }
    if (this.dirty.size > 0) {
      // At once, into the sockets: Raft's messages all come from the Ready loop, one send() per
      // Ready with everything the Ready holds (the proposals of a turn are already batched into
      // it), so waiting for more batched nothing. Flushed in a setImmediate they cost the leader's
      // MsgApp, on every write's critical path, 236-909 us (median, put-1 on a loaded 2-core
      // machine); in a microtask and the socket's nextTick they still went out after the Ready
      // loop had handed its own WAL write to the thread pool, whose woken thread competed with
      // the loop for the 2 cores: 91 us from the Ready to the MsgApp's socket write at the median
      // (warm put-1, docs/performance.md "One put, end to end"). Now the MsgApp is on the wire,
      // and the follower woken, before the leader's own write starts.
      this.flush();
    }
  }

  /** Ends every stream, inbound and outbound. `waitMs`: how long each outbound stream waits for
   *  its receiver to acknowledge the end (Peer.close; 0 at a member's shutdown). */
  async close(waitMs?: number): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const end of [...this.inbound]) end();
    const peers = [...this.peers.values()];
    this.peers.clear();
    this.dirty.clear();
    await Promise.all(peers.map((p) => p.close(waitMs)));
  }

  private flush(): void {
    const peers = [...this.dirty];
    this.dirty.clear();
    for (const p of peers) p.flush();
  }

  private startSnapshot(p: Peer, m: Message): void {
    if (p.snapshotAbort !== undefined) {
      // Coalesced: Raft sends one snapshot at a time per follower and waits for reportSnapshot; a
      // second one means the first is still streaming (Raft resent after an unreachable report).
      // The one in flight carries the backend as of its start and will report; a new stream would
      // start over from the first byte.
      this.log.info('MsgSnap coalesced with the snapshot already being sent to this peer', { remote: p.id, index: m.snapshot?.metadata.index });
      return;
    }
    assert(m.snapshot !== undefined, 'transport: MsgSnap without snapshot');
    const abort = new AbortController();
    p.snapshotAbort = abort;
    void this.runSnapshot(p, m, abort);
  }

  private async runSnapshot(p: Peer, m: Message, abort: AbortController): Promise<void> {
    const fields = { remote: p.id, index: m.snapshot?.metadata.index, term: m.term };
    const started = Date.now();
    // Its own connection (local subchannel pool): megabytes of snapshot on the socket must not hold up
    // the heartbeats on the message stream.
    const client = new grpc.Client(
      peerTarget(p.currentUrl()),
      this.snapshotCredentials,
      { ...this.snapshotChannelOptions, 'grpc.use_local_subchannel_pool': 1 },
    );
    let ok = false;
    const timings: SendTimings = { sourceMs: 0, windowMs: 0, paceMs: 0 };
    try {
      const source = this.opts.getSnapshotData !== undefined ? await this.opts.getSnapshotData(m) : (m.snapshot?.data ?? new Uint8Array(0));
      this.log.info('sending snapshot', { ...fields, url: p.currentUrl() });
      const metadata = peerMetadata(this.opts.id, p.id, this.opts.clusterId);
      await sendSnapshot({
        client,
        metadata,
        message: m,
        source,
        chunkBytes: this.snapshotChunkBytes,
        signal: abort.signal,
        bytesPerSecondMax: this.snapshotBytesPerSecondMax,
        timings,
      });
      ok = true;
      this.stats.sentMessages++;
      this.log.info('sent snapshot', {
        ...fields,
        took_ms: Date.now() - started,
        // Waiting for the source (reading the backend), for the window (the receiver), in the rate limit.
        source_ms: Math.round(timings.sourceMs),
        window_ms: Math.round(timings.windowMs),
        pace_ms: Math.round(timings.paceMs),
      });
    } catch (err) {
      const e = err as Partial<grpc.ServiceError>;
      this.log.warn('sending snapshot failed', { ...fields, code: e.code, error: e.details ?? e.message });
      if (e.code === grpc.status.UNAVAILABLE || e.code === grpc.status.DEADLINE_EXCEEDED) this.ctx.reportUnreachable(p.id);
    } finally {
      client.close();
      if (p.snapshotAbort === abort) p.snapshotAbort = undefined;
    }
    if (!this.closed) this.opts.onSnapshotStatus?.(p.id, ok);
  }

  /** Checks a peer call's metadata; returns the sender's ID, or the status to end the call with. */
  private admit(call: ClientStreamCall<unknown>, kind: string): { from: NodeId } | CallStatus {
    const clusterId = parseHexId(call.metadata(MD_CLUSTER_ID));
    const from = parseHexId(call.metadata(MD_FROM));
    const to = parseHexId(call.metadata(MD_TO));
    const fields = { kind, remote: from, remote_cluster_id: clusterId, local_cluster_id: this.opts.clusterId, peer: call.remoteAddress };
    if (this.closed) return TRANSPORT_CLOSED;
    if (clusterId !== this.opts.clusterId) {
      this.log.warn('rejected peer connection: cluster ID mismatch', fields);
      return { code: GrpcCode.FAILED_PRECONDITION, message: ERR_CLUSTER_ID_MISMATCH };
    }
    if (from === undefined || from === 0n) return { code: GrpcCode.INVALID_ARGUMENT, message: `quorumkv: missing ${MD_FROM}` };
    if (to !== undefined && to !== this.opts.id) {
      this.log.warn('rejected peer connection: addressed to another member', { ...fields, to, local: this.opts.id });
      return { code: GrpcCode.FAILED_PRECONDITION, message: ERR_TO_MISMATCH };
    }
    if (this.opts.isRemovedMember?.(from) === true) {
      this.log.warn('rejected peer connection from a removed member', fields);
      return { code: GrpcCode.FAILED_PRECONDITION, message: ERR_MEMBER_REMOVED };
    }
    return { from };
  }

  /** An incoming raft message stream: every batch is decoded and stepped as it arrives (no
   *  hold: Raft's step is synchronous), until the sender half-closes (OK), goes away, or sends a
   *  batch that does not decode (INVALID_ARGUMENT). */
  private serveStream(call: StreamCall): BidiListener<MessageBatchPb> {
    const admitted = this.admit(call, 'stream');
    if (!('from' in admitted)) {
      call.fail(admitted);
      return IGNORE_REQUESTS;
    }
    const from = admitted.from;
    let done = false;
    const finish = (st: CallStatus | undefined): void => {
      if (done) return;
      done = true;
      this.inbound.delete(end);
      if (st !== undefined) call.fail(st);
      else call.respond({});
    };
    const end = (): void => finish(TRANSPORT_CLOSED);
    this.inbound.add(end);
    // Response headers now: the sender's signal that the stream is accepted and writes may start.
    call.sendHeaders();
    return {
      message: (batch) => {
        if (done) return;
        // A member removed since its stream was admitted (etcd refuses each message from one): the
        // refusal is what tells a member that missed its own removal to shut down.
        if (this.opts.isRemovedMember?.(from) === true) {
          this.log.warn('refused raft messages from a removed member; closing its stream', { remote: from });
          return finish({ code: GrpcCode.FAILED_PRECONDITION, message: ERR_MEMBER_REMOVED });
        }
        let msgs: Message[];
        try {
          msgs = decodeMessages(batch.messages);
        } catch (err) {
          assert(err instanceof CodecError || err instanceof RangeError, `transport: unexpected decode failure: ${String(err)}`);
          this.log.error('malformed raft message batch; closing the stream', { remote: from, error: (err as Error).message });
          return finish({ code: GrpcCode.INVALID_ARGUMENT, message: `quorumkv: malformed raft message batch: ${(err as Error).message}` });
        }
        for (const m of msgs) this.deliver(from, m);
      },
      halfClosed: () => finish(undefined),
      // The sender went away (cancelled, or its connection dropped): forget the call.
      closed: () => {
        if (call.cancelled) this.log.debug('incoming raft stream ended by the sender', { remote: from });
        done = true;
        this.inbound.delete(end);
      },
    };
  }

  private deliver(from: NodeId, m: Message): void {
    if (isLocalMsg(m.type) || m.type === MessageType.MsgSnap || m.from !== from) {
      // MsgSnap only comes whole through the snapshot stream; local types must never come from a peer.
      this.log.warn('dropped invalid raft message from peer', { remote: from, type: MessageType[m.type], from: m.from });
      return;
    }
    this.stats.received++;
    try {
      this.opts.onMessage(m);
    } catch (err) {
      // A throwing handler is our bug, but one bad message must not cut the peer off: log and go on.
      this.log.error('onMessage threw', { remote: from, type: MessageType[m.type], error: String(err) });
    }
  }

  private serveSnapshot(call: SnapshotCall): BidiListener<SnapshotChunkPb> {
    const admitted = this.admit(call, 'snapshot');
    if (!('from' in admitted)) {
      call.fail(admitted);
      return IGNORE_REQUESTS;
    }
    const from = admitted.from;
    const receiver = new SnapshotReceiver(this.maxSnapshotBytes);
    // Chunks are read from the network only as the install asks for them (a sender that went away
    // fails its next read: the install aborts rather than waits).
    const chunks = new RequestQueue<SnapshotChunkPb>(call, SNAPSHOT_READ_AHEAD_CHUNKS, () => new SnapshotRejected(GrpcCode.CANCELLED, 'quorumkv: sender cancelled the snapshot'));
    let done = false;
    const finish = (st: CallStatus | undefined, index = 0): void => {
      if (done) return;
      done = true;
      this.inbound.delete(end);
      if (st !== undefined) {
        this.log.warn('incoming snapshot failed', { remote: from, code: st.code, error: st.message, received_bytes: receiver.bytes });
        call.fail(st);
      } else call.respond({ index });
      // A reader still waiting for the next chunk (the server gave up, or we did) is released.
      chunks.abort(new SnapshotRejected(GrpcCode.CANCELLED, 'quorumkv: the snapshot call ended'));
    };
    const end = (): void => finish(TRANSPORT_CLOSED);
    this.inbound.add(end);
    this.receiveSnapshot(from, chunks, receiver).then(
      (index) => finish(undefined, index),
      (err: unknown) => {
        if (err instanceof SnapshotRejected) return finish({ code: err.code, message: err.message });
        const details = err instanceof Error ? err.message : String(err);
        finish({ code: GrpcCode.INTERNAL, message: `quorumkv: snapshot not installed: ${details}` });
      },
    );
    return chunks;
  }

  /** Reads the header, then hands the data to onSnapshot as a stream that pulls one chunk at a
   *  time from the call (RequestQueue: the call reads on demand). */
  private async receiveSnapshot(from: NodeId, chunks: RequestQueue<SnapshotChunkPb>, receiver: SnapshotReceiver): Promise<number> {
    const first = await chunks.next();
    if (first === undefined) throw new SnapshotRejected(GrpcCode.INVALID_ARGUMENT, 'snapshot: stream ended before its header');
    const headerChunk: SnapshotChunkPb = first;
    const m = receiver.header(headerChunk);
    const index = m.snapshot?.metadata.index ?? 0;
    this.log.info('receiving snapshot', { remote: from, index, size_bytes: headerChunk.sizeUnknown === true ? 'unknown' : headerChunk.totalSizeBytes });
    async function* data(): AsyncGenerator<Buffer> {
      const head = receiver.data(headerChunk, true);
      if (head.length > 0) yield head;
      for (;;) {
        const c = await chunks.next();
        if (c === undefined) break;
        const piece = receiver.data(c, false);
        if (piece.length > 0) yield piece;
      }
      receiver.finish();
    }
    await this.opts.onSnapshot(m, data());
    this.stats.received++;
    this.log.info('received snapshot', { remote: from, index, size_bytes: receiver.bytes, chunks: receiver.chunks });
    return index;
  }
}

/** The listener of a call refused before it started: its requests are dropped (the call has
 *  ended; the server stops reading them). */
const IGNORE_REQUESTS: BidiListener<unknown> = { message: () => undefined, halfClosed: () => undefined };
