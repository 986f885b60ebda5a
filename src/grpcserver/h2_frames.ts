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
  /** Received bytes that do not yet make a whole frame (or the whole preface). */
  private rest: Buffer | undefined = undefined;
  private prefaceLeft: boolean;

  constructor(
    private readonly maxFrame: number,
    private readonly preface: Buffer | undefined,
    private readonly onFrame: FrameHandler,
    /** False once the connection stops taking frames (ended, or cut off): the rest is dropped. */
    private readonly reading: () => boolean,
  ) {
    this.prefaceLeft = preface !== undefined;
  }

  read(chunk: Buffer): void {
    let buf = this.rest ? Buffer.concat([this.rest, chunk]) : chunk;
    this.rest = undefined;
    if (this.prefaceLeft) {
      const preface = this.preface!;
      const n = Math.min(buf.length, preface.length);
      if (!buf.subarray(0, n).equals(preface.subarray(0, n))) throw new H2ConnectionError(H2_PROTOCOL_ERROR, 'bad client preface');
      if (n < preface.length) {
        this.rest = buf;
        return;
      }
      this.prefaceLeft = false;
      buf = buf.subarray(preface.length);
    }
    let off = 0;
    while (buf.length - off >= FRAME_HEADER_BYTES && this.reading()) {
      const len = (buf[off]! << 16) | (buf[off + 1]! << 8) | buf[off + 2]!;
      if (len > this.maxFrame) throw new H2ConnectionError(H2_FRAME_SIZE_ERROR, `frame of ${len} bytes above SETTINGS_MAX_FRAME_SIZE`);
      if (buf.length - off < FRAME_HEADER_BYTES + len) break;
      const type = buf[off + 3]!;
      const flags = buf[off + 4]!;
      const streamId = buf.readUInt32BE(off + 5) & 0x7fffffff;
      const payload = buf.subarray(off + FRAME_HEADER_BYTES, off + FRAME_HEADER_BYTES + len);
      off += FRAME_HEADER_BYTES + len;
      this.onFrame(type, flags, streamId, payload);
    }
    // Copied: a view would keep the socket's whole chunk alive until the frame completes.
    if (off < buf.length && this.reading()) this.rest = Buffer.from(buf.subarray(off));
  }
}
