// Encoding of Raft log entry payloads: one InternalRequest (proto/quorumkv/internal.proto) per
// normal entry. Decoded with the same conversion options as the gRPC layer, so the apply path sees
// the request objects exactly as the API handlers do.
import type protobuf from 'protobufjs';
import { CONVERSION, protoRoot } from '../proto';
import type {
  CompactionRequest,
  DeleteRangeRequest,
  Int64,
  PutRequest,
  RangeRequest,
  TxnRequest,
} from '../proto/types';

/** The request kinds an entry can carry (the InternalRequest oneof). Later issues add the lease,
 *  alarm and auth members already declared in the proto. */
export interface InternalRequestBody {
  range?: RangeRequest;
  put?: PutRequest;
  delete_range?: DeleteRangeRequest;
  txn?: TxnRequest;
  compaction?: CompactionRequest;
  lease_grant?: { TTL: Int64; ID: Int64 };
  lease_revoke?: { ID: Int64 };
  lease_checkpoint?: { checkpoints: { ID: Int64; remaining_TTL: Int64 }[] };
  member_attributes?: { ID: Int64; name: string; clientURLs: string[] };
  member_update?: { ID: Int64; peerURLs: string[] };
}

export interface InternalRequest extends InternalRequestBody {
  /** Proposal id (uint64, decimal string); the proposer awaits the entry carrying it. */
  id: string;
  request?: keyof InternalRequestBody;
}

let type: protobuf.Type | undefined;
function internalType(): protobuf.Type {
  return (type ??= protoRoot().lookupType('quorumkvpb.InternalRequest'));
}

export function encodeRequest(req: InternalRequest): Uint8Array {
  const t = internalType();
  return t.encode(t.fromObject(req)).finish();
}

export function decodeRequest(data: Uint8Array): InternalRequest {
  const t = internalType();
  // protobufjs hands out bytes fields as the input's type: keep keys and values Buffers.
  const buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return t.toObject(t.decode(buf), CONVERSION) as unknown as InternalRequest;
}
