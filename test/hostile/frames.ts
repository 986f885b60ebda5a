// A tiny HTTP/2 frame writer for the hostile-client tests: raw frames on a net.Socket, written by
// hand, so that a test can do what no well-behaved client library would (never open a window,
// flood SETTINGS or PINGs, make the server reset streams).
import net from 'node:net';

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export const T = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8 } as const;
export const SETTINGS_MAX_CONCURRENT_STREAMS = 0x3;
export const SETTINGS_INITIAL_WINDOW_SIZE = 0x4;

export function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream, 5);
  return Buffer.concat([h, payload]);
}

export function settings(pairs: [number, number][] = []): Buffer {
  const p = Buffer.alloc(pairs.length * 6);
  pairs.forEach(([id, v], i) => (p.writeUInt16BE(id, i * 6), p.writeUInt32BE(v, i * 6 + 2)));
  return frame(T.SETTINGS, 0, 0, p);
}

export function windowUpdate(stream: number, inc: number): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt32BE(inc, 0);
  return frame(T.WINDOW_UPDATE, 0, stream, p);
}

export function ping(): Buffer {
  return frame(T.PING, 0, 0, Buffer.alloc(8));
}

/** HPACK literal without indexing, new name (RFC 7541 §6.2.2); lengths below 127. */
function literal(name: string, value: string): Buffer {
  return Buffer.concat([Buffer.from([0x00, name.length]), Buffer.from(name), Buffer.from([value.length]), Buffer.from(value)]);
}

/** A gRPC request's HEADERS (POST, http, `path`, content-type application/grpc, te: trailers). */
export function grpcHeaders(stream: number, path: string, endStream = false): Buffer {
  const block = Buffer.concat([Buffer.from([0x83, 0x86]), literal(':path', path), literal('content-type', 'application/grpc'), literal('te', 'trailers')]);
  return frame(T.HEADERS, 0x4 | (endStream ? 0x1 : 0), stream, block);
}

/** gRPC length-prefixed messages (uncompressed) in one DATA frame. */
export function grpcData(stream: number, messages: Buffer[], endStream = false): Buffer {
  const parts: Buffer[] = [];
  for (const m of messages) {
    const h = Buffer.alloc(5);
    h.writeUInt32BE(m.length, 1);
    parts.push(h, m);
  }
  return frame(T.DATA, endStream ? 0x1 : 0, stream, Buffer.concat(parts));
}

/** LeaseKeepAliveRequest{ID: id} (id < 128). */
export function keepAliveRequest(id: number): Buffer {
  return Buffer.from([0x08, id]);
}

/** WatchRequest{create_request: {key}} (key shorter than 100 bytes). */
export function watchCreateRequest(key: string): Buffer {
  const inner = Buffer.concat([Buffer.from([0x0a, key.length]), Buffer.from(key)]);
  return Buffer.concat([Buffer.from([0x0a, inner.length]), inner]);
}

/** A loopback socket that has sent the preface and `first` (SETTINGS and so on). */
export async function connectRaw(port: number, first: Buffer[]): Promise<net.Socket> {
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => undefined);
  await new Promise((r, j) => (s.once('connect', r), s.once('error', j)));
  s.write(Buffer.concat([PREFACE, ...first]));
  return s;
}

/** Parses frames as they arrive; `onFrame` sees each (type, flags, stream, payload). */
export function readFrames(s: net.Socket, onFrame: (type: number, flags: number, stream: number, payload: Buffer) => void): void {
  let buf: Buffer = Buffer.alloc(0);
  s.on('data', (c: Buffer) => {
    buf = buf.length === 0 ? c : Buffer.concat([buf, c]);
    let off = 0;
    while (buf.length - off >= 9) {
      const len = buf.readUIntBE(off, 3);
      if (buf.length - off < 9 + len) break;
      onFrame(buf[off + 3]!, buf[off + 4]!, buf.readUInt32BE(off + 5) & 0x7fffffff, buf.subarray(off + 9, off + 9 + len));
      off += 9 + len;
    }
    buf = buf.subarray(off);
  });
}

/** Writes `make()` for `ms` (or until the socket closes), waiting for the socket to drain when
 *  its buffer is full, so the flood goes as fast as the server reads and no faster. */
export async function flood(s: net.Socket, ms: number, make: () => Buffer): Promise<number> {
  const until = Date.now() + ms;
  let bytes = 0;
  while (Date.now() < until && !s.destroyed && s.writable) {
    const b = make();
    bytes += b.length;
    if (!s.write(b)) await drainedOrClosed(s, until);
  }
  return bytes;
}

/** The send windows the server gives us (as a flow-control-abiding client keeps them): the
 *  connection's, and each stream's from the server's SETTINGS_INITIAL_WINDOW_SIZE. */
export class SendWindows {
  conn = 65535;
  private initial = 65535;
  private readonly delta = new Map<number, number>();
  private waiters: (() => void)[] = [];

  constructor(s: net.Socket) {
    readFrames(s, (type, flags, stream, p) => {
      if (type === T.SETTINGS && !(flags & 1)) {
        for (let o = 0; o < p.length; o += 6) if (p.readUInt16BE(o) === SETTINGS_INITIAL_WINDOW_SIZE) this.initial = p.readUInt32BE(o + 2);
      } else if (type === T.WINDOW_UPDATE) {
        const inc = p.readUInt32BE(0) & 0x7fffffff;
        if (stream === 0) this.conn += inc;
        else this.delta.set(stream, (this.delta.get(stream) ?? 0) + inc);
      } else return;
      for (const w of this.waiters.splice(0)) w();
    });
  }

  stream(id: number): number {
    return Math.min(this.conn, this.initial + (this.delta.get(id) ?? 0));
  }

  spend(id: number, n: number): void {
    this.conn -= n;
    this.delta.set(id, (this.delta.get(id) ?? 0) - n);
  }

  /** Resolves on the next SETTINGS or WINDOW_UPDATE, or after `ms`. */
  changed(ms: number): Promise<void> {
    return new Promise((r) => {
      const t = setTimeout(r, ms);
      this.waiters.push(() => (clearTimeout(t), r()));
    });
  }
}

/** Sends DATA frames of `messages` on the streams `ids` in turn for `ms`, never beyond the
 *  windows the server gave: what a client that obeys flow control yet never reads can send. */
export async function floodWithinWindows(s: net.Socket, w: SendWindows, ids: number[], ms: number, messages: Buffer[]): Promise<number> {
  const until = Date.now() + ms;
  const size = grpcData(1, messages).length - 9;
  let bytes = 0;
  while (Date.now() < until && !s.destroyed && s.writable) {
    const id = ids.find((i) => w.stream(i) >= size);
    if (id === undefined) {
      await w.changed(Math.max(1, until - Date.now()));
      continue;
    }
    w.spend(id, size);
    bytes += size;
    if (!s.write(grpcData(id, messages))) await drainedOrClosed(s, until);
  }
  return bytes;
}

/** Resolves once `s` drains or closes, or at `until`; its listeners removed. */
function drainedOrClosed(s: net.Socket, until: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(t);
      s.off('drain', done);
      s.off('close', done);
      resolve();
    };
    const t = setTimeout(done, Math.max(1, until - Date.now()));
    s.once('drain', done);
    s.once('close', done);
  });
}

export interface PartialFloodResult {
  /** DATA payload bytes sent. */
  sent: number;
  streams: number;
  /** Streams the server ended (RST_STREAM, or a HEADERS with END_STREAM: a trailers-only status). */
  ended: number;
  /** The most bytes sent at once on streams the server had not ended: what it could be holding. */
  heldMax: number;
  /** The header blocks of the first statuses (trailers-only HEADERS), to decode. */
  statusBlocks: Buffer[];
}

/** Opens streams to `path` (up to `concurrent` at once, `streamsMax` in all), each declaring a
 *  gRPC message of `declaredBytes` and sending its bytes in 16 KiB DATA frames within the windows
 *  the server gives, never completing it; answers PINGs (so that the server's bandwidth estimate
 *  grows its windows, as for a real client). For `ms`. */
export async function partialRequestFlood(s: net.Socket, path: string, declaredBytes: number, ms: number, concurrent: number, streamsMax: number): Promise<PartialFloodResult> {
  const FRAME_BYTES = 16_384;
  const filler = Buffer.alloc(FRAME_BYTES, 0x61);
  const w = new SendWindows(s);
  const r: PartialFloodResult = { sent: 0, streams: 0, ended: 0, heldMax: 0, statusBlocks: [] };
  const open = new Map<number, number>(); // stream -> bytes sent on it
  const full = new Set<number>(); // streams sent all but the message's last frame
  let held = 0;
  const end = (id: number) => {
    const n = open.get(id);
    if (n === undefined) return;
    open.delete(id);
    full.delete(id);
    held -= n;
    r.ended++;
  };
  readFrames(s, (type, flags, id, p) => {
    if (type === T.PING && !(flags & 1)) s.write(frame(T.PING, 1, 0, p));
    else if (type === T.RST_STREAM) end(id);
    else if (type === T.HEADERS && flags & 1) {
      if (r.statusBlocks.length < 4) r.statusBlocks.push(Buffer.from(p));
      end(id);
    }
  });
  const until = Date.now() + ms;
  let nextId = 1;
  while (Date.now() < until && !s.destroyed && s.writable) {
    if (open.size - full.size < concurrent && r.streams < streamsMax) {
      const head = Buffer.alloc(5);
      head.writeUInt32BE(declaredBytes, 1);
      const id = nextId;
      nextId += 2;
      r.streams++;
      open.set(id, 0);
      s.write(Buffer.concat([grpcHeaders(id, path), frame(T.DATA, 0, id, head)]));
      w.spend(id, head.length);
      continue;
    }
    let picked: number | undefined;
    for (const [id, n] of open) {
      if (full.has(id)) continue;
      if (n + 2 * FRAME_BYTES >= declaredBytes) {
        full.add(id);
        continue;
      }
      if (w.stream(id) >= FRAME_BYTES) {
        picked = id;
        break;
      }
    }
    if (picked === undefined) {
      await w.changed(Math.max(1, Math.min(50, until - Date.now())));
      continue;
    }
    w.spend(picked, FRAME_BYTES);
    open.set(picked, open.get(picked)! + FRAME_BYTES);
    held += FRAME_BYTES;
    r.sent += FRAME_BYTES;
    r.heldMax = Math.max(r.heldMax, held);
    if (!s.write(frame(T.DATA, 0, picked, filler))) await drainedOrClosed(s, until);
  }
  return r;
}
