// Hand-written codecs of the messages every put passes through (issue 20, the cold start): the
// client's PutRequest, the PutResponse, and the log entry of a put (an InternalRequest with id,
// header and put). protobufjs generates its codecs at their first use (source text, then eval) and
// its generic decode + toObject + fromObject + encode of a put are several large functions V8 has to
// compile, on the two cores the members share, during a fresh member's first thousands of puts;
// its int64 fields go through the `long` package (division for every decimal string).
//
// Each function here produces exactly what protobufjs produces with the CONVERSION options (objects
// equal to decode + toObject, bytes equal to fromObject + encode, or encode for the log entry:
// test/proto/put_codec.test.ts checks both on generated messages), or answers `undefined` for an
// input outside the common shape (an unknown field, a wire type protobufjs would read differently,
// an int64 given in a form other than a safe number, a decimal string or {low, high}); the caller
// then uses protobufjs, so behaviour on unusual input is protobufjs's own.
import { assert } from '../util/assert';
import type { KeyValuePb, PutRequest, ResponseHeader } from './types';

/** A put's log entry as decode + toObject(CONVERSION) gives it (server/codec.ts's InternalRequest). */
export interface PutEntry {
  id: string;
  header: { username: string; auth_revision: string } | null;
  put: PutRequest;
  request: 'put';
}

/** What encodePutEntry is given: an entry object as the proposer builds it. */
export interface EntryObject {
  id?: unknown;
  header?: { username: string; auth_revision: unknown } | null;
  put?: unknown;
}

const TWO_32 = 4294967296;
const EMPTY = Buffer.alloc(0);

// ---- reading ----------------------------------------------------------------------------------

/** A position in a buffer; `bad` once the input is outside what these decoders read. */
interface Cursor {
  pos: number;
  bad: boolean;
  /** The last 64-bit varint read, as two unsigned 32-bit halves. */
  lo: number;
  hi: number;
}

/** Reads a varint of at most 32 significant bits (a tag, a length, a bool); marks bad beyond. */
function readVarint32(buf: Buffer, c: Cursor, end: number): number {
  let v = 0;
  for (let shift = 0; shift < 35; shift += 7) {
    if (c.pos >= end) break;
    const b = buf[c.pos++]!;
    v += (b & 0x7f) * 2 ** shift;
    if (b < 0x80) return v <= 0xffffffff ? v : ((c.bad = true), 0);
  }
  c.bad = true;
  return 0;
}

/** Reads a 64-bit varint into c.lo / c.hi (protobufjs's readLongVarint: at most 10 bytes). */
function readVarint64(buf: Buffer, c: Cursor, end: number): void {
  let lo = 0;
  let hi = 0;
  for (let i = 0; i < 10; i++) {
    if (c.pos >= end) break;
    const b = buf[c.pos++]!;
    const bits = b & 0x7f;
    if (i < 4) lo |= bits << (7 * i);
    else if (i === 4) {
      lo |= (bits & 0x0f) << 28;
      hi |= bits >> 4;
    } else hi |= bits << (7 * i - 32);
    if (b < 0x80) {
      c.lo = lo >>> 0;
      c.hi = hi >>> 0;
      return;
    }
  }
  c.bad = true;
}

/** The decimal string of c.lo / c.hi as an int64 (signed) or uint64, as protobufjs's Long gives it. */
function int64String(c: Cursor, signed: boolean): string {
  if (c.hi === 0) return String(c.lo);
  if (c.hi < 0x200000) return String(c.hi * TWO_32 + c.lo);
  const u = (BigInt(c.hi) << 32n) | BigInt(c.lo);
  return (signed ? BigInt.asIntN(64, u) : u).toString();
}

/** Reads a length-delimited field's bounds; returns its end (marks bad if it overruns). */
function readLength(buf: Buffer, c: Cursor, end: number): number {
  const len = readVarint32(buf, c, end);
  const to = c.pos + len;
  if (to > end) c.bad = true;
  return to;
}

function bytesAt(buf: Buffer, from: number, to: number): Buffer {
  // protobufjs: an empty bytes field is a fresh empty Buffer; otherwise a view of the input.
  return from === to ? Buffer.alloc(0) : buf.subarray(from, to);
}

function decodePutAt(buf: Buffer, c: Cursor, end: number): PutRequest | undefined {
  let key: Buffer | undefined;
  let value: Buffer | undefined;
  let lease = '0';
  let prevKv = false;
  let ignoreValue = false;
  let ignoreLease = false;
  while (c.pos < end && !c.bad) {
    const tag = readVarint32(buf, c, end);
    const field = tag >>> 3;
    const wire = tag & 7;
    if (field === 1 || field === 2) {
      if (wire !== 2) return undefined;
      const to = readLength(buf, c, end);
      if (c.bad) return undefined;
      const b = bytesAt(buf, c.pos, to);
      c.pos = to;
      if (field === 1) key = b;
      else value = b;
    } else if (field >= 3 && field <= 6 && wire === 0) {
      if (field === 3) {
        readVarint64(buf, c, end);
        lease = int64String(c, true);
      } else {
        const v = readVarint32(buf, c, end) !== 0;
        if (field === 4) prevKv = v;
        else if (field === 5) ignoreValue = v;
        else ignoreLease = v;
      }
    } else return undefined;
  }
  if (c.bad) return undefined;
  return { key: key ?? Buffer.alloc(0), value: value ?? Buffer.alloc(0), lease, prev_kv: prevKv, ignore_value: ignoreValue, ignore_lease: ignoreLease };
}

/** A PutRequest as protobufjs's decode + toObject(CONVERSION) gives it; undefined: use protobufjs. */
export function decodePutRequest(buf: Buffer): PutRequest | undefined {
  return decodePutAt(buf, { pos: 0, bad: false, lo: 0, hi: 0 }, buf.length);
}

/**
 * A log entry that is a put (fields id, header, put only), as decode + toObject(CONVERSION) gives
 * it: `{ id, header, put, request: 'put' }`; undefined for any other entry: use protobufjs.
 */
export function decodePutEntry(buf: Buffer): PutEntry | undefined {
  const c: Cursor = { pos: 0, bad: false, lo: 0, hi: 0 };
  const end = buf.length;
  let id = '0';
  let header: { username: string; auth_revision: string } | null = null;
  let put: PutRequest | undefined;
  while (c.pos < end && !c.bad) {
    const tag = readVarint32(buf, c, end);
    const field = tag >>> 3;
    const wire = tag & 7;
    if (field === 1 && wire === 0) {
      readVarint64(buf, c, end);
      id = int64String(c, false);
    } else if ((field === 2 || field === 4) && wire === 2) {
      const to = readLength(buf, c, end);
      if (c.bad) return undefined;
      if (field === 4) {
        put = decodePutAt(buf, c, to);
        if (put === undefined) return undefined;
      } else {
        const h = decodeHeaderAt(buf, c, to);
        if (h === undefined) return undefined;
        header = h;
      }
      c.pos = to;
    } else return undefined;
  }
  if (c.bad || put === undefined) return undefined;
  return { id, header, put, request: 'put' };
}

function decodeHeaderAt(buf: Buffer, c: Cursor, end: number): { username: string; auth_revision: string } | undefined {
  let username = '';
  let authRevision = '0';
  while (c.pos < end && !c.bad) {
    const tag = readVarint32(buf, c, end);
    if (tag === 10) {
      const to = readLength(buf, c, end);
      if (c.bad) return undefined;
      username = buf.toString('utf8', c.pos, to);
      c.pos = to;
    } else if (tag === 16) {
      readVarint64(buf, c, end);
      authRevision = int64String(c, false);
    } else return undefined;
  }
  return c.bad ? undefined : { username, auth_revision: authRevision };
}

// ---- writing ----------------------------------------------------------------------------------

/** An int64 value split into unsigned halves, or `false` for a form left to protobufjs. */
let splitLo = 0;
let splitHi = 0;
function split64(v: unknown): boolean {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) return false;
    splitLo = v % TWO_32;
    splitHi = (v - splitLo) / TWO_32;
    return true;
  }
  if (typeof v === 'string') {
    const n = v.length;
    if (n === 0 || n > 20) return false;
    for (let i = 0; i < n; i++) {
      const ch = v.charCodeAt(i);
      if (ch < 48 || ch > 57) return false;
    }
    if (n <= 15) return split64(Number(v));
    const b = BigInt(v);
    if (b >= 1n << 64n) return false;
    splitLo = Number(b & 0xffffffffn);
    splitHi = Number(b >> 32n);
    return true;
  }
  if (typeof v === 'object' && v !== null) {
    const o = v as { low?: unknown; high?: unknown };
    if (typeof o.low !== 'number' || typeof o.high !== 'number') return false;
    splitLo = o.low >>> 0;
    splitHi = o.high >>> 0;
    return true;
  }
  return false;
}

function varint64Size(lo: number, hi: number): number {
  if (hi === 0) return lo < 128 ? 1 : lo < 16384 ? 2 : lo < 2097152 ? 3 : lo < 268435456 ? 4 : 5;
  let n = 5;
  for (let h = hi >>> 3; h !== 0; h >>>= 7) n++;
  return n;
}

function varint32Size(n: number): number {
  return n < 128 ? 1 : n < 16384 ? 2 : n < 2097152 ? 3 : n < 268435456 ? 4 : 5;
}

function writeVarint64(buf: Buffer, off: number, lo: number, hi: number): number {
  while (hi !== 0 || lo > 127) {
    buf[off++] = (lo & 0x7f) | 0x80;
    lo = ((lo >>> 7) | (hi << 25)) >>> 0;
    hi >>>= 7;
  }
  buf[off++] = lo;
  return off;
}

function writeVarint32(buf: Buffer, off: number, n: number): number {
  while (n > 127) {
    buf[off++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  buf[off++] = n;
  return off;
}

/**
 * A message as a list of fields, sized first and then written: `ops` holds per field its tag, its
 * kind and its value (int64 halves, a Buffer, a nested message's size and end), flat in one array.
 */
const VARINT = 0;
const BYTES = 1;
const NESTED = 2;

class Plan {
  kinds: number[] = [];
  tags: number[] = [];
  los: number[] = [];
  his: number[] = [];
  bufs: (Buffer | undefined)[] = [];
  size = 0;

  /** Empties the plan for the next message (one plan serves every call: none is reentrant). */
  reset(): this {
    this.kinds.length = 0;
    this.tags.length = 0;
    this.los.length = 0;
    this.his.length = 0;
    this.bufs.length = 0;
    this.size = 0;
    return this;
  }

  /** Adds an int64 field; false if its value is left to protobufjs. */
  int64(tag: number, v: unknown): boolean {
    if (v === null || v === undefined) return true;
    if (!split64(v)) return false;
    this.push(VARINT, tag, splitLo, splitHi, undefined);
    this.size += 1 + varint64Size(splitLo, splitHi);
    return true;
  }

  bool(tag: number, v: unknown): boolean {
    if (v === null || v === undefined) return true;
    if (typeof v !== 'boolean') return false;
    this.push(VARINT, tag, v ? 1 : 0, 0, undefined);
    this.size += 2;
    return true;
  }

  bytes(tag: number, v: unknown): boolean {
    if (v === null || v === undefined) return true;
    if (!Buffer.isBuffer(v)) return false;
    this.push(BYTES, tag, v.length, 0, v);
    this.size += 1 + varint32Size(v.length) + v.length;
    return true;
  }

  /** Opens a nested message; returns its index for close(). */
  open(tag: number): number {
    this.push(NESTED, tag, 0, this.size, undefined);
    return this.kinds.length - 1;
  }

  close(at: number): void {
    const len = this.size - this.his[at]!;
    this.los[at] = len;
    this.size += 1 + varint32Size(len);
  }

  private push(kind: number, tag: number, lo: number, hi: number, b: Buffer | undefined): void {
    this.kinds.push(kind);
    this.tags.push(tag);
    this.los.push(lo);
    this.his.push(hi);
    this.bufs.push(b);
  }

  finish(): Buffer {
    const out = Buffer.allocUnsafe(this.size);
    let off = 0;
    const n = this.kinds.length;
    for (let i = 0; i < n; i++) {
      out[off++] = this.tags[i]!;
      const kind = this.kinds[i]!;
      if (kind === VARINT) off = writeVarint64(out, off, this.los[i]!, this.his[i]!);
      else {
        off = writeVarint32(out, off, this.los[i]!);
        if (kind === BYTES) off += this.bufs[i]!.copy(out, off);
      }
    }
    this.bufs.length = 0;
    if (off !== this.size) assert(false, `put_codec: wrote ${off} bytes of ${this.size}`);
    return out;
  }
}

const plan = new Plan();

function planHeader(p: Plan, h: unknown): boolean {
  if (h === null || h === undefined) return true;
  if (typeof h !== 'object') return false;
  const r = h as ResponseHeader;
  const at = p.open(0x0a);
  if (!(p.int64(0x08, r.cluster_id) && p.int64(0x10, r.member_id) && p.int64(0x18, r.revision) && p.int64(0x20, r.raft_term))) return false;
  p.close(at);
  return true;
}

function planKeyValue(p: Plan, tag: number, kv: unknown): boolean {
  if (kv === null || kv === undefined) return true;
  if (typeof kv !== 'object') return false;
  const r = kv as KeyValuePb;
  const at = p.open(tag);
  if (!(p.bytes(0x0a, r.key) && p.int64(0x10, r.create_revision) && p.int64(0x18, r.mod_revision) && p.int64(0x20, r.version) && p.bytes(0x2a, r.value) && p.int64(0x30, r.lease))) return false;
  p.close(at);
  return true;
}

/** A PutResponse as protobufjs's fromObject + encode writes it; undefined: use protobufjs. */
export function encodePutResponse(value: unknown): Buffer | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const v = value as { header?: unknown; prev_kv?: unknown };
  const p = plan.reset();
  if (!planHeader(p, v.header) || !planKeyValue(p, 0x12, v.prev_kv)) return undefined;
  return p.finish();
}

/**
 * A put's log entry `{ id, header?, put }` as protobufjs's encode (without fromObject) writes it;
 * undefined for any other entry or a field in a form left to protobufjs.
 */
export function encodePutEntry(req: EntryObject): Buffer | undefined {
  let keys = 0;
  for (const k in req) {
    if (k !== 'id' && k !== 'header' && k !== 'put') return undefined;
    keys++;
  }
  if (keys === 0) return undefined;
  if (typeof req.put !== 'object' || req.put === null) return undefined;
  const put = req.put as PutRequest;
  const p = plan.reset();
  if (!p.int64(0x08, req.id)) return undefined;
  const h = req.header;
  if (h !== null && h !== undefined) {
    if (typeof h !== 'object' || typeof h.username !== 'string') return undefined;
    const at = p.open(0x12);
    const name = h.username === '' ? EMPTY : Buffer.from(h.username, 'utf8');
    if (!p.bytes(0x0a, name) || !p.int64(0x10, h.auth_revision)) return undefined;
    p.close(at);
  }
  const at = p.open(0x22);
  if (!(p.bytes(0x0a, put.key) && p.bytes(0x12, put.value) && p.int64(0x18, put.lease) && p.bool(0x20, put.prev_kv) && p.bool(0x28, put.ignore_value) && p.bool(0x30, put.ignore_lease))) return undefined;
  p.close(at);
  return p.finish();
}
