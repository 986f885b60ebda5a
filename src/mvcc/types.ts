// Public types of the MVCC state machine. Everything here is plain data: the store is pure and
// synchronous, so applying the same sequence of writes always yields the same state.
//
// Revisions are JavaScript numbers: a revision is incremented once per mutating request, so 2^53
// revisions is far beyond any realistic lifetime. Lease IDs are etcd int64s chosen at random by
// clients and servers, so they are bigint: a number would silently lose precision.

/** Main revision of the store: one per mutating request (a txn's writes share one). */
export type Revision = number;
/** etcd lease ID (int64). 0n means "no lease". */
export type LeaseId = bigint;

export const NO_LEASE: LeaseId = 0n;

/**
 * Key and value bytes as the store holds them: a latin1 ("binary") string, one char (0-255) per
 * byte. Why not Buffers: a Buffer costs a ~100-byte wrapper object plus its backing store (or a
 * reference that keeps a whole decoded Raft entry or peer frame alive), where a one-byte string is
 * its bytes plus a 16-byte header, allocated in the V8 heap with no separate C++ object. With 1M
 * keys of 256 B that is the difference between ~1.1 GB and ~0.6 GB per member (docs/performance.md).
 * JavaScript compares such strings char by char, i.e. in byte order, so the key index can use `<`.
 * Conversion happens at the edges: `bytesOf` when a request's Buffer enters the store,
 * `bufferOf` when a kv is encoded for the wire or the disk.
 */
export type Bytes = string;

/** What the store's write and read methods accept for a key or value. */
export type BytesLike = Bytes | Uint8Array;

export const EMPTY_BYTES: Bytes = '';

/** The store's representation of `b` (a copy: the store never holds a reference to `b`). */
export function bytesOf(b: BytesLike): Bytes {
  if (typeof b === 'string') return b;
  if (b.length === 0) return EMPTY_BYTES;
  const buf = Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  return buf.toString('latin1');
}

/** The bytes of `s` as a new Buffer. */
export function bufferOf(s: Bytes): Buffer {
  return Buffer.from(s, 'latin1');
}

/** Byte-order comparison of two Bytes (memcmp order, as etcd compares keys and values). */
export function compareBytes(a: Bytes, b: Bytes): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Where a spilled value sits in the store's spill file (see spill.ts): one integer packing the
 * file generation, the value's position and its length, so a spilled version costs no object.
 */
export type SpillRef = number;

/**
 * A version as the store holds it: its value is in the heap (Bytes) or, for values the store has
 * moved out of the heap, a SpillRef. Every KeyValue the store hands out carries its bytes; the
 * one exception is a sliced range's encoder (RangeJob.versionsWithValues), which gets StoredKvs
 * and the spilled values' bytes, to copy them into its answer without a string each.
 */
export interface StoredKv {
  readonly key: Bytes;
  readonly createRevision: Revision;
  readonly modRevision: Revision;
  readonly version: number;
  readonly value: Bytes | SpillRef;
  readonly lease: LeaseId;
}

/** A key's value at one revision (mvccpb.KeyValue). */
export interface KeyValue extends StoredKv {
  readonly key: Bytes;
  readonly createRevision: Revision;
  readonly modRevision: Revision;
  /** 1 on creation, +1 per modification; a delete resets the key (next put has version 1). */
  readonly version: number;
  readonly value: Bytes;
  readonly lease: LeaseId;
}

export const enum EventType {
  PUT = 0,
  DELETE = 1,
}

/** One change of one key (mvccpb.Event). A DELETE event's kv carries the key and the deleting
 *  revision as modRevision, with empty value and zero create revision/version, as etcd does. */
export interface Event {
  readonly type: EventType;
  readonly kv: KeyValue;
  /** The key's previous live value, if any, filled only while the store's prevKvWanted() says so
   *  (with a WatchableStore: while a synced watcher asked for prev_kv), else undefined, for PUT and
   *  DELETE events alike. The watch layer drops it unless the watcher asked for prev_kv. */
  readonly prevKv: KeyValue | undefined;
}

export const enum SortOrder {
  NONE = 0,
  ASCEND = 1,
  DESCEND = 2,
}

export const enum SortTarget {
  KEY = 0,
  VERSION = 1,
  CREATE = 2,
  MOD = 3,
  VALUE = 4,
}

/** Options of a range read; mirrors RangeRequest minus key/range_end. All optional. */
export interface RangeOptions {
  /** Read at this revision; 0 or undefined = the current revision. */
  revision?: Revision;
  /** Maximum number of kvs returned; 0 = no limit. */
  limit?: number;
  sortOrder?: SortOrder;
  sortTarget?: SortTarget;
  keysOnly?: boolean;
  countOnly?: boolean;
  /** Filters; 0 = no filter. Applied before limit; `count` ignores them, as in etcd. */
  minModRevision?: Revision;
  maxModRevision?: Revision;
  minCreateRevision?: Revision;
  maxCreateRevision?: Revision;
}

export interface RangeResult {
  /** Matching kvs in the requested order, cut at limit. Empty when countOnly. With keysOnly the
   *  value of every kv is empty. */
  readonly kvs: KeyValue[];
  /** Number of keys in the range at the read revision, ignoring limit and filters. */
  readonly count: number;
  /** True when `limit` cut off some of the matching keys. */
  readonly more: boolean;
  /** The store's current revision (not the read revision), as etcd's response header carries. */
  readonly revision: Revision;
}

/** The result of one committed write transaction. */
export interface WriteResult {
  /** The revision of the write, or the unchanged current revision if nothing was modified. */
  readonly revision: Revision;
  /** Events in the order the operations happened; all share `revision`. */
  readonly events: Event[];
}

/** One record of an MVCC snapshot stream (see MvccStore.exportSnapshot). The stream is: one
 *  `header`, then `kv` records, then one `end` carrying the record count as a paired check. A `kv`
 *  record is a retained version: `base` versions are the survivors of compaction below the
 *  compaction point (at most one per key, in key order); the other versions are the revision
 *  history from the compaction point on, in (revision, sub-revision) order. A tombstone is a kv
 *  with version 0. */
export type MvccSnapshotRecord =
  | { readonly type: 'header'; readonly currentRevision: Revision; readonly compactRevision: Revision }
  | { readonly type: 'kv'; readonly base: boolean; readonly kv: KeyValue }
  | { readonly type: 'end'; readonly kvCount: number };

/** Result of MvccStore.hashKV (HashKVResponse minus the header). */
export interface HashKVResult {
  /** CRC32-C over every retained version with modRevision <= hashRevision, in key then revision order. */
  readonly hash: number;
  readonly compactRevision: Revision;
  readonly hashRevision: Revision;
}
