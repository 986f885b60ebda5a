// A Range over many keys, or over values spilled to disk, served without blocking the event loop
// and without holding its answer (issue 17): the store's sliced range (mvcc/range_job.ts) walks the
// index a few milliseconds at a time, yielding to the loop in between, so heartbeats, the apply
// loop and other clients go on; then the answer is measured (a gRPC message announces its size
// first), and encoded and written slice by slice as the client reads it (call.respondInParts,
// back-pressured): a member holds about one send buffer of each answer, whatever its size, never
// the whole answer in one buffer nor as an object tree.
//
// The answer is what the one-pass range gives at the revision fixed when the call started. A
// compaction beyond it or a snapshot install before the first byte is sent (the job goes stale)
// starts the range over, from the request as given: at the revision asked for (now possibly
// compacted: etcd's ErrCompacted) or, for revision 0, at the new current one, which is still a
// linearizable answer since none was sent. After RANGE_RESTARTS_MAX restarts the last attempt
// walks in one pass. Once bytes are out, values that move under the answer (a snapshot install,
// the spill file's rewrite) end the call with UNAVAILABLE, which etcd's clients retry for reads.
//
// Memory across answers: each takes its cost from the member's RangeAnswerBudget (range_budget.ts)
// before it reads any value, and waits, or is refused, past it.
//
// Size: etcd 3.4 sends messages up to math.MaxInt32 bytes (grpc-go's MaxSendMsgSize) and fails a
// larger range with ResourceExhausted "grpc: trying to send message larger than max (N vs. M)";
// so does this, once it has measured the answer (values are read but not kept).
import type { MvccStore, RangeJob, StoredKv } from '../mvcc';
import { assert } from '../util/assert';
import { EtcdError, GrpcCode } from '../util/errors';
import { LOOP_CLOCK, type SliceClock } from '../util/slice_clock';
import { rangeEndOf, rangeOptions } from '../server/kv_ops';
import type { RangeRequest } from '../proto/types';
import { varint64Bytes, varintBytes, writeVarint, writeVarint64 } from '../proto/varint';
import type { BudgetRelease, RangeAnswerBudget } from './range_budget';

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
/** What a streamed answer holds besides its slices: the call's send buffer (the transports'
 *  SEND_BUFFER_BYTES) and the scratch buffer of a slice's values. */
export const RANGE_STREAM_HOLD_BYTES = 1024 * 1024 + 256 * 1024;
/** What an answer holds per version it returns (its slot in the job's list, the version kept
 *  alive by it after a compaction). */
export const RANGE_VERSION_HOLD_BYTES = 16;
/** A client that reads nothing of its answer for this long has it ended (RESOURCE_EXHAUSTED):
 *  its cost would otherwise stay taken from the member's budget. */
export const RANGE_READ_STALL_MS_MAX = 60_000;

/** Where an answer goes (the call's MessagePartWriter, parts as bytes). */
export interface PartSink {
  write(part: Buffer): boolean;
  whenDrained(fn: () => void): void;
  readonly over: boolean;
  end(): void;
}

export interface SlicedRangeOptions {
  clock?: SliceClock;
  sliceMs?: number;
  /** The largest answer (RANGE_RESPONSE_BYTES_MAX; smaller in tests). */
  responseBytesMax?: number;
  /** True once nobody waits for the answer (the client went away): the range stops. */
  abandoned?: () => boolean;
  /** Where to hear of the client going away at once (call.onAbandoned): a wait for the budget
   *  then leaves the queue instead of holding its place. */
  onAbandoned?: (fn: () => void) => void;
  /** The member's budget of answer bytes held; none: unbounded (tests). */
  budget?: RangeAnswerBudget;
  /** How long a client may read nothing (RANGE_READ_STALL_MS_MAX; shorter in tests). */
  readStallMs?: number;
}

/** What the caller gives: the encoded response header for the header's revision, and the
 *  call's answer in parts once its size is known. */
export interface RangeAnswerTarget {
  header(headRevision: number): Uint8Array;
  begin(messageBytes: number): PartSink;
}

/** The job's view went away before the first byte was sent: start over. */
export class Stale extends Error {}
/** Nobody waits for the answer any more. */
export class Abandoned extends Error {}

/** The answer was partly sent when its values moved (snapshot install, spill rewrite). */
export const RANGE_INTERRUPTED = new EtcdError(GrpcCode.UNAVAILABLE, 'quorumkv: the range answer was interrupted by a snapshot install or a value-file rewrite; retry');

/** Serves `r` to `target`: walks `job` (its first scan step may already have run) in slices,
 *  then sends the answer in parts. Throws the store's read errors, the size error, the budget's
 *  refusal and RANGE_INTERRUPTED; returns quietly when abandoned. */
export async function rangeSliced(store: () => MvccStore, r: RangeRequest, first: RangeJob | undefined, target: RangeAnswerTarget, o: SlicedRangeOptions = {}): Promise<void> {
  const bytesMax = o.responseBytesMax ?? RANGE_RESPONSE_BYTES_MAX;
  const stallMs = o.readStallMs ?? RANGE_READ_STALL_MS_MAX;
  let job = first;
  await withRestarts(o, 'range', async (slicer, held) => {
    job ??= store().rangeJob(r.key, rangeEndOf(r.range_end), rangeOptions(r));
    const kvsBytes = await prepareAnswer(job, slicer, held, o.budget);
    const { before, after } = rangeResponseFrame(target.header(job.headRevision), job.more, job.count);
    const bytes = before.length + kvsBytes + after.length;
    if (bytes > bytesMax) throw responseTooLarge(bytes, bytesMax);
    const sink = target.begin(bytes);
    if (!(await put(sink, before, stallMs))) return;
    if (!(await streamKvs(job, sink, slicer, stallMs))) return;
    if (!(await put(sink, after, stallMs))) return;
    sink.end();
  }, () => (job = undefined));
}

/**
 * Runs `attempt` until it finishes, is abandoned, or throws anything but Stale; `reset` runs
 * before each new attempt (the view it read went away). The budget taken by an attempt is kept
 * across restarts and given back at the end. The attempts from RANGE_RESTARTS_MAX on walk without
 * yielding; one more is allowed for a staleness that came while the last waited for the budget
 * (the next one holds it already). Shared by rangeSliced and txnSliced.
 */
export async function withRestarts(o: SlicedRangeOptions, what: string, attempt: (slicer: Slicer, held: Held) => Promise<void>, reset: () => void): Promise<void> {
  const clock = o.clock ?? LOOP_CLOCK;
  const held: Held = { release: undefined };
  try {
    for (let n = 0; n <= RANGE_RESTARTS_MAX + 1; n++) {
      const slicer = new Slicer(clock, n >= RANGE_RESTARTS_MAX ? Infinity : (o.sliceMs ?? RANGE_SLICE_MS_MAX), o.abandoned, o.onAbandoned);
      try {
        await attempt(slicer, held);
        return;
      } catch (err) {
        if (err instanceof Abandoned) return;
        if (!(err instanceof Stale)) throw err;
      }
      reset();
    }
  } finally {
    held.release?.();
  }
  throw new Error(`${what}: the one-pass attempt went stale`);
}

export interface Held {
  release: BudgetRelease | undefined;
}

/** Yields when a slice's time is spent. */
export class Slicer {
  private start: number;
  constructor(
    private readonly clock: SliceClock,
    private readonly sliceMs: number,
    private readonly abandoned: (() => boolean) | undefined,
    /** SlicedRangeOptions.onAbandoned. */
    readonly onAbandoned?: (fn: () => void) => void,
  ) {
    this.start = clock.now();
  }

  async maybeYield(): Promise<void> {
    if (this.clock.now() - this.start < this.sliceMs) return;
    await this.clock.yieldToLoop();
    this.check();
    this.start = this.clock.now();
  }

  /** Throws Abandoned once nobody waits for the answer. */
  check(): void {
    if (this.abandoned?.()) throw new Abandoned();
  }
}

/** Walks the job, sorts and cuts it, and measures its encoded versions (the bytes returned);
 *  takes the answer's cost from the budget into `held` unless it holds it already (a restart
 *  keeps what an earlier attempt took). */
export async function prepareAnswer(job: RangeJob, slicer: Slicer, held: Held, budget: RangeAnswerBudget | undefined): Promise<number> {
  for (;;) {
    const state = job.scan(RANGE_KEYS_PER_STEP);
    if (state === 'stale') throw new Stale();
    if (state === 'done') break;
    await slicer.maybeYield();
  }
  if (job.valuesNeededForSort) {
    // A sort by value holds every matching value at once: that is its cost.
    if (held.release === undefined && budget !== undefined) {
      const all = await measureKvs(job, slicer);
      held.release = await admit(budget, all + job.kvs.length * RANGE_VERSION_HOLD_BYTES, slicer);
    }
    for (let done = 0; done < job.kvs.length; ) {
      const to = job.hydrateForSort(RANGE_VALUES_PER_STEP);
      if (to === 'stale') throw new Stale();
      done = to;
      await slicer.maybeYield();
    }
    job.finish();
    return await measureKvs(job, slicer);
  }
  job.finish();
  const kvsBytes = await measureKvs(job, slicer);
  const n = job.kvs.length;
  if (held.release === undefined && budget !== undefined) {
    // Streamed: the send buffer and about two slices, whatever the answer's size.
    const streamed = n === 0 ? 0 : Math.min(kvsBytes, RANGE_STREAM_HOLD_BYTES + 2 * Math.ceil(kvsBytes / n) * RANGE_VALUES_PER_STEP);
    held.release = await admit(budget, streamed + n * RANGE_VERSION_HOLD_BYTES, slicer);
    // The wait let writes in: a compaction may have passed the revision meanwhile.
    if (job.stale) throw new Stale();
  }
  return kvsBytes;
}

/** Waits for the budget. Throws the refusal, or Abandoned. */
export async function admit(budget: RangeAnswerBudget, cost: number, slicer: Slicer): Promise<BudgetRelease> {
  const wait = budget.acquire(cost);
  slicer.onAbandoned?.(() => wait.cancel());
  const got = await wait.admitted;
  if (got instanceof EtcdError) throw got;
  if (got === undefined) throw new Abandoned();
  try {
    slicer.check();
  } catch (err) {
    got();
    throw err;
  }
  return got;
}

/** Bytes of the encoded versions of the job (before finish(): of all it collected). Reads the
 *  spilled values, keeps none. */
async function measureKvs(job: RangeJob, slicer: Slicer): Promise<number> {
  const scratch = new SliceValues();
  let bytes = 0;
  for (let i = 0; i < job.kvs.length; i += RANGE_VALUES_PER_STEP) {
    const got = job.versionsWithValues(i, RANGE_VALUES_PER_STEP);
    if (got === 'stale') throw new Stale();
    scratch.load(got.kvs, got.spilled);
    bytes += rangeSliceBytes(got.kvs, scratch);
    await slicer.maybeYield();
  }
  return bytes;
}

/** Encodes and writes the job's versions slice by slice, waiting for the client to read; false
 *  when the call ended meanwhile. */
export async function streamKvs(job: RangeJob, sink: PartSink, slicer: Slicer, readStallMs: number): Promise<boolean> {
  const scratch = new SliceValues();
  for (let i = 0; i < job.kvs.length; i += RANGE_VALUES_PER_STEP) {
    const got = job.versionsWithValues(i, RANGE_VALUES_PER_STEP);
    if (got === 'stale') throw RANGE_INTERRUPTED;
    scratch.load(got.kvs, got.spilled);
    if (!(await put(sink, encodeRangeSlice(got.kvs, scratch), readStallMs))) return false;
    await slicer.maybeYield();
  }
  return true;
}

/** Writes `part`, then waits until the sink can take more; false when the call is over. */
export async function put(sink: PartSink, part: Buffer, readStallMs: number): Promise<boolean> {
  if (sink.over) return false;
  if (!sink.write(part)) await drained(sink, readStallMs);
  return !sink.over;
}

/** Resolves once `sink` can take more; throws when its client read nothing for `ms`. */
function drained(sink: PartSink, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new EtcdError(GrpcCode.RESOURCE_EXHAUSTED, `quorumkv: the client read nothing of its range answer for ${ms} ms`)), ms);
    sink.whenDrained(() => {
      clearTimeout(timer);
      resolve();
    });
  });
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
