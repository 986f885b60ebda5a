// HTTP/2's wire constants (RFC 9113 §4, §6, §7), the frame builders and the frame reader both ends
// of our HTTP/2 use: the server side of a connection (h2_conn.ts) and the peer Raft stream's client
// (transport/h2_client.ts).

export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

export const FRAME_HEADER_BYTES = 9;
export const T_DATA = 0;
export const T_HEADERS = 1;
export const T_PRIORITY = 2;
export const T_RST_STREAM = 3;
export const T_SETTINGS = 4;
export const T_PUSH_PROMISE = 5;
export const T_PING = 6;
export const T_GOAWAY = 7;
export const T_WINDOW_UPDATE = 8;
export const T_CONTINUATION = 9;
export const F_END_STREAM = 0x1;
export const F_ACK = 0x1;
export const F_END_HEADERS = 0x4;
export const F_PADDED = 0x8;
export const F_PRIORITY = 0x20;

export const H2_NO_ERROR = 0x0;
export const H2_PROTOCOL_ERROR = 0x1;
export const H2_INTERNAL_ERROR = 0x2;
export const H2_FLOW_CONTROL_ERROR = 0x3;
export const H2_STREAM_CLOSED = 0x5;
export const H2_FRAME_SIZE_ERROR = 0x6;
export const H2_REFUSED_STREAM = 0x7;
export const H2_CANCEL = 0x8;
export const H2_COMPRESSION_ERROR = 0x9;
export const H2_ENHANCE_YOUR_CALM = 0xb;

export const S_HEADER_TABLE_SIZE = 0x1;
export const S_ENABLE_PUSH = 0x2;
export const S_MAX_CONCURRENT_STREAMS = 0x3;
export const S_INITIAL_WINDOW_SIZE = 0x4;
export const S_MAX_FRAME_SIZE = 0x5;
export const S_MAX_HEADER_LIST_SIZE = 0x6;

/** The initial window of every stream and connection, and the smallest SETTINGS_MAX_FRAME_SIZE. */
export const DEFAULT_WINDOW = 65535;
export const DEFAULT_MAX_FRAME = 16384;
/** The largest SETTINGS_MAX_FRAME_SIZE (2^24-1) and the largest window (2^31-1). */
export const MAX_FRAME_SIZE_LIMIT = 16777215;
export const MAX_WINDOW = 2 ** 31 - 1;

/** A frame of `len` payload bytes: its header written, its payload left to the caller. */
export function frameWithRoom(type: number, flags: number, streamId: number, len: number): Buffer {
  const f = Buffer.allocUnsafe(FRAME_HEADER_BYTES + len);
  writeFrameHeader(f, 0, len, type, flags, streamId);
  return f;
}

/** Writes a frame header at `at` of `buf`. */
export function writeFrameHeader(buf: Buffer, at: number, len: number, type: number, flags: number, streamId: number): void {
  buf[at] = (len >>> 16) & 0xff;
  buf[at + 1] = (len >>> 8) & 0xff;
  buf[at + 2] = len & 0xff;
  buf[at + 3] = type;
  buf[at + 4] = flags;
  buf.writeUInt32BE(streamId, at + 5);
}

/** Frame header + payload as one buffer. */
export function frame(type: number, flags: number, streamId: number, payload: Buffer | undefined): Buffer {
  const f = frameWithRoom(type, flags, streamId, payload ? payload.length : 0);
  if (payload) payload.copy(f, FRAME_HEADER_BYTES);
  return f;
}

export function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}

/** A connection error (RFC 9113 §5.4.1): the connection ends with GOAWAY carrying `h2code`. */
export class H2ConnectionError extends Error {
  constructor(
    readonly h2code: number,
    message: string,
  ) {
    super(message);
  }
}

/** What the receiving side of a connection does with each whole frame. */
export type FrameHandler = (type: number, flags: number, streamId: number, payload: Buffer) => void;

/**
 * The receiving side's framing, shared by both ends of our HTTP/2: cuts a connection's bytes into
 * frames and hands each to the connection, keeping a frame cut by the end of a chunk for the next.
 * A frame above `maxFrame` (our SETTINGS_MAX_FRAME_SIZE) or bytes that are not `preface` (the
 * client preface a server expects first; none for a client) throw an H2ConnectionError.
 */
export class FrameReader {
  /** The frame a chunk's end cut: its header's 9 bytes until they are all here, then a buffer of
   *  the whole frame's size (the header says it), filled as bytes arrive. Each byte is copied once
   *  however small the chunks (a frame sent a byte at a time cost a copy of everything before it
   *  per byte when the rest was joined to each chunk: 80 ms of CPU for a 16 KiB frame). */
  private partial: Buffer | undefined = undefined;
  private partialUsed = 0;
  /** The preface's bytes so far (at most its 24). */
  private prefaceSeen: Buffer | undefined;

  constructor(
    private readonly maxFrame: number,
    private readonly preface: Buffer | undefined,
    private readonly onFrame: FrameHandler,
    /** False once the connection stops taking frames (ended, or cut off): the rest is dropped. */
    private readonly reading: () => boolean,
  ) {
    this.prefaceSeen = preface === undefined ? undefined : Buffer.alloc(0);
  }

  read(chunk: Buffer): void {
    if (this.prefaceSeen !== undefined) {
      const rest = this.readPreface(chunk);
      if (rest === undefined) return;
      chunk = rest;
    }
    if (!this.reading()) {
      this.partial = undefined;
      return;
    }
    let off = this.partial === undefined ? 0 : this.fillPartial(chunk);
    if (this.partial !== undefined) return; // the whole chunk went into it
    while (chunk.length - off >= FRAME_HEADER_BYTES && this.reading()) {
      const len = this.frameLength(chunk, off);
      if (chunk.length - off < FRAME_HEADER_BYTES + len) break;
      this.deliver(chunk, off, len);
      off += FRAME_HEADER_BYTES + len;
    }
    if (off < chunk.length && this.reading()) this.keep(chunk.subarray(off));
  }

  /** Checks the preface's bytes in `chunk`; returns the bytes after it, or undefined while it is
   *  not all here. */
  private readPreface(chunk: Buffer): Buffer | undefined {
    const preface = this.preface!;
    const take = Math.min(chunk.length, preface.length - this.prefaceSeen!.length);
    const seen = Buffer.concat([this.prefaceSeen!, chunk.subarray(0, take)]);
    if (!seen.equals(preface.subarray(0, seen.length))) throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'bad client preface');
    if (seen.length < preface.length) {
      this.prefaceSeen = seen;
      return undefined;
    }
    this.prefaceSeen = undefined;
    return chunk.subarray(take);
  }

  /** The payload length of the frame whose header is at `off` (all 9 bytes there), checked. */
  private frameLength(buf: Buffer, off: number): number {
    const len = (buf[off]! << 16) | (buf[off + 1]! << 8) | buf[off + 2]!;
    if (len > this.maxFrame) throw new H2ConnectionError(H2_FRAME_SIZE_ERROR, `frame of ${len} bytes above SETTINGS_MAX_FRAME_SIZE`);
    return len;
  }

  /** Hands on the frame at `off` of `buf` (header and `len` payload bytes all there). */
  private deliver(buf: Buffer, off: number, len: number): void {
    const type = buf[off + 3]!;
    const flags = buf[off + 4]!;
    const streamId = buf.readUInt32BE(off + 5) & 0x7fffffff;
    this.onFrame(type, flags, streamId, buf.subarray(off + FRAME_HEADER_BYTES, off + FRAME_HEADER_BYTES + len));
  }

  /** Starts a partial frame from the start of one (copied: a view would keep the socket's whole
   *  chunk alive until the frame completes). */
  private keep(bytes: Buffer): void {
    const whole = bytes.length >= FRAME_HEADER_BYTES ? FRAME_HEADER_BYTES + this.frameLength(bytes, 0) : FRAME_HEADER_BYTES;
    this.partial = Buffer.allocUnsafe(whole);
    this.partialUsed = bytes.copy(this.partial, 0);
  }

  /** Copies the start of `chunk` into the partial frame; hands the frame on once it is whole.
   *  Returns the bytes of `chunk` used. */
  private fillPartial(chunk: Buffer): number {
    let p = this.partial!;
    let off = 0;
    if (this.partialUsed < FRAME_HEADER_BYTES) {
      off = chunk.copy(p, this.partialUsed, 0, FRAME_HEADER_BYTES - this.partialUsed);
      this.partialUsed += off;
      if (this.partialUsed < FRAME_HEADER_BYTES) return off;
      const len = this.frameLength(p, 0);
      if (len > 0) {
        const whole = Buffer.allocUnsafe(FRAME_HEADER_BYTES + len);
        p.copy(whole, 0, 0, FRAME_HEADER_BYTES);
        this.partial = p = whole;
      }
    }
    const n = chunk.copy(p, this.partialUsed, off, off + p.length - this.partialUsed);
    this.partialUsed += n;
    off += n;
    if (this.partialUsed < p.length) return off;
    this.partial = undefined;
    this.partialUsed = 0;
    this.deliver(p, 0, p.length - FRAME_HEADER_BYTES);
    return off;
  }
}
