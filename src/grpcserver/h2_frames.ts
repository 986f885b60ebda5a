// HTTP/2's wire constants (RFC 9113 §4, §6, §7) and the frame builders both ends of our HTTP/2
// use: the server side of a connection (h2_conn.ts) and the peer Raft stream's client
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
