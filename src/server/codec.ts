// Encoding of Raft log entry payloads: one InternalRequest (proto/quorumkv/internal.proto) per
// normal entry. Decoded with the same conversion options as the gRPC layer, so the apply path sees
// the request objects exactly as the API handlers do.
import type protobuf from 'protobufjs';
import { CONVERSION, protoRoot } from '../proto';
import { decodePutEntry, encodePutEntry } from '../proto/put_codec';
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
  alarm?: { action: number; memberID: Int64; alarm: number };
  // Auth store entries (src/auth). Passwords are never here: the proposer sends hashedPassword.
  auth_enable?: object;
  auth_disable?: object;
  auth_status?: object;
  authenticate?: { name: string; simple_token: string };
  user_add?: { name: string; password: string; hashedPassword: string; options: { no_password: boolean } | null };
  user_delete?: { name: string };
  user_change_password?: { name: string; password: string; hashedPassword: string };
  user_grant_role?: { user: string; role: string };
  user_revoke_role?: { name: string; role: string };
  role_add?: { name: string };
  role_delete?: { role: string };
  role_grant_permission?: { name: string; perm: { permType: number; key: Buffer; range_end: Buffer } | null };
  role_revoke_permission?: { role: string; key: Buffer; range_end: Buffer };
  user_get?: { name: string };
  user_list?: object;
  role_get?: { role: string };
  role_list?: object;
}

/** Who proposed an entry, for apply-time permission checks (absent: the server itself). */
export interface InternalRequestHeader {
  username: string;
  auth_revision: Int64;
}

export interface InternalRequest extends InternalRequestBody {
  /** Proposal id (uint64, decimal string); the proposer awaits the entry carrying it. */
  id: string;
  header?: InternalRequestHeader | null;
  request?: keyof InternalRequestBody;
}

let type: protobuf.Type | undefined;
function internalType(): protobuf.Type {
  return (type ??= protoRoot().lookupType('quorumkvpb.InternalRequest'));
}

export function encodeRequest(req: InternalRequest): Uint8Array {
  // A put: hand-written, the same bytes (proto/put_codec.ts); anything else through protobufjs.
  const fast = req.put !== undefined ? encodePutEntry(req) : undefined;
  if (fast !== undefined) return fast;
  const t = internalType();
  // The request objects already have the encoder's types (Buffers, numbers or decimal strings for
  // int64, enum numbers): encoding them directly skips fromObject's conversion copy, a few percent
  // of a put's CPU.
  return t.encode(req as unknown as protobuf.Message).finish();
}

export function decodeRequest(data: Uint8Array): InternalRequest {
  const t = internalType();
  // protobufjs hands out bytes fields as the input's type: keep keys and values Buffers.
  const buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const fast = decodePutEntry(buf);
  if (fast !== undefined) return fast;
  return t.toObject(t.decode(buf), CONVERSION) as unknown as InternalRequest;
}
