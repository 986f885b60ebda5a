// How much of a small request's cost is the gRPC/HTTP/2 layer? Serves etcdserverpb.KV/Range with a
// fixed, empty RangeResponse three ways, for etcd's benchmark to drive (docs/performance.md, "Next
// levers"):
//   grpcjs   grpc-js's Server (what the client port used before src/api/h2_grpc.ts)
//   http2    node:http2 streams (the way src/api/h2_grpc.ts serves today)
//   frames   HTTP/2 framing written directly on the TCP socket: HPACK decoding with our decoder
//            (src/grpcserver/hpack.ts; hpack.js when the figures below were taken), responses
//            (HEADERS + DATA + trailers) as one socket write, no object per stream.
//            A measurement only: no flow control beyond replenishing the client's windows, no
//            CONTINUATION, padding or priority handling, one fixed answer — not a server.
//
//   node dist/scripts/bench-h2-ceiling.js grpcjs|http2|frames PORT
//   /tmp/etcd-benchmark --endpoints=127.0.0.1:PORT --conns=10 --clients=100 range k --consistency=s --total=100000
//
// On this project's 2-core VM (2026-12-01), two sessions: grpcjs 19.7k / 26.3k calls/s, http2
// 34.9k / 33.4k, frames 105-110k / 77.2k; one client back to back: http2 6.8k, frames 10.3-12.9k.
import net from 'node:net';
import http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import Long from 'long';
import type protobuf from 'protobufjs';
import { grpcDefinitions, protoRoot } from '../src/proto';
import { frameMessage } from '../src/grpcserver/server';
import { HpackDecoder } from '../src/grpcserver/hpack';

const header = { cluster_id: Long.fromString('1234', true), member_id: Long.fromString('5678', true), revision: 5, raft_term: 2 };
const root = protoRoot();
const RangeResponse = root.lookupType('etcdserverpb.RangeResponse');
const RangeRequest = root.lookupType('etcdserverpb.RangeRequest');
const answer = (): Buffer => frameMessage(RangeResponse.encode({ header, kvs: [], count: 0 } as unknown as protobuf.Message).finish());

function serveGrpcJs(port: number): void {
  const s = new grpc.Server({ 'grpc.enable_channelz': 0 });
  const def = (grpcDefinitions().etcdserverpb as Record<string, { service: grpc.ServiceDefinition }>).KV!.service;
  s.addService(def, { Range: (_c: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, { header, kvs: [], count: 0 }) });
  s.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err) => {
    if (err) throw err;
  });
}

function serveHttp2(port: number): void {
  const s = http2.createServer({ settings: { maxConcurrentStreams: 2 ** 32 - 1 } });
  s.on('stream', (stream) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      RangeRequest.decode(Buffer.concat(chunks).subarray(5));
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(answer());
    });
  });
  s.listen(port, '127.0.0.1');
}

function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const b = Buffer.allocUnsafe(9 + payload.length);
  b.writeUIntBE(payload.length, 0, 3);
  b[3] = type;
  b[4] = flags;
  b.writeUInt32BE(stream, 5);
  payload.copy(b, 9);
  return b;
}

/** An HPACK "literal header field without indexing — new name" (no Huffman). */
function literal(name: string, value: string): Buffer {
  const n = Buffer.from(name);
  const v = Buffer.from(value);
  return Buffer.concat([Buffer.from([0x00, n.length]), n, Buffer.from([v.length]), v]);
}

function serveFrames(port: number): void {
  const responseHeaders = Buffer.concat([Buffer.from([0x88]) /* :status 200, static index 8 */, literal('content-type', 'application/grpc')]);
  const trailers = literal('grpc-status', '0');
  const TYPE_DATA = 0, TYPE_HEADERS = 1, TYPE_SETTINGS = 4, TYPE_PING = 6, TYPE_WINDOW_UPDATE = 8;
  const FLAG_ACK = 1, FLAG_END_STREAM = 1, FLAG_END_HEADERS = 4, FLAG_PADDED = 8, FLAG_PRIORITY = 0x20;
  net
    .createServer({ noDelay: true }, (sock) => {
      let buf: Buffer = Buffer.alloc(0);
      let preface = false;
      const hpackIn = new HpackDecoder(1024 * 1024);
      const bodies = new Map<number, Buffer[]>();
      sock.write(frame(TYPE_SETTINGS, 0, 0, Buffer.alloc(0)));
      sock.on('error', () => undefined);
      sock.on('data', (chunk: Buffer) => {
        buf = buf.length > 0 ? Buffer.concat([buf, chunk]) : chunk;
        let off = 0;
        if (!preface) {
          if (buf.length < 24) return;
          off = 24;
          preface = true;
        }
        const out: Buffer[] = [];
        let received = 0;
        while (buf.length - off >= 9) {
          const len = buf.readUIntBE(off, 3);
          const type = buf[off + 3]!;
          const flags = buf[off + 4]!;
          const sid = buf.readUInt32BE(off + 5) & 0x7fffffff;
          if (buf.length - off - 9 < len) break;
          let p = buf.subarray(off + 9, off + 9 + len);
          off += 9 + len;
          if (type === TYPE_SETTINGS && !(flags & FLAG_ACK)) out.push(frame(TYPE_SETTINGS, FLAG_ACK, 0, Buffer.alloc(0)));
          else if (type === TYPE_PING && !(flags & FLAG_ACK)) out.push(frame(TYPE_PING, FLAG_ACK, 0, p));
          else if (type === TYPE_HEADERS) {
            if (flags & FLAG_PADDED) p = p.subarray(1, p.length - p[0]!);
            if (flags & FLAG_PRIORITY) p = p.subarray(5);
            hpackIn.decode(p);
            bodies.set(sid, []);
          } else if (type === TYPE_DATA) {
            received += len;
            const parts = bodies.get(sid);
            if (!parts) continue;
            parts.push(p);
            if (flags & FLAG_END_STREAM) {
              bodies.delete(sid);
              RangeRequest.decode(Buffer.concat(parts).subarray(5));
              out.push(frame(TYPE_HEADERS, FLAG_END_HEADERS, sid, responseHeaders), frame(TYPE_DATA, 0, sid, answer()), frame(TYPE_HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, sid, trailers));
            }
          }
        }
        buf = off < buf.length ? buf.subarray(off) : Buffer.alloc(0);
        if (received > 0) {
          const w = Buffer.allocUnsafe(4);
          w.writeUInt32BE(received);
          out.push(frame(TYPE_WINDOW_UPDATE, 0, 0, w));
        }
        if (out.length > 0) sock.write(out.length === 1 ? out[0]! : Buffer.concat(out));
      });
    })
    .listen(port, '127.0.0.1');
}

const [mode, portArg] = process.argv.slice(2);
const port = Number(portArg);
if (!Number.isInteger(port) || port <= 0) throw new Error('usage: bench-h2-ceiling.js grpcjs|http2|frames PORT');
if (mode === 'grpcjs') serveGrpcJs(port);
else if (mode === 'http2') serveHttp2(port);
else if (mode === 'frames') serveFrames(port);
else throw new Error(`unknown mode ${mode} (grpcjs, http2, frames)`);
console.log(`serving KV/Range (${mode}) on 127.0.0.1:${port}`);
