// The backend's record layout: which namespace (leading key byte) holds what, the key of each kind
// of record, and the encodings of the small records that are not MVCC versions (the version
// records' KeyValue codec is in backend.ts, next to the store it feeds). Everything that reads or
// writes backend records by hand (the backend, the etcd-database mapping in ../etcddb/etcd_db.ts,
// the snapshot file reader, restore) takes the layout from here, so each constant exists once.
//
//   'k' NS_KV      main revision u64 | sub-revision u32           → KeyValue (backend.ts encodeKv)
//                  current revision u64 | 0xffffffff              → a commit record (commit_record.ts)
//   'm' NS_META    name (utf8)                                    → u64, or a flag byte
//   'l' NS_LEASE   lease ID i64                                   → LeaseRecord (encodeLease)
//   'c' NS_MEMBER  member ID u64                                  → member JSON (server/membership.ts)
//   'r' NS_REMOVED member ID u64                                  → empty: removed, never to return
//   'A' NS_AUTH    'u' | 'r' + name (utf8)                        → authpb.User | authpb.Role
//   'a' NS_ALARM   member ID u64 | alarm type u32                 → empty: an active alarm
// All integers big-endian, so LevelDB's byte order is numeric order.
import { assert } from '../../util/assert';

export const NS_KV = 0x6b;
export const NS_META = 0x6d;
export const NS_LEASE = 0x6c;
export const NS_MEMBER = 0x63;
export const NS_REMOVED = 0x72;
export const NS_AUTH = 0x41;
export const AUTH_USER = 0x75;
export const AUTH_ROLE = 0x72;
export const NS_ALARM = 0x61;

/** Namespaces holding cluster membership: a restore (a new cluster) drops them. */
export const MEMBERSHIP_NAMESPACES: readonly number[] = [NS_MEMBER, NS_REMOVED];

export function metaKey(name: string): Buffer {
  return Buffer.concat([Buffer.from([NS_META]), Buffer.from(name, 'utf8')]);
}

/** Meta records: compaction point (u64), auth enabled (one byte, 1 = on) and auth revision (u64).
 *  Applied index and term, allocatedBytes and current revision are in the newest commit record
 *  (commit_record.ts); as meta records only in backends written before it, in snapshot streams and
 *  in restores. */
export const META_APPLIED_INDEX = metaKey('applied_index');
export const META_APPLIED_TERM = metaKey('applied_term');
export const META_ALLOCATED_BYTES = metaKey('allocated_bytes');
export const META_COMPACT_REV = metaKey('compact_revision');
export const META_CURRENT_REV = metaKey('current_revision');
export const META_AUTH_ENABLED = metaKey('auth_enabled');
export const META_AUTH_REVISION = metaKey('auth_revision');

export function u64(n: number | bigint): Buffer {
  const b = Buffer.allocUnsafe(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

/** A u64 record value as a number; a missing record is 0. */
export function readU64(b: Buffer | undefined): number {
  return b === undefined ? 0 : Number(b.readBigUInt64BE(0));
}

/** The key of a member ('c') or removed-member ('r') record. */
export function idKey(ns: number, id: bigint): Buffer {
  const key = Buffer.allocUnsafe(9);
  key[0] = ns;
  key.writeBigUInt64BE(id, 1);
  return key;
}

export function authKey(kind: number, name: string): Buffer {
  return Buffer.concat([Buffer.from([NS_AUTH, kind]), Buffer.from(name, 'utf8')]);
}

export function alarmKey(memberId: bigint, type: number): Buffer {
  const key = Buffer.allocUnsafe(13);
  key[0] = NS_ALARM;
  key.writeBigUInt64BE(memberId, 1);
  key.writeUInt32BE(type, 9);
  return key;
}

// ---- leases ----------------------------------------------------------------------------------------

/** What the backend keeps of a lease: its granted TTL and its last checkpointed remaining TTL
 *  (attached keys are not stored: each key-value records its lease). */
export interface LeaseRecord {
  ttlSec: number;
  remainingTtlSec: number;
}

export const LEASE_VALUE_BYTES = 16;

/** Lease IDs are int64 (etcd's), so the key holds them signed. */
export function leaseKey(id: bigint): Buffer {
  const key = Buffer.allocUnsafe(9);
  key[0] = NS_LEASE;
  key.writeBigInt64BE(id, 1);
  return key;
}

export function leaseIdOfKey(key: Buffer): bigint {
  assert(key.length === 9 && key[0] === NS_LEASE, 'backend: malformed lease record key');
  return key.readBigInt64BE(1);
}

/** ttl i64 | remaining ttl i64. */
export function encodeLease(lease: LeaseRecord): Buffer {
  const b = Buffer.allocUnsafe(LEASE_VALUE_BYTES);
  b.writeBigInt64BE(BigInt(lease.ttlSec), 0);
  b.writeBigInt64BE(BigInt(lease.remainingTtlSec), 8);
  return b;
}

export function decodeLease(b: Buffer): LeaseRecord {
  assert(b.length === LEASE_VALUE_BYTES, `backend: lease record of ${b.length} bytes`);
  return { ttlSec: Number(b.readBigInt64BE(0)), remainingTtlSec: Number(b.readBigInt64BE(8)) };
}

// ---- version record keys and u64 fields without BigInts -------------------------------------------

/** A version record's key: 'k' | main revision u64 | sub-revision u32. */
export function kvRecordKey(rev: number, sub: number): Buffer {
  const k = Buffer.allocUnsafe(13);
  k[0] = NS_KV;
  writeU64Number(k, rev, 1);
  k.writeUInt32BE(sub, 9);
  return k;
}

/** A u64 field from a number: the bytes of writeBigUInt64BE(BigInt(n)) without the BigInts (every
 *  member writes three such fields per put; issue 20). */
export function writeU64Number(b: Buffer, n: number, off: number): void {
  if (n >= 0 && Number.isSafeInteger(n)) {
    b.writeUInt32BE(Math.floor(n / 0x1_0000_0000), off);
    b.writeUInt32BE(n >>> 0, off + 4);
  } else b.writeBigUInt64BE(BigInt(n), off); // beyond 2^53 as before; throws for a negative or fraction
}

/** A u64 field as a number: the same as Number(readBigUInt64BE), without a BigInt per field
 *  below 2^53 (every revision and version; a restart decodes four such fields per version). */
export function readU64Number(b: Buffer, off: number): number {
  const hi = b.readUInt32BE(off);
  return hi < 0x200000 ? hi * 0x1_0000_0000 + b.readUInt32BE(off + 4) : Number(b.readBigUInt64BE(off));
}
