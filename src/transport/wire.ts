// The RaftTransport gRPC service (proto/quorumkv/raft.proto): method paths and (de)serializers, and the
// metadata every peer call carries. Envelopes are encoded with protobufjs directly (not proto-loader's
// object conversion): the only payloads are byte fields, which protobufjs decodes as views into the
// received frame, so a batch is never copied between the socket and codec.decodeMessages. A sent
// batch is encoded once, behind its envelope written in place (encodeBatchMessage), not encoded and
// then copied into a protobufjs envelope.

import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { PROTO_DIR } from '../proto';
import type { Message, NodeId } from '../raft';
import { assert } from '../util/assert';
import { encodeMessagesAfter } from './codec';

export const SERVICE_NAME = 'quorumkvpb.RaftTransport';
export const STREAM_PATH = `/${SERVICE_NAME}/Stream`;
export const SNAPSHOT_PATH = `/${SERVICE_NAME}/Snapshot`;

/** etcd rafthttp header names (lowercase, as gRPC metadata keys must be). IDs are hex, as etcd prints them. */
export const MD_FROM = 'x-server-from';
export const MD_TO = 'x-raft-to';
export const MD_CLUSTER_ID = 'x-etcd-cluster-id';

export const ERR_CLUSTER_ID_MISMATCH = 'etcdserver: cluster ID mismatch';
export const ERR_TO_MISMATCH = 'quorumkv: raft message for another member (x-raft-to mismatch)';
export const ERR_MEMBER_REMOVED = 'etcdserver: the member has been permanently removed from the cluster';

export interface MessageBatchPb {
  messages: Buffer;
}
export interface SnapshotChunkPb {
  message: Buffer;
  totalSizeBytes: number;
  data: Buffer;
  /** Header chunk only: the data is streamed without a size known up front. */
  sizeUnknown?: boolean;
}
export interface SnapshotResponsePb {
  index: number;
}

interface Types {
  batch: protobuf.Type;
  streamResponse: protobuf.Type;
  chunk: protobuf.Type;
  snapshotResponse: protobuf.Type;
  service: protobuf.Service;
}
let types: Types | undefined;

/** protobufjs types of raft.proto, loaded once per process. */
export function raftProtoTypes(): Types {
  if (types) return types;
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => (path.isAbsolute(target) ? target : path.join(PROTO_DIR, target));
  root.loadSync('quorumkv/raft.proto', { keepCase: true });
  root.resolveAll();
  types = {
    batch: root.lookupType('quorumkvpb.MessageBatch'),
    streamResponse: root.lookupType('quorumkvpb.StreamResponse'),
    chunk: root.lookupType('quorumkvpb.SnapshotChunk'),
    snapshotResponse: root.lookupType('quorumkvpb.SnapshotResponse'),
    service: root.lookupService(SERVICE_NAME),
  };
  return types;
}

const EMPTY = Buffer.alloc(0);

/**
 * The serialized MessageBatch of `msgs` (what serializeBatch({ messages: encodeMessages(msgs) })
 * gives, byte for byte) with the batch encoded once, in place behind its protobuf envelope (field
 * 1, wire type 2, varint length): no second copy of every entry on the way to a peer. The first
 * `headroomBytes` are left for the sender's framing (h2_client.ts MESSAGE_HEADROOM).
 */
export function encodeBatchMessage(msgs: readonly Message[], sizeBytes: number, headroomBytes = 0): Buffer {
  const prefixBytes = headroomBytes + 1 + varintBytes(sizeBytes);
  const buf = encodeMessagesAfter(prefixBytes, msgs, sizeBytes);
  buf[headroomBytes] = MESSAGES_FIELD_TAG;
  let v = sizeBytes;
  let off = headroomBytes + 1;
  while (v >= 0x80) {
    buf[off++] = (v & 0x7f) | 0x80;
    v = Math.floor(v / 128);
  }
  buf[off++] = v;
  assert(off === prefixBytes, 'wire: envelope length as computed');
  return buf;
}

/** MessageBatch.messages: field 1, length-delimited. */
const MESSAGES_FIELD_TAG = (1 << 3) | 2;

function varintBytes(v: number): number {
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

export function serializeBatch(b: MessageBatchPb): Buffer {
  return asBuffer(raftProtoTypes().batch.encode({ messages: b.messages }).finish());
}
export function deserializeBatch(buf: Buffer): MessageBatchPb {
  const m = raftProtoTypes().batch.decode(buf) as unknown as { messages?: Buffer };
  return { messages: m.messages ?? EMPTY };
}
export function serializeStreamResponse(): Buffer {
  return EMPTY;
}
export function deserializeStreamResponse(_buf: Buffer): Record<string, never> {
  return {};
}

export function serializeChunk(c: SnapshotChunkPb): Buffer {
  const t = raftProtoTypes().chunk;
  return asBuffer(t.encode({ message: c.message, total_size_bytes: c.totalSizeBytes, data: c.data, size_unknown: c.sizeUnknown === true }).finish());
}
export function deserializeChunk(buf: Buffer): SnapshotChunkPb {
  const m = raftProtoTypes().chunk.decode(buf) as unknown as { message?: Buffer; total_size_bytes?: protobuf.Long | number; data?: Buffer; size_unknown?: boolean };
  return { message: m.message ?? EMPTY, totalSizeBytes: toNumber(m.total_size_bytes), data: m.data ?? EMPTY, sizeUnknown: m.size_unknown === true };
}
export function serializeSnapshotResponse(r: SnapshotResponsePb): Buffer {
  return asBuffer(raftProtoTypes().snapshotResponse.encode({ index: r.index }).finish());
}
export function deserializeSnapshotResponse(buf: Buffer): SnapshotResponsePb {
  const m = raftProtoTypes().snapshotResponse.decode(buf) as unknown as { index?: protobuf.Long | number };
  return { index: toNumber(m.index) };
}

/** protobufjs returns a Buffer under Node; wrap (never copy) if it ever returns a plain Uint8Array. */
function asBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

function toNumber(v: protobuf.Long | number | undefined): number {
  if (v === undefined) return 0;
  if (typeof v === 'number') return v;
  // Sizes and indexes beyond 2^53 are not representable; saturate so that limit checks reject them.
  const high = v.high >>> 0;
  return high >= 0x20_0000 ? Number.MAX_SAFE_INTEGER : high * 0x1_0000_0000 + (v.low >>> 0);
}

/** The service definition (paths, (de)serializers), for the peer gRPC server's addService. */
export function serviceDefinition(): grpc.ServiceDefinition {
  return {
    Stream: {
      path: STREAM_PATH,
      requestStream: true,
      responseStream: false,
      requestSerialize: serializeBatch,
      requestDeserialize: deserializeBatch,
      responseSerialize: serializeStreamResponse,
      responseDeserialize: deserializeStreamResponse,
      originalName: 'stream',
    },
    Snapshot: {
      path: SNAPSHOT_PATH,
      requestStream: true,
      responseStream: false,
      requestSerialize: serializeChunk,
      requestDeserialize: deserializeChunk,
      responseSerialize: serializeSnapshotResponse,
      responseDeserialize: deserializeSnapshotResponse,
      originalName: 'snapshot',
    },
  };
}

export function idToHex(id: bigint): string {
  return id.toString(16);
}

/** Parses a hex ID from metadata; undefined when absent or malformed. */
export function parseHexId(v: grpc.MetadataValue | undefined): bigint | undefined {
  if (typeof v !== 'string' || !/^[0-9a-fA-F]{1,16}$/.test(v)) return undefined;
  return BigInt('0x' + v);
}

/** The metadata of every peer call, as request header fields. */
export function peerHeaders(from: NodeId, to: NodeId, clusterId: bigint): [string, string][] {
  return [
    [MD_FROM, idToHex(from)],
    [MD_TO, idToHex(to)],
    [MD_CLUSTER_ID, idToHex(clusterId)],
  ];
}

/** peerHeaders as grpc-js metadata (the snapshot sender's calls). */
export function peerMetadata(from: NodeId, to: NodeId, clusterId: bigint): grpc.Metadata {
  const md = new grpc.Metadata();
  for (const [k, v] of peerHeaders(from, to, clusterId)) md.set(k, v);
  return md;
}

/** "http://host:port" -> host and port (an IPv6 address without its brackets). */
export function peerHostPort(url: string): { host: string; port: number } {
  const u = new URL(url);
  peerTarget(url);
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  return { host, port: Number(u.port) };
}

/** "http://host:port" -> "host:port" (whatever the scheme, peers are dialed with TLS when the
 *  member has peer TLS files: TransportOptions.tls). */
export function peerTarget(url: string): string {
  const u = new URL(url);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`peer URL ${url}: scheme must be http or https`);
  if (u.port === '') throw new Error(`peer URL ${url}: port is required`);
  return u.host;
}
