// A Range over many keys, or over values spilled to disk, served without blocking the event loop
// (issue 17): the store's sliced range (mvcc/range_job.ts) walks the index and reads the values a
// few milliseconds at a time, yielding to the loop in between, so heartbeats, the apply loop and
// other clients go on; for gRPC the answer is encoded slice by slice as it is read and sent as
// those parts (call.respondEncoded), never joined into one buffer or built as an object tree that
// protobufjs would encode in one pass (400 MB of 4 KiB values took ~10 s of loop time that way).
//
// The answer is what the one-pass range gives at the revision fixed when the call started. A
// compaction beyond it or a snapshot install meanwhile (the job goes stale) starts the range over,
// from the request as given: at the revision asked for (now possibly compacted: etcd's
// ErrCompacted) or, for revision 0, at the new current one, which is still a linearizable answer
// since none was sent. After RANGE_RESTARTS_MAX restarts the last attempt runs in one pass.
//
// Size: etcd 3.4 sends messages up to math.MaxInt32 bytes (grpc-go's MaxSendMsgSize) and fails a
// larger range with ResourceExhausted "grpc: trying to send message larger than max (N vs. M)";
// so does this, after measuring the whole answer (values are then read but not kept).
import type { MvccStore, RangeJob, StoredKv } from '../mvcc';
import { assert } from '../util/assert';
import { EtcdError, GrpcCode } from '../util/errors';
import { LOOP_CLOCK, type SliceClock } from '../util/slice_clock';
import { kvToPb, rangeEndOf, rangeOptions } from '../server/kv_ops';
import type { RangeRequest, RangeResponse } from '../proto/types';
import type { Encoded } from './call';
import { varint64Bytes, varintBytes, writeVarint, writeVarint64 } from '../proto/varint';

/** Keys walked per scan step (a few hundred µs of index walk). */
export const RANGE_KEYS_PER_STEP = 2000;
/** Versions whose values are read (and encoded) per step: 32 × 4 KiB is one spill read. */
export const RANGE_VALUES_PER_STEP = 32;
/** Time spent on a range before yielding to the event loop. */
export const RANGE_SLICE_MS_MAX = 10;
/** Restarts (compaction beyond the read revision, snapshot install) before one-pass. */
export const RANGE_RESTARTS_MAX = 3;
/** etcd 3.4's send limit for one gRPC message (math.MaxInt32). */
export const RANGE_RESPONSE_BYTES_MAX = 2 ** 31 - 1;

export interface SlicedRangeOptions {
  clock?: SliceClock;
  sliceMs?: number;
  /** The largest answer (RANGE_RESPONSE_BYTES_MAX; smaller in tests). */
  responseBytesMax?: number;
  /** True once nobody waits for the answer (the client went away): the range stops. */
  abandoned?: () => boolean;
}

/** The answer without its header: for gRPC the kvs as encoded RangeResponse fields (`parts`),
 *  for the gateway as objects (`kvs`). */
export interface SlicedRangeAnswer {
  /** The revision the range read at is `job.revision`; the header's is this one. */
  readonly headRevision: number;
  readonly count: number;
  readonly more: boolean;
  readonly parts?: Buffer[];
  readonly partsBytes?: number;
  readonly kvs?: RangeResponse['kvs'];
}

class Stale extends Error {}
class Abandoned extends Error {}

/** Runs `job` (its first scan step may already have run) to its answer, yielding every
 *  `sliceMs`; `encode`: gRPC parts rather than objects. Throws the store's read errors, the size
 *  error, or undefined-answer when abandoned (returns undefined). */
export async function rangeSliced(
  store: () => MvccStore,
  r: RangeRequest,
  first: RangeJob | undefined,
  encode: boolean,
  o: SlicedRangeOptions = {},
): Promise<SlicedRangeAnswer | undefined> {
  const clock = o.clock ?? LOOP_CLOCK;
  const bytesMax = o.responseBytesMax ?? RANGE_RESPONSE_BYTES_MAX;
  let job = first;
  for (let attempt = 0; attempt <= RANGE_RESTARTS_MAX; attempt++) {
    job ??= store().rangeJob(r.key, rangeEndOf(r.range_end), rangeOptions(r));
    const sliceMs = attempt === RANGE_RESTARTS_MAX ? Infinity : (o.sliceMs ?? RANGE_SLICE_MS_MAX);
    try {
      return await runJob(job, encode, bytesMax, new Slicer(clock, sliceMs, o.abandoned));
    } catch (err) {
      if (err instanceof Abandoned) return undefined;
      if (!(err instanceof Stale)) throw err;
    }
    job = undefined;
  }
  // The last attempt runs without yielding: nothing can make it stale.
  throw new Error('range: the one-pass attempt went stale');
}

/** Yields when a slice's time is spent. */
class Slicer {
  private start: number;
  constructor(
    private readonly clock: SliceClock,
    private readonly sliceMs: number,
    private readonly abandoned: (() => boolean) | undefined,
  ) {
    this.start = clock.now();
  }

  async maybeYield(): Promise<void> {
    if (this.clock.now() - this.start < this.sliceMs) return;
    await this.clock.yieldToLoop();
    if (this.abandoned?.()) throw new Abandoned();
    this.start = this.clock.now();
  }
}

async function runJob(job: RangeJob, encode: boolean, bytesMax: number, slicer: Slicer): Promise<SlicedRangeAnswer> {
  for (;;) {
    const state = job.scan(RANGE_KEYS_PER_STEP);
    if (state === 'stale') throw new Stale();
    if (state === 'done') break;
    await slicer.maybeYield();
  }
  if (job.valuesNeededForSort) {
    for (let done = 0; done < job.kvs.length; ) {
      const to = job.hydrateForSort(RANGE_VALUES_PER_STEP);
      if (to === 'stale') throw new Stale();
      done = to;
      await slicer.maybeYield();
    }
  }
  job.finish();
  const base = { headRevision: job.headRevision, count: job.count, more: job.more };
  if (job.countOnly) return encode ? { ...base, parts: [], partsBytes: 0 } : { ...base, kvs: [] };
  const n = job.kvs.length;
  if (!encode) {
    const kvs: RangeResponse['kvs'] = [];
    for (let i = 0; i < n; i += RANGE_VALUES_PER_STEP) {
      const got = job.readValues(i, RANGE_VALUES_PER_STEP);
      if (got === 'stale') throw new Stale();
      for (const kv of got) kvs.push(kvToPb(kv));
      await slicer.maybeYield();
    }
    return { ...base, kvs };
  }
  const parts: Buffer[] = [];
  let bytes = 0;
  const scratch = new SliceValues();
  for (let i = 0; i < n; i += RANGE_VALUES_PER_STEP) {
    const got = job.versionsWithValues(i, RANGE_VALUES_PER_STEP);
    if (got === 'stale') throw new Stale();
    scratch.load(got.kvs, got.spilled);
    if (bytes <= bytesMax) {
      const part = encodeRangeSlice(got.kvs, scratch);
      bytes += part.length;
      parts.push(part);
      if (bytes > bytesMax) parts.length = 0; // too large: measured to the end for the error, not kept
    } else {
      bytes += rangeSliceBytes(got.kvs, scratch);
    }
    await slicer.maybeYield();
  }
  return { ...base, parts, partsBytes: bytes };
}

/** The whole encoded RangeResponse of a sliced answer, as parts: the header and the fields after
 *  the kvs around the kvs' parts; or etcd's error when it is larger than `bytesMax`. */
export function encodedRangeResponse(header: Uint8Array, ans: SlicedRangeAnswer, bytesMax: number): Encoded<RangeResponse>[] | EtcdError {
  const { before, after } = rangeResponseFrame(header, ans.more, ans.count);
  const bytes = before.length + (ans.partsBytes ?? 0) + after.length;
  if (bytes > bytesMax) return responseTooLarge(bytes, bytesMax);
  // Parts of one RangeResponse, in order (respondEncoded's contract).
  return [before, ...(ans.parts ?? []), after] as unknown as Encoded<RangeResponse>[];
}

/** etcd's (grpc-go's) answer to a message above the send limit. */
export function responseTooLarge(bytes: number, bytesMax: number): EtcdError {
  return new EtcdError(GrpcCode.RESOURCE_EXHAUSTED, `grpc: trying to send message larger than max (${bytes} vs. ${bytesMax})`);
}

// ---- RangeResponse bytes ------------------------------------------------------------------------
// etcdserverpb.RangeResponse: 1 header, 2 kvs (mvccpb.KeyValue: 1 key, 2 create_revision,
// 3 mod_revision, 4 version, 5 value, 6 lease), 3 more, 4 count; proto3, defaults omitted.

const TAG_RESPONSE_HEADER = (1 << 3) | 2;
const TAG_RESPONSE_KVS = (2 << 3) | 2;
const TAG_RESPONSE_MORE = (3 << 3) | 0;
const TAG_RESPONSE_COUNT = (4 << 3) | 0;
const TAG_KV_KEY = (1 << 3) | 2;
const TAG_KV_CREATE = (2 << 3) | 0;
const TAG_KV_MOD = (3 << 3) | 0;
const TAG_KV_VERSION = (4 << 3) | 0;
const TAG_KV_VALUE = (5 << 3) | 2;
const TAG_KV_LEASE = (6 << 3) | 0;

/** A varint field (one-byte tag); absent when 0, as proto3 encodes it. */
function fieldBytes(n: number): number {
  return n === 0 ? 0 : 1 + varintBytes(n);
}

function writeField(buf: Buffer, off: number, tag: number, n: number): number {
  if (n === 0) return off;
  buf[off++] = tag;
  return writeVarint(buf, off, n);
}

/**
 * The values of one slice of versions, for the encoder: a value in the heap is its string; a
 * spilled one is copied from the spill's read buffer into one scratch buffer, reused from slice to
 * slice (no string and no Buffer per value: the young garbage of 4 KiB strings made scavenges of
 * up to 230 ms on a loaded machine). Keys-only slices have no values.
 */
export class SliceValues {
  private buf = Buffer.allocUnsafe(256 * 1024);
  private used = 0;
  private offs: number[] = [];
  private lens: number[] = [];
  private keysOnly = false;

  /** `spilled` is the job's (RangeJob.versionsWithValues); undefined = keys only. */
  load(kvs: readonly StoredKv[], spilled: ((fn: (i: number, buf: Buffer, off: number, len: number) => void) => void) | undefined): void {
    this.used = 0;
    this.offs = new Array<number>(kvs.length).fill(-1);
    this.lens = new Array<number>(kvs.length).fill(0);
    this.keysOnly = spilled === undefined;
    spilled?.((i, buf, off, len) => {
      if (this.used + len > this.buf.length) {
        const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.used + len));
        this.buf.copy(bigger, 0, 0, this.used);
        this.buf = bigger;
      }
      buf.copy(this.buf, this.used, off, off + len);
      this.offs[i] = this.used;
      this.lens[i] = len;
      this.used += len;
    });
  }

  lengthOf(kv: StoredKv, i: number): number {
    if (this.keysOnly) return 0;
    return typeof kv.value === 'string' ? kv.value.length : this.lens[i]!;
  }

  /** Writes kvs[i]'s value at out[off]; returns the offset after it. */
  write(kv: StoredKv, i: number, out: Buffer, off: number): number {
    if (typeof kv.value === 'string') return off + out.write(kv.value, off, 'latin1');
    assert(this.offs[i]! >= 0, 'range: a spilled value was not read');
    return off + this.buf.copy(out, off, this.offs[i]!, this.offs[i]! + this.lens[i]!);
  }
}

function kvBodyBytes(kv: StoredKv, valueBytes: number): number {
  let size = 0;
  if (kv.key.length > 0) size += 1 + varintBytes(kv.key.length) + kv.key.length;
  size += fieldBytes(kv.createRevision) + fieldBytes(kv.modRevision) + fieldBytes(kv.version);
  if (valueBytes > 0) size += 1 + varintBytes(valueBytes) + valueBytes;
  if (kv.lease !== 0n) size += 1 + varint64Bytes(kv.lease);
  return size;
}

/** Bytes encodeRangeSlice would produce. */
export function rangeSliceBytes(kvs: readonly StoredKv[], values: SliceValues): number {
  let size = 0;
  for (let i = 0; i < kvs.length; i++) {
    const body = kvBodyBytes(kvs[i]!, values.lengthOf(kvs[i]!, i));
    size += 1 + varintBytes(body) + body;
  }
  return size;
}

/** `kvs` (their values in `values`) as consecutive `kvs` fields of a RangeResponse. */
export function encodeRangeSlice(kvs: readonly StoredKv[], values: SliceValues): Buffer {
  const out = Buffer.allocUnsafe(rangeSliceBytes(kvs, values));
  let off = 0;
  for (let i = 0; i < kvs.length; i++) {
    const kv = kvs[i]!;
    const valueBytes = values.lengthOf(kv, i);
    out[off++] = TAG_RESPONSE_KVS;
    off = writeVarint(out, off, kvBodyBytes(kv, valueBytes));
    if (kv.key.length > 0) {
      out[off++] = TAG_KV_KEY;
      off = writeVarint(out, off, kv.key.length);
      off += out.write(kv.key, off, 'latin1');
    }
    off = writeField(out, off, TAG_KV_CREATE, kv.createRevision);
    off = writeField(out, off, TAG_KV_MOD, kv.modRevision);
    off = writeField(out, off, TAG_KV_VERSION, kv.version);
    if (valueBytes > 0) {
      out[off++] = TAG_KV_VALUE;
      off = writeVarint(out, off, valueBytes);
      off = values.write(kv, i, out, off);
    }
    if (kv.lease !== 0n) {
      out[off++] = TAG_KV_LEASE;
      off = writeVarint64(out, off, kv.lease);
    }
  }
  assert(off === out.length, 'range: encoded slice size');
  return out;
}

/** The RangeResponse fields around the kvs: the header (already encoded) before, more and count
 *  after. The whole message is [before, ...kvs parts, after]. */
export function rangeResponseFrame(header: Uint8Array, more: boolean, count: number): { before: Buffer; after: Buffer } {
  const before = Buffer.allocUnsafe(1 + varintBytes(header.length) + header.length);
  before[0] = TAG_RESPONSE_HEADER;
  before.set(header, writeVarint(before, 1, header.length));
  const after = Buffer.allocUnsafe((more ? 2 : 0) + fieldBytes(count));
  let off = 0;
  if (more) {
    after[off++] = TAG_RESPONSE_MORE;
    after[off++] = 1;
  }
  writeField(after, off, TAG_RESPONSE_COUNT, count);
  return { before, after };
}
