// Transport: Raft messages between members over long-lived gRPC streams (proto/quorumkv/raft.proto).
//
// Design note
// - Streams. One client-streaming `Stream` call per (sender, receiver), opened lazily by the first
//   message and kept open; each member dials its peers, so A->B and B->A are two calls. The receiver
//   checks the metadata (x-etcd-cluster-id must match, else FAILED_PRECONDITION "etcdserver: cluster
//   ID mismatch"; x-raft-to must be itself; a removed member is refused) and then sends response
//   headers: that is the sender's "stream is up" signal. Nothing is written before it, so messages
//   queued during an outage are not lost in a call that never connected.
// - Batching. send() only queues; one microtask flushes every peer that got messages once the sending
//   code returns (the Ready loop sends each Ready's messages in one call), and everything queued for a
//   peer goes out as ONE write of one buffer (codec.ts: one allocation per batch), split only above
//   maxBatchBytes (1 MiB) so frames stay below gRPC's limits.
// - Sending. The stream is our own HTTP/2 client (h2_client.ts), not grpc-js: one connection per
//   call, the batch encoded once behind room for its DATA frame and gRPC headers, and everything a
//   connection sends in one turn in one socket write. The wire is the same gRPC call, so a member
//   of any version serves it.
// - Back-pressure. When call.write() returns false (the receiver's window is used up, or the socket
//   pushes back) the peer stops writing until drain and keeps queueing; the next write carries
//   everything that accumulated (bigger batches under load).
// - Flow control. A receiver opens the HTTP/2 windows of a message stream, and of its connection,
//   once it accepts the stream (RAFT_STREAM_RECV_WINDOW: 2 MiB per stream, 4 MiB per connection;
//   HTTP/2 starts at 64 KiB), so a batch of large entries is not held up by WINDOW_UPDATE round
//   trips. The windows are the peer gRPC server's per-method option (grpcserver RecvWindow).
// - Drops. Per-peer queue bound maxQueuedMessagesPerPeer (default 4096, etcd's streamBufSize). Beyond
//   it, new messages are dropped (counted in stats.dropped) and the peer is reported unreachable (once
//   per turn) so Raft switches it to probing and resends later. Messages already written into a stream
//   that then breaks are lost too (Raft tolerates loss; it retransmits). Messages to unknown peers are
//   dropped. A MsgSnap while one is already streaming to that peer is coalesced with it.
// - Reconnect. A broken stream or failed dial reports the peer unreachable and redials after an
//   exponential backoff with equal jitter (50 ms doubling to a 2 s cap; reset once a stream is
//   accepted), rotating through the peer's URLs (each dial a new connection). A dial not accepted
//   within dialTimeoutMs (3 s) counts as failed. Keepalive PINGs (every 10 s, 5 s to answer) find
//   peers that vanished without closing the connection.
// - Snapshots. MsgSnap goes through its own `Snapshot` call on its own connection (so megabytes of
//   snapshot do not delay heartbeats): header chunk (the message without data, plus the size or
//   "size unknown"), then data chunks of snapshotChunkBytes (1 MiB) with at most 4 in flight and
//   at most snapshotBytesPerSecondMax (128 MiB/s) on average; the data source is read as the
//   stream drains (getSnapshotData: the backend's LevelDB snapshot). The receiver checks sizes
//   against maxSnapshotBytes as they arrive and hands onSnapshot the data as an async iterable
//   that reads the next chunk from the call only when asked (at most SNAPSHOT_READ_AHEAD_CHUNKS
//   ahead; the stream's window, snapshotReceiveWindowBytes, is what the sender may have in flight
//   beyond them); it answers after onSnapshot resolved.
//   A second MsgSnap to a peer while one streams is coalesced with it. The sender reports
//   onSnapshotStatus(id, ok) either way (plus onUnreachable when the peer could not be reached).
// - TLS: `tls` (the member's peer files) here: every peer is dialed with TLS when it is set, our
//   certificate as the client certificate, the CA (or the system's roots) verifying the peer's, for
//   the message stream and, as grpc-js credentials, for snapshots; the peer port's TLS is its
//   listener's (src/server/peer.ts).

export { Transport, PEER_MESSAGE_BYTES_MAX, RAFT_STREAM_RECV_WINDOW, MAX_QUEUED_MESSAGES_PER_PEER_DEFAULT, MAX_BATCH_BYTES_DEFAULT, MAX_SNAPSHOT_BYTES_DEFAULT } from './transport';
export type { TransportOptions } from './transport';
export type { TransportStats } from './peer';
export type { SnapshotSource } from './snapshot';
export type { BackoffOptions } from './backoff';
export { encodeMessages, decodeMessages, CodecError } from './codec';
export { ERR_CLUSTER_ID_MISMATCH } from './wire';
