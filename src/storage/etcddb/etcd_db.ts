// The backend as etcd's bolt database, and back: what makes quorumkv's snapshot files etcd's
// snapshot files. `etcdctl snapshot save` from a quorumkv member gives a bbolt file that `etcdctl
// snapshot status` reads and `etcdctl snapshot restore` turns into an etcd data dir; `quorumkv
// snapshot restore` reads the files etcd's own members give (a way off etcd, and back).
//
// etcd 3.4's buckets, and where each comes from in the backend (namespaces of backend/records.ts):
//   key       8-byte main revision, '_', 8-byte sub revision (+ 't' for a deletion) → mvccpb.KeyValue
//             ('k' records; a deletion's KeyValue holds only its key, as etcd writes it)
//   meta      consistent_index (u64 BE) = the applied index; finishedCompactRev and
//             scheduledCompactRev = the compaction point as a revision key; and
//             quorumkv_applied_term (u64 BE), which etcd ignores and a quorumkv restore uses
//   lease     lease ID (8 bytes BE) → leasepb.Lease {ID, TTL, RemainingTTL}
//   alarm     etcdserverpb.AlarmMember {MemberID, Alarm} → empty
//   auth      authEnabled ([1] or [0]), authRevision (u64 BE)
//   authUsers, authRoles  name → authpb.User / authpb.Role (the backend holds the same encodings)
//   members   member ID in hex → etcd's member JSON; members_removed: ID in hex → "removed"
//   cluster   clusterVersion → "3.4.0"
// Reading an etcd file back: the current revision is the newest in `key` (or the compaction
// point, if that is newer, as etcd's store restore does); the applied term is 1 when the file is
// etcd's (a restore starts a new cluster: the term only has to be at least that of the index).
import { assert } from '../../util/assert';
import { crc32c } from '../../util/crc32c';
import { LOOP_CLOCK, type SliceClock } from '../../util/slice_clock';
import { BoltReader, BoltWriter, type LeafValue, type PageSink } from './bolt';
import { encodeSnapshotRecords, snapshotHeader, snapshotTrailer, type SnapshotMeta } from '../backend/snapshot';
import { encodeKv, kvRecordKey } from '../backend/backend';
import { AUTH_ROLE, AUTH_USER, NS_ALARM, NS_AUTH, NS_KV, NS_LEASE, NS_MEMBER, NS_META, NS_REMOVED, alarmKey, decodeLease, encodeLease, leaseIdOfKey, leaseKey, metaKey, u64 } from '../backend/records';

const ETCD_CLUSTER_VERSION = '3.4.0';
const META_APPLIED_TERM_ETCD = 'quorumkv_applied_term';

// ---- protobuf, the few messages involved (varint fields and bytes) --------------------------------

function varint(out: number[], v: bigint): void {
  let x = BigInt.asUintN(64, v);
  while (x >= 0x80n) {
    out.push(Number(x & 0x7fn) | 0x80);
    x >>= 7n;
  }
  out.push(Number(x));
}

class PbWriter {
  private readonly head: number[] = [];
  private readonly parts: Buffer[] = [];
  private flushHead(): void {
    if (this.head.length > 0) this.parts.push(Buffer.from(this.head.splice(0)));
  }
  int(field: number, v: bigint | number): this {
    if (BigInt(v) === 0n) return this; // proto3: zero is not written
    varint(this.head, BigInt((field << 3) | 0));
    varint(this.head, BigInt(v));
    return this;
  }
  bytes(field: number, b: Buffer): this {
    if (b.length === 0) return this;
    varint(this.head, BigInt((field << 3) | 2));
    varint(this.head, BigInt(b.length));
    this.flushHead();
    this.parts.push(b);
    return this;
  }
  finish(): Buffer {
    this.flushHead();
    return Buffer.concat(this.parts);
  }
}

/** Field number → last varint (as bigint) or bytes; unknown wire types are skipped. */
function pbFields(b: Buffer, what: string): Map<number, bigint | Buffer> {
  const out = new Map<number, bigint | Buffer>();
  let off = 0;
  const readVarint = (): bigint => {
    let result = 0n;
    for (let shift = 0n; ; shift += 7n) {
      if (off >= b.length || shift > 63n) throw new Error(`${what}: malformed varint`);
      const byte = b[off++]!;
      result |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return result;
    }
  };
  while (off < b.length) {
    const tag = readVarint();
    const field = Number(tag >> 3n);
    switch (Number(tag & 7n)) {
      case 0:
        out.set(field, readVarint());
        break;
      case 1:
        off += 8;
        break;
      case 2: {
        const len = Number(readVarint());
        if (off + len > b.length) throw new Error(`${what}: field ${field} runs past the message`);
        out.set(field, b.subarray(off, off + len));
        off += len;
        break;
      }
      case 5:
        off += 4;
        break;
      default:
        throw new Error(`${what}: unsupported wire type in tag ${tag}`);
    }
  }
  if (off !== b.length) throw new Error(`${what}: truncated`);
  return out;
}

const int64 = (v: bigint | Buffer | undefined) => (typeof v === 'bigint' ? BigInt.asIntN(64, v) : 0n);
const bytesOf = (v: bigint | Buffer | undefined) => (Buffer.isBuffer(v) ? v : Buffer.alloc(0));

// ---- revision keys --------------------------------------------------------------------------------

/** etcd's revision key of a backend kv record key (NS_KV, main u64, sub u32), bytes copied. */
function etcdRevKeyOf(k: Buffer, tombstone: boolean): Buffer {
  const out = Buffer.alloc(tombstone ? 18 : 17);
  k.copy(out, 0, 1, 9);
  out[8] = 0x5f; // '_'
  k.copy(out, 13, 9, 13); // sub: a u32 in the backend, an int64 (high bytes zero) in etcd's key
  if (tombstone) out[17] = 0x74; // 't'
  return out;
}

// ---- mvccpb.KeyValue of a backend kv record, without a BigInt per field ---------------------------

const TWO_32 = 2 ** 32;

/** The u64 at buf[off] as a number, or -1 if it is 2^53 or more. */
function u64Number(buf: Buffer, off: number): number {
  const hi = buf.readUInt32BE(off);
  return hi > 0x1fffff ? -1 : hi * TWO_32 + buf.readUInt32BE(off + 4);
}

function varintBytes(n: number): number {
  let bytes = 1;
  for (; n >= 0x80; n = Math.floor(n / 0x80)) bytes++;
  return bytes;
}

function writeVarint(buf: Buffer, off: number, n: number): number {
  for (; n >= 0x80; n = Math.floor(n / 0x80)) buf[off++] = (n % 0x80) | 0x80;
  buf[off++] = n;
  return off;
}

/**
 * The KeyValue etcd stores for backend kv record (k, v): key(1), create_revision(2),
 * mod_revision(3), version(4), value(5), lease(6), zero fields left out (proto3); a deletion holds
 * only its key. The value record is createRevision u64 | version u64 | lease i64 | key length u32
 * | key | value (backend.ts encodeKv). A leaf value: its length is known at once, its bytes are
 * written straight into the bbolt page (no Buffer of its own per record). Fields of 2^53 or more
 * (a negative lease) take PbWriter's BigInt path: same bytes.
 */
class KvRecordPb implements LeafValue {
  readonly length: number;
  /** The encoding, when it could not be written from numbers (the BigInt path, or a deletion). */
  private readonly encoded: Buffer | undefined;
  private readonly create: number;
  private readonly mod: number;
  private readonly version: number;
  private readonly lease: number;
  private readonly keyEnd: number;
  /** The record's main revision (its mod_revision). */
  readonly mainRevision: number;

  constructor(
    k: Buffer,
    private readonly v: Buffer,
    tombstone: boolean,
  ) {
    const keyLen = v.readUInt32BE(24);
    this.keyEnd = 28 + keyLen;
    this.create = u64Number(v, 0);
    this.mod = u64Number(k, 1);
    this.version = u64Number(v, 8);
    this.lease = u64Number(v, 16);
    this.mainRevision = this.mod >= 0 ? this.mod : Number(k.readBigUInt64BE(1));
    if (tombstone) this.encoded = new PbWriter().bytes(1, v.subarray(28, this.keyEnd)).finish();
    else if (this.create < 0 || this.mod < 0 || this.version < 0 || this.lease < 0) {
      this.encoded = new PbWriter()
        .bytes(1, v.subarray(28, this.keyEnd))
        .int(2, v.readBigUInt64BE(0))
        .int(3, k.readBigUInt64BE(1))
        .int(4, v.readBigUInt64BE(8))
        .bytes(5, v.subarray(this.keyEnd))
        .int(6, v.readBigInt64BE(16))
        .finish();
    }
    this.length = this.encoded
      ? this.encoded.length
      : lenBytes(keyLen) + intBytes(this.create) + intBytes(this.mod) + intBytes(this.version) + lenBytes(v.length - this.keyEnd) + intBytes(this.lease);
  }

  copy(out: Buffer, start: number): number {
    if (this.encoded) return this.encoded.copy(out, start);
    const v = this.v;
    let o = start;
    const int = (field: number, n: number) => {
      if (n === 0) return;
      out[o++] = field << 3;
      o = writeVarint(out, o, n);
    };
    const bytes = (field: number, from: number, to: number) => {
      if (to === from) return;
      out[o++] = (field << 3) | 2;
      o = writeVarint(out, o, to - from);
      o += v.copy(out, o, from, to);
    };
    bytes(1, 28, this.keyEnd);
    int(2, this.create);
    int(3, this.mod);
    int(4, this.version);
    bytes(5, this.keyEnd, v.length);
    int(6, this.lease);
    assert(o - start === this.length, 'etcd db: KeyValue encoding size');
    return o - start;
  }
}

const intBytes = (n: number) => (n === 0 ? 0 : 1 + varintBytes(n));
const lenBytes = (n: number) => (n === 0 ? 0 : 1 + varintBytes(n) + n);

function etcdRevKey(main: bigint, sub: bigint, tombstone: boolean): Buffer {
  const k = Buffer.alloc(tombstone ? 18 : 17);
  k.writeBigInt64BE(main, 0);
  k[8] = 0x5f; // '_'
  k.writeBigInt64BE(sub, 9);
  if (tombstone) k[17] = 0x74; // 't'
  return k;
}

// ---- backend → etcd database ---------------------------------------------------------------------

/** Conversion work between two event-loop turns. */
const CONVERT_SLICE_MS_MAX = 10;

/** Stats of a written database. */
export interface EtcdDbWritten {
  bytes: number;
  revision: number;
}

/**
 * Writes the backend records (in backend key order, as a backend snapshot stream yields them) as
 * an etcd database through `sink`. `key` records go to their bucket as they come; the rest (a few
 * records per lease, member, user and role) are kept until the end, sorted in etcd's key order.
 */
export async function writeEtcdDb(records: AsyncIterable<[Buffer, Buffer][]>, meta: SnapshotMeta, sink: PageSink, clock: SliceClock = LOOP_CLOCK): Promise<EtcdDbWritten> {
  const w = new BoltWriter(sink);
  // Reads run one batch ahead and writes one behind, so their awaits often find the promise
  // settled and go on without an event-loop turn: the conversion yields by time itself.
  let sliceStart = clock.now();
  const small = new Map<string, [Buffer, Buffer][]>();
  const put = (bucket: string, k: Buffer, v: Buffer) => {
    let list = small.get(bucket);
    if (!list) small.set(bucket, (list = []));
    list.push([k, v]);
  };
  const keyBucket = w.bucket('key');
  let revision = 0;
  let compactRev = 0n;
  let authEnabled = false;
  let authRevision = 0n;
  for await (const batch of records) {
    for (const [k, v] of batch) {
      if (clock.now() - sliceStart >= CONVERT_SLICE_MS_MAX) {
        await clock.yieldToLoop();
        sliceStart = clock.now();
      }
      switch (k[0]) {
        case NS_KV: {
          assert(k.length === 13, 'backend kv record key');
          const tombstone = v.readUInt32BE(8) === 0 && v.readUInt32BE(12) === 0;
          const pb = new KvRecordPb(k, v, tombstone);
          await keyBucket.add(etcdRevKeyOf(k, tombstone), pb);
          if (pb.mainRevision > revision) revision = pb.mainRevision;
          break;
        }
        case NS_LEASE: {
          const lease = decodeLease(v);
          put('lease', k.subarray(1), new PbWriter().int(1, leaseIdOfKey(k)).int(2, lease.ttlSec).int(3, lease.remainingTtlSec).finish());
          break;
        }
        case NS_ALARM:
          put('alarm', new PbWriter().int(1, k.readBigUInt64BE(1)).int(2, k.readUInt32BE(9)).finish(), Buffer.alloc(0));
          break;
        case NS_MEMBER: {
          const m = JSON.parse(v.toString('utf8')) as { id: string; name?: string; peerURLs?: string[]; clientURLs?: string[]; isLearner?: boolean };
          // etcd's JSON: the ID as a number (written as digits: it may exceed 2^53).
          const fields = [`"id":${m.id}`, `"peerURLs":${JSON.stringify(m.peerURLs ?? [])}`];
          if (m.isLearner) fields.push('"isLearner":true');
          if (m.name) fields.push(`"name":${JSON.stringify(m.name)}`);
          if (m.clientURLs && m.clientURLs.length > 0) fields.push(`"clientURLs":${JSON.stringify(m.clientURLs)}`);
          put('members', Buffer.from(k.readBigUInt64BE(1).toString(16)), Buffer.from(`{${fields.join(',')}}`));
          break;
        }
        case NS_REMOVED:
          put('members_removed', Buffer.from(k.readBigUInt64BE(1).toString(16)), Buffer.from('removed'));
          break;
        case NS_AUTH:
          if (k[1] === AUTH_USER) put('authUsers', k.subarray(2), v);
          else if (k[1] === AUTH_ROLE) put('authRoles', k.subarray(2), v);
          break;
        case NS_META: {
          const name = k.subarray(1).toString('utf8');
          if (name === 'compact_revision') compactRev = v.readBigUInt64BE(0);
          else if (name === 'auth_enabled') authEnabled = v[0] === 1;
          else if (name === 'auth_revision') authRevision = v.readBigUInt64BE(0);
          else if (name === 'current_revision') revision = Math.max(revision, Number(v.readBigUInt64BE(0)));
          break;
        }
        default:
          break; // nothing else is state etcd has
      }
    }
  }
  await keyBucket.close();
  put('meta', Buffer.from('consistent_index'), u64(meta.appliedIndex));
  put('meta', Buffer.from(META_APPLIED_TERM_ETCD), u64(meta.appliedTerm));
  if (compactRev > 0n) {
    put('meta', Buffer.from('finishedCompactRev'), etcdRevKey(compactRev, 0n, false));
    put('meta', Buffer.from('scheduledCompactRev'), etcdRevKey(compactRev, 0n, false));
  }
  put('auth', Buffer.from('authEnabled'), Buffer.from([authEnabled ? 1 : 0]));
  put('auth', Buffer.from('authRevision'), u64(authRevision));
  put('cluster', Buffer.from('clusterVersion'), Buffer.from(ETCD_CLUSTER_VERSION));
  for (const name of ['alarm', 'auth', 'authRoles', 'authUsers', 'cluster', 'lease', 'members', 'members_removed', 'meta']) {
    const b = w.bucket(name);
    const list = (small.get(name) ?? []).sort((x, y) => Buffer.compare(x[0], y[0]));
    for (const [k, v] of list) await b.add(k, v);
    await b.close();
  }
  return { bytes: await w.finish(), revision };
}

// ---- etcd database → backend ---------------------------------------------------------------------

/** What `etcdctl snapshot status` prints for a database (etcd's dbStatus): a CRC32-C over every
 *  bucket name, key and value in order; the newest main revision in `key`; the number of keys in
 *  all buckets; bbolt's size. */
export function etcdDbStatus(db: BoltReader): { hash: number; revision: number; totalKey: number; totalSize: number } {
  let crc = 0;
  let revision = 0;
  let totalKey = 0;
  for (const name of db.buckets()) {
    crc = crc32c(crc, Buffer.from(name, 'utf8'));
    for (const [k, v] of db.entries(name)) {
      crc = crc32c(crc, k);
      crc = crc32c(crc, v);
      if (name === 'key' && k.length >= 17) revision = Number(k.readBigInt64BE(0));
      totalKey++;
    }
  }
  return { hash: crc >>> 0, revision, totalKey, totalSize: db.size };
}

export class EtcdDbError extends Error {
  override name = 'EtcdDbError';
}

/**
 * The backend records of an etcd database, as a backend snapshot stream (snapshot.ts format), so
 * that the one restore path (restoreSnapshotInto) takes either kind of file. Membership is left
 * out (a restore starts a new cluster from --initial-cluster).
 */
export async function* etcdDbAsSnapshotStream(db: BoltReader, onInfo?: (info: { revision: number; meta: SnapshotMeta }) => void): AsyncGenerator<Buffer> {
  const metaRecords = new Map<string, Buffer>();
  for (const [k, v] of db.entries('meta')) metaRecords.set(k.toString('latin1'), Buffer.from(v));
  const consistentIndex = metaRecords.get('consistent_index');
  const appliedIndex = consistentIndex && consistentIndex.length === 8 ? Number(consistentIndex.readBigUInt64BE(0)) : 0;
  const termRec = metaRecords.get(META_APPLIED_TERM_ETCD);
  const appliedTerm = termRec && termRec.length === 8 ? Number(termRec.readBigUInt64BE(0)) : appliedIndex > 0 ? 1 : 0;
  const compactKey = metaRecords.get('scheduledCompactRev') ?? metaRecords.get('finishedCompactRev');
  let compactRev = compactKey && compactKey.length >= 8 ? compactKey.readBigInt64BE(0) : 0n;
  const finished = metaRecords.get('finishedCompactRev');
  if (finished && finished.length >= 8 && finished.readBigInt64BE(0) > compactRev) compactRev = finished.readBigInt64BE(0);

  yield snapshotHeader({ appliedIndex, appliedTerm });

  // Records are gathered and encoded a batch at a time (snapshot.ts framing).
  const sum = { count: 0n, crc: 0 };
  let pending: [Buffer, Buffer][] = [];
  let pendingBytes = 0;
  const record = (k: Buffer, v: Buffer): Buffer | undefined => {
    pending.push([k, v]);
    pendingBytes += 8 + k.length + v.length;
    if (pendingBytes < 256 * 1024) return undefined;
    const out = encodeSnapshotRecords(pending, sum);
    pending = [];
    pendingBytes = 0;
    return out;
  };
  const metaRecord = (name: string, v: Buffer) => record(metaKey(name), v);

  let revision = 0n;
  let lastMain = -1n;
  let sub = 0;
  for (const [k, v] of db.entries('key')) {
    if (k.length !== 17 && !(k.length === 18 && k[17] === 0x74)) throw new EtcdDbError(`etcd database: malformed revision key ${k.toString('hex')} in bucket "key"`);
    const main = k.readBigInt64BE(0);
    // Sub-revisions are renumbered densely per main revision (the backend keeps them as u32).
    sub = main === lastMain ? sub + 1 : 0;
    lastMain = main;
    const tombstone = k.length === 18;
    const f = pbFields(v, 'etcd database: mvccpb.KeyValue');
    // A deletion is version 0 with no value (the backend's tombstone, as MvccStore makes it).
    const rec = encodeKv({
      key: bytesOf(f.get(1)).toString('latin1'),
      value: tombstone ? '' : bytesOf(f.get(5)).toString('latin1'),
      createRevision: tombstone ? 0 : Number(int64(f.get(2))),
      modRevision: Number(main),
      version: tombstone ? 0 : Number(int64(f.get(4))),
      lease: tombstone ? 0n : int64(f.get(6)),
    });
    const out = record(kvRecordKey(Number(main), sub), rec);
    if (out) yield out;
    if (main > revision) revision = main;
  }
  if (compactRev > revision) revision = compactRev;
  for (const [, v] of db.entries('lease')) {
    const f = pbFields(v, 'etcd database: leasepb.Lease');
    const out = record(leaseKey(int64(f.get(1))), encodeLease({ ttlSec: Number(int64(f.get(2))), remainingTtlSec: Number(int64(f.get(3))) }));
    if (out) yield out;
  }
  for (const [k] of db.entries('alarm')) {
    const f = pbFields(k, 'etcd database: AlarmMember');
    const out = record(alarmKey(BigInt.asUintN(64, int64(f.get(1))), Number(int64(f.get(2)))), Buffer.alloc(0));
    if (out) yield out;
  }
  for (const [bucket, kind] of [['authUsers', AUTH_USER], ['authRoles', AUTH_ROLE]] as const) {
    for (const [k, v] of db.entries(bucket)) {
      const out = record(Buffer.concat([Buffer.from([NS_AUTH, kind]), k]), Buffer.from(v));
      if (out) yield out;
    }
  }
  let authEnabled = false;
  let authRevision = 0n;
  for (const [k, v] of db.entries('auth')) {
    const name = k.toString('latin1');
    if (name === 'authEnabled') authEnabled = v.length > 0 && v[0] === 1;
    else if (name === 'authRevision' && v.length === 8) authRevision = v.readBigUInt64BE(0);
  }
  const metaOut = [
    metaRecord('applied_index', u64(appliedIndex)),
    metaRecord('applied_term', u64(appliedTerm)),
    metaRecord('current_revision', u64(revision)),
    compactRev > 0n ? metaRecord('compact_revision', u64(compactRev)) : undefined,
    metaRecord('auth_enabled', Buffer.from([authEnabled ? 1 : 0])),
    metaRecord('auth_revision', u64(authRevision)),
  ];
  for (const out of metaOut) if (out) yield out;
  if (pending.length > 0) yield encodeSnapshotRecords(pending, sum);
  yield snapshotTrailer(sum);
  onInfo?.({ revision: Number(revision), meta: { appliedIndex, appliedTerm } });
}
