// Go's gRPC clients dial some etcd endpoints with the whole URL as the target, so their requests
// carry `:authority: http://127.0.0.1:2379`. etcd (Go's HTTP/2 server) accepts that; Node's HTTP/2
// server (nghttp2) rejects it as malformed and resets every stream, so without this module
// `etcdctl endpoint status --cluster` (and any etcdctl command given an http:// endpoint that builds
// a per-endpoint client) fails against quorumkv.
//
// Before a gRPC connection is handed to grpc-js we read the client's first request headers. To get
// them at all we must speak first — Go's gRPC client sends no request until it has the server's
// SETTINGS — so we send an empty SETTINGS frame ourselves and swallow the client's ACK of it (the
// real server then sends its own SETTINGS, which is legal: a peer may send several).
//   - authority without a scheme (every other client): the socket goes to grpc-js untouched, with
//     the bytes read so far put back: zero cost afterwards.
//   - authority with a scheme: the connection goes through a small rewriter that decodes each
//     header block (HPACK, tracking the client's dynamic table) and re-encodes it with the scheme
//     stripped, as literals that never touch the server's dynamic table. Only such clients pay.
import { Duplex } from 'node:stream';
import type net from 'node:net';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const hpack = require('hpack.js') as { decompressor: { create(o: { table: { size: number } }): HpackDecompressor } };

interface HpackDecompressor {
  write(b: Buffer): void;
  execute(): void;
  read(): { name: string; value: string } | null;
}

export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const FRAME_HEADER_BYTES = 9;
const TYPE_HEADERS = 1;
const TYPE_SETTINGS = 4;
const TYPE_CONTINUATION = 9;
const FLAG_ACK = 0x1;
const FLAG_END_STREAM = 0x1;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;
/** Largest frame payload we emit (the HTTP/2 default SETTINGS_MAX_FRAME_SIZE). */
const FRAME_PAYLOAD_BYTES_MAX = 16384;
/** Bytes we are willing to buffer while looking for the first request (bounds a hostile client). */
const PEEK_BYTES_MAX = 256 * 1024;
/** A client that opens a connection and sends no request this long is handed over as it is. */
const PEEK_TIMEOUT_MS = 200;

const EMPTY_SETTINGS = Buffer.from([0, 0, 0, TYPE_SETTINGS, 0, 0, 0, 0, 0]);

const SCHEME = /^[a-z][a-z0-9+.-]*:\/\//i;

interface Frame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
  raw: Buffer;
}

/** Splits whole frames off `buf`; returns them and the unconsumed rest. */
function parseFrames(buf: Buffer): { frames: Frame[]; rest: Buffer } {
  const frames: Frame[] = [];
  let off = 0;
  while (buf.length - off >= FRAME_HEADER_BYTES) {
    const len = buf.readUIntBE(off, 3);
    if (buf.length - off < FRAME_HEADER_BYTES + len) break;
    const raw = buf.subarray(off, off + FRAME_HEADER_BYTES + len);
    frames.push({ type: raw[3]!, flags: raw[4]!, streamId: raw.readUInt32BE(5) & 0x7fffffff, payload: raw.subarray(FRAME_HEADER_BYTES), raw });
    off += FRAME_HEADER_BYTES + len;
  }
  return { frames, rest: buf.subarray(off) };
}

/** The header block fragment of a HEADERS frame (padding and priority removed). */
function headerFragment(f: Frame): Buffer {
  let p = f.payload;
  let pad = 0;
  if (f.type === TYPE_HEADERS && f.flags & FLAG_PADDED) {
    pad = p[0]!;
    p = p.subarray(1);
  }
  if (f.type === TYPE_HEADERS && f.flags & FLAG_PRIORITY) p = p.subarray(5);
  return p.subarray(0, p.length - pad);
}

function decodeBlock(dec: HpackDecompressor, block: Buffer): { name: string; value: string }[] {
  dec.write(block);
  dec.execute();
  const out: { name: string; value: string }[] = [];
  for (let h = dec.read(); h !== null; h = dec.read()) out.push(h);
  return out;
}

function hpackInt(value: number, prefixBits: number, firstByteFlags: number): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [firstByteFlags | value];
  const out = [firstByteFlags | max];
  value -= max;
  while (value >= 128) {
    out.push((value & 0x7f) | 0x80);
    value >>>= 7;
  }
  out.push(value);
  return out;
}

/** Literal header fields without indexing, new name, no Huffman: the server's table stays empty. */
function encodeBlock(headers: { name: string; value: string }[]): Buffer {
  const parts: Buffer[] = [];
  for (const { name, value } of headers) {
    const n = Buffer.from(name, 'latin1');
    const v = Buffer.from(value, 'latin1');
    parts.push(Buffer.from([0x00]), Buffer.from(hpackInt(n.length, 7, 0)), n, Buffer.from(hpackInt(v.length, 7, 0)), v);
  }
  return Buffer.concat(parts);
}

function frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(FRAME_HEADER_BYTES);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([h, payload]);
}

/** Re-encodes one request's header block with the scheme stripped from :authority. */
function rewriteHeaders(streamId: number, endStream: boolean, headers: { name: string; value: string }[]): Buffer {
  const fixed = headers.map((h) => (h.name === ':authority' ? { name: h.name, value: h.value.replace(SCHEME, '') } : h));
  const block = encodeBlock(fixed);
  const out: Buffer[] = [];
  for (let off = 0, first = true; off < block.length || first; first = false) {
    const piece = block.subarray(off, off + FRAME_PAYLOAD_BYTES_MAX);
    off += piece.length;
    const last = off >= block.length;
    const type = first ? TYPE_HEADERS : TYPE_CONTINUATION;
    const flags = (last ? FLAG_END_HEADERS : 0) | (first && endStream ? FLAG_END_STREAM : 0);
    out.push(frame(type, flags, streamId, piece));
  }
  return Buffer.concat(out);
}

/** Client-to-server rewriter for connections whose authority carries a scheme. */
class AuthorityRewriter {
  private readonly dec = hpack.decompressor.create({ table: { size: 4096 } });
  private pending = Buffer.alloc(0);
  /** A header block split over HEADERS + CONTINUATION frames. */
  private block: { streamId: number; endStream: boolean; parts: Buffer[] } | undefined;

  transform(chunk: Buffer): Buffer {
    const { frames, rest } = parseFrames(this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk);
    this.pending = Buffer.from(rest);
    const out: Buffer[] = [];
    for (const f of frames) {
      if (f.type === TYPE_HEADERS) {
        this.block = { streamId: f.streamId, endStream: (f.flags & FLAG_END_STREAM) !== 0, parts: [headerFragment(f)] };
      } else if (f.type === TYPE_CONTINUATION && this.block) {
        this.block.parts.push(f.payload);
      } else {
        out.push(f.raw);
        continue;
      }
      if (f.flags & FLAG_END_HEADERS) {
        const b = this.block!;
        this.block = undefined;
        out.push(rewriteHeaders(b.streamId, b.endStream, decodeBlock(this.dec, Buffer.concat(b.parts))));
      }
    }
    return Buffer.concat(out);
  }
}

function rewritingDuplex(socket: net.Socket, firstBytes: Buffer): Duplex {
  const rw = new AuthorityRewriter();
  const d = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk: Buffer, _enc, cb) {
      socket.write(chunk, cb);
    },
    final(cb) {
      socket.end();
      cb();
    },
    destroy(err, cb) {
      socket.destroy(err ?? undefined);
      cb(err);
    },
  });
  const feed = (chunk: Buffer) => {
    let out: Buffer;
    try {
      out = rw.transform(chunk);
    } catch (err) {
      d.destroy(err as Error);
      return;
    }
    if (out.length > 0 && !d.push(out)) socket.pause();
  };
  // The preface is passed through unchanged; frames follow it.
  d.push(H2_PREFACE);
  feed(firstBytes.subarray(H2_PREFACE.length));
  socket.on('data', feed);
  socket.on('end', () => d.push(null));
  socket.on('error', (err) => d.destroy(err));
  socket.on('close', () => d.destroy());
  Object.assign(d, { remoteAddress: socket.remoteAddress, remotePort: socket.remotePort, localAddress: socket.localAddress, localPort: socket.localPort });
  return d;
}

/**
 * Given a socket whose first bytes were the HTTP/2 client preface (still buffered in `peeked`,
 * not yet consumed by anyone), resolves with what to hand to grpc-js: the socket itself (with every
 * byte read put back, minus our SETTINGS ACK) or a rewriting wrapper.
 */
export function admitGrpcConnection(socket: net.Socket, peeked: Buffer): Promise<Duplex> {
  return new Promise((resolve) => {
    let buf = peeked;
    let acked = false;
    let authority: string | undefined;
    let done = false;
    socket.write(EMPTY_SETTINGS);
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.pause();
      if (authority !== undefined && SCHEME.test(authority)) return resolve(rewritingDuplex(socket, buf));
      socket.unshift(buf);
      resolve(socket);
    };
    const timer = setTimeout(finish, PEEK_TIMEOUT_MS);
    const dec = hpack.decompressor.create({ table: { size: 4096 } });
    const scan = () => {
      // Walk the frames after the preface: remove the ACK of our SETTINGS, note the authority of the
      // first complete request header block.
      const body = buf.subarray(H2_PREFACE.length);
      const { frames, rest } = parseFrames(body);
      const kept: Buffer[] = [];
      let block: Buffer[] | undefined;
      for (const f of frames) {
        if (!acked && f.type === TYPE_SETTINGS && f.flags & FLAG_ACK && f.payload.length === 0) {
          acked = true;
          continue;
        }
        kept.push(f.raw);
        if (authority !== undefined) continue;
        if (f.type === TYPE_HEADERS) block = [headerFragment(f)];
        else if (f.type === TYPE_CONTINUATION && block) block.push(f.payload);
        if (block && f.flags & FLAG_END_HEADERS) {
          try {
            authority = decodeBlock(dec, Buffer.concat(block)).find((h) => h.name === ':authority')?.value ?? '';
          } catch {
            authority = ''; // not ours to judge: grpc-js will reject a broken block itself
          }
          block = undefined;
        }
      }
      buf = Buffer.concat([buf.subarray(0, H2_PREFACE.length), ...kept, rest]);
      if ((acked && authority !== undefined) || buf.length > PEEK_BYTES_MAX) finish();
    };
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      scan();
    };
    socket.on('data', onData);
    socket.resume();
    scan();
  });
}
