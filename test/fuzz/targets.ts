// The fuzz targets: every parser a client (or a file handed to the member) reaches, each as a
// function of one Buffer, with the errors its module declares for bad input. Anything else it
// throws is a finding (engine.ts). Loaded only inside the fuzzing worker, after coverage started.
//
// Where a format carries a checksum, the target can repair it first (a flag in the input's first
// byte), so that mutations reach the code behind the check instead of dying at it.
//
// Each target imports its modules when it is built: V8 walks every function of the isolate on
// each coverage take, so a worker holding only its target's code runs several times faster.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Duplex } from 'node:stream';
import { createHash } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import type { H2ServerStream } from '../../src/grpcserver/h2_conn';
import type { JsonValue } from '../../src/http/json_parse';
import { crc32c } from '../../src/util/crc32c';
import { Logger } from '../../src/util/log';
import type { FuzzTarget } from './engine';

const utf8 = (s: string): Buffer => Buffer.from(s, 'utf8');

/** Feeds `body` in pieces whose sizes cycle through `sizes` (how the network cuts it). */
function pieces(body: Buffer, first: number): Buffer[] {
  const out: Buffer[] = [];
  const size = 1 + (first % 64);
  for (let at = 0; at < body.length; at += size) out.push(body.subarray(at, at + size));
  return out;
}

async function* asAsync(bs: readonly Buffer[]): AsyncGenerator<Buffer> {
  for (const b of bs) yield b;
}

/** A scratch directory per target (one worker runs one target). */
function scratchDir(name: string): string {
  const base = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
  return fs.mkdtempSync(path.join(base, `quorumkv-fuzz-${name}-`));
}

// ---- HPACK ----------------------------------------------------------------------------------

/** The input cut into 1-4 header blocks (the first byte's low bits), decoded in order by one
 *  decoder: the dynamic table carries over, as on a connection. */
async function hpack(): Promise<FuzzTarget> {
  const { HpackDecoder, HpackError } = await import('../../src/grpcserver/hpack');
  return {
    scripts: ['src/grpcserver/hpack.js', 'src/grpcserver/huffman.js'],
    run(input) {
      if (input.length === 0) return;
      const d = new HpackDecoder(16 * 1024);
      const blocks = 1 + (input[0]! & 3);
      const body = input.subarray(1);
      const size = Math.ceil(body.length / blocks);
      for (let i = 0; i < blocks; i++) {
        d.decode(body.subarray(i * size, (i + 1) * size));
        if (d.count > 0 && d.listBytes <= 0) throw new Error('fields kept but no list size counted');
      }
    },
    declared: (err) => err instanceof HpackError,
    dictionary: [Buffer.from([0x82]), Buffer.from([0x3f, 0xe1, 0x1f]), Buffer.from([0x40, 0x0a]), Buffer.from([0x7f, 0xff, 0xff, 0xff, 0x0f]), Buffer.from([0x20]), Buffer.from([0xff, 0xff])],
  };
}

// ---- HTTP/2 connection ----------------------------------------------------------------------

/** A socket kept in memory: what the connection writes is dropped (it was parsed by nothing). */
class MemorySocket extends Duplex {
  written = 0;
  remoteAddress = '127.0.0.1';
  remotePort = 1;
  override _read(): void {}
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.written += chunk.length;
    cb();
  }
}

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

function h2frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream, 5);
  return Buffer.concat([h, payload]);
}

/** One connection fed the client preface and then the input (in two pieces: the first byte says
 *  where it is cut), its streams served by an echo handler that pauses, resumes, answers and
 *  writes. A log line "HTTP/2 connection failed" is a fault in h2_conn.ts (it caught something
 *  that is not a protocol error): the target throws it. */
async function h2Conn(): Promise<FuzzTarget> {
  const { H2ServerConnection, encodeHeaderBlock } = await import('../../src/grpcserver/h2_conn');
  const RESPONSE = encodeHeaderBlock([[':status', '200'], ['content-type', 'application/grpc']]);
  const TRAILERS = encodeHeaderBlock([['grpc-status', '0']]);
  let internal: string | undefined;
  const log = new Logger('info', {}, (line) => {
    const o = JSON.parse(line) as { msg?: string; error?: string; stack?: string };
    if (o.msg === 'HTTP/2 connection failed' || (o.msg ?? '').startsWith('a stream callback threw')) internal ??= `${o.msg}: ${o.error}\n${o.stack}`;
  });
  const serve = (s: H2ServerStream): void => {
    let n = 0;
    s.onData = (c) => {
      n++;
      if (c[0]! & 1) s.pause();
      if (n === 1) s.respond(RESPONSE, false);
      s.write(Buffer.from(c), 64 * 1024);
      if (c[0]! & 2) s.resume();
      if (c[0] === 0xee) s.end(TRAILERS);
    };
    s.onEnd = () => {
      s.respond(RESPONSE, false);
      s.end(TRAILERS);
    };
  };
  return {
    scripts: ['src/grpcserver/h2_conn.js', 'src/grpcserver/limits.js'],
    async run(input) {
      internal = undefined;
      const sock = new MemorySocket();
      const conn = new H2ServerConnection(sock, serve, { maxHeaderListBytes: 16 * 1024, maxConcurrentStreams: 8, log });
      const cut = input.length === 0 ? 0 : input[0]! % (input.length + 1);
      sock.emit('data', PREFACE);
      sock.emit('data', input.subarray(0, cut));
      sock.emit('data', input.subarray(cut));
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setImmediate(r));
      conn.destroy();
      if (internal !== undefined) throw new Error(`h2_conn: ${internal}`);
    },
    declared: () => false,
    dictionary: [
      h2frame(4, 0, 0, Buffer.from([0, 4, 0, 0, 0, 0])),
      h2frame(4, 1, 0, Buffer.alloc(0)),
      h2frame(1, 5, 1, Buffer.from([0x83, 0x86, 0x84, 0x41, 0x01, 0x61])),
      h2frame(1, 4, 3, Buffer.from([0x83, 0x86, 0x84])),
      h2frame(0, 1, 1, Buffer.from([0, 0, 0, 0, 1, 0xee])),
      h2frame(0, 0, 1, Buffer.from([1, 2, 3])),
      h2frame(8, 0, 0, Buffer.from([0, 0, 0x10, 0])),
      h2frame(8, 0, 1, Buffer.from([0x7f, 0xff, 0xff, 0xff])),
      h2frame(3, 0, 1, Buffer.from([0, 0, 0, 8])),
      h2frame(6, 0, 0, Buffer.alloc(8)),
      h2frame(9, 4, 1, Buffer.from([0x82])),
      h2frame(7, 0, 0, Buffer.alloc(8)),
    ],
  };
}

// ---- gRPC framing ---------------------------------------------------------------------------

const isCallStatus = (err: unknown): boolean => typeof err === 'object' && err !== null && !(err instanceof Error) && typeof (err as { code?: unknown }).code === 'number' && typeof (err as { message?: unknown }).message === 'string';

/** A request body split into gRPC messages (server.ts MessageReader): the first byte picks the
 *  grpc-encoding and how the body is cut. Failures are CallStatus values. */
async function grpcFraming(): Promise<FuzzTarget> {
  const { MessageReader } = await import('../../src/grpcserver/server');
  const encodings = [undefined, 'gzip', 'deflate', 'snappy'];
  return {
    scripts: ['src/grpcserver/server.js'],
    run(input) {
      if (input.length === 0) return;
      const r = new MessageReader(64 * 1024, encodings[input[0]! & 3]);
      const out: Buffer[] = [];
      for (const p of pieces(input.subarray(1), input[0]! >> 2)) r.push(p, out);
      for (const m of out) if (m.length > 64 * 1024) throw new Error(`a message of ${m.length} bytes above the bound`);
    },
    declared: isCallStatus,
    dictionary: [Buffer.from([0, 0, 0, 0, 5]), Buffer.from([1, 0, 0, 0, 0x20]), Buffer.from([0x1f, 0x8b, 8, 0]), Buffer.from([0x78, 0x9c]), Buffer.from([0, 0xff, 0xff, 0xff, 0xff])],
  };
}

// ---- protobuf requests ----------------------------------------------------------------------

/** Every method of the client-facing services, by path. */
async function clientMethods(): Promise<grpc.MethodDefinition<unknown, unknown>[]> {
  const { grpcDefinitions, serviceDefinition } = await import('../../src/proto');
  const services = ['etcdserverpb.KV', 'etcdserverpb.Watch', 'etcdserverpb.Lease', 'etcdserverpb.Cluster', 'etcdserverpb.Maintenance', 'etcdserverpb.Auth', 'v3electionpb.Election', 'v3lockpb.Lock', 'grpc.health.v1.Health'];
  grpcDefinitions();
  const out: grpc.MethodDefinition<unknown, unknown>[] = [];
  for (const s of services) for (const m of Object.values(serviceDefinition(s))) out.push(m as grpc.MethodDefinition<unknown, unknown>);
  return out.sort((a, b) => (a.path < b.path ? -1 : 1));
}

/** protobufjs's decode errors: a truncated message (RangeError "index out of range"), a bad
 *  varint, wire type or group, a missing required field (ProtocolError). */
const PROTOBUF_DECODE_ERROR = /^(index out of range|invalid varint encoding|invalid wire type|illegal tag|missing required|.*premature end|.*illegal group)/;
const isProtobufDecodeError = (err: unknown): boolean => err instanceof Error && PROTOBUF_DECODE_ERROR.test(err.message);

/** The request deserializer of one method (the first byte picks it), as server.ts calls it. */
async function protobufRequests(): Promise<FuzzTarget> {
  const methods = await clientMethods();
  return {
    scripts: ['src/proto/', 'node_modules/protobufjs/', 'node_modules/@grpc/proto-loader/'],
    run(input) {
      if (input.length === 0) return;
      methods[input[0]! % methods.length]!.requestDeserialize(input.subarray(1));
    },
    declared: isProtobufDecodeError,
    dictionary: [Buffer.from([0x0a, 0x01, 0x61]), Buffer.from([0x12, 0x01, 0x62]), Buffer.from([0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), Buffer.from([0x0a, 0x00]), Buffer.from([0x1a, 0x02, 0x08, 0x01])],
  };
}

// ---- JSON gateway ---------------------------------------------------------------------------

/** A gateway body, parsed in pieces (the first byte picks the route, the second how the body is
 *  cut) with the gateway's limits, mapped to the route's request message, encoded, and decoded
 *  by its deserializer: gateway.ts serve() + decode(). */
async function jsonGateway(): Promise<FuzzTarget> {
  const { default: protobuf } = await import('protobufjs');
  const { JsonLimitError, JsonStreamParser, JsonSyntaxError } = await import('../../src/http/json_parse');
  const { JsonMappingError, messageIn } = await import('../../src/http/json_pb');
  const { GATEWAY_ROUTES } = await import('../../src/http/routes');
  const { PROTO_DIR, serviceDefinition } = await import('../../src/proto');
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => (path.isAbsolute(target) ? target : path.join(PROTO_DIR, target));
  root.loadSync(['etcdserverpb/rpc.proto', 'v3electionpb/v3election.proto', 'v3lockpb/v3lock.proto'], { keepCase: true });
  root.resolveAll();
  const routes = [...GATEWAY_ROUTES.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([, r]) => r);
  const methods = routes.map((r) => ({
    reqType: root.lookupService(r.service).methods[r.method]!.resolvedRequestType!,
    def: serviceDefinition(r.service)[r.method] as grpc.MethodDefinition<unknown, unknown>,
  }));
  return {
    scripts: ['src/http/json_parse.js', 'src/http/json_pb.js'],
    run(input) {
      if (input.length < 2) return;
      const m = methods[input[0]! % methods.length]!;
      let value: JsonValue | undefined;
      const parser = new JsonStreamParser({ valueBytesMax: 1536 * 1024, arrayElementsMax: 128, single: true }, (v) => (value = v));
      for (const p of pieces(input.subarray(2), input[1]!)) parser.write(p);
      parser.end();
      const obj = value === undefined ? {} : messageIn(m.reqType, value);
      const bytes = m.reqType.encode(m.reqType.fromObject(obj)).finish();
      m.def.requestDeserialize(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    },
    declared: (err) => err instanceof JsonSyntaxError || err instanceof JsonLimitError || err instanceof JsonMappingError,
    dictionary: ['{"key":"YQ==","range_end":"AA=="}', '"revision":"9223372036854775807"', '{"compare":[{"target":"VALUE","key":"YQ==","value":"Yg=="}]}', '"limit":1e3', '\\u0000', '\\ud800', '[', ']', '{', '}', 'null', 'true', '-0.5E+3', '"sort_order":"DESCEND"', '"success":[{"request_put":{"key":"YQ=="}}]'].map(utf8),
  };
}

// ---- WAL ------------------------------------------------------------------------------------

/** Recomputes every record's CRC32-C, walking the records as their lengths lay them out. */
function fixWalChecksums(buf: Buffer): void {
  for (let o = 0; o + 12 <= buf.length; ) {
    const len = buf.readUInt32LE(o + 4);
    if (len === 0 && buf.readUInt32LE(o) === 0) break;
    if (o + 12 + len > buf.length) break;
    buf.writeUInt32LE(crc32c(0, buf, o + 4, o + 12 + len), o);
    o += 12 + len;
  }
}

/** One segment file (the first byte: bit 0 set = checksums repaired first; bit 1 = a second,
 *  empty-named segment after it), recovered as at startup (wal/recovery.ts). */
async function walRecovery(): Promise<FuzzTarget> {
  const { recover } = await import('../../src/storage/wal/recovery');
  const { WalError } = await import('../../src/storage/wal/errors');
  const { segmentName } = await import('../../src/storage/wal/format');
  const dir = scratchDir('wal');
  return {
    scripts: ['src/storage/wal/'],
    inputBytesMax: 20 * 1024,
    async run(input) {
      if (input.length === 0) return;
      for (const f of fs.readdirSync(dir)) fs.unlinkSync(path.join(dir, f));
      const seg = Buffer.from(input.subarray(1));
      if (input[0]! & 1) fixWalChecksums(seg);
      fs.writeFileSync(path.join(dir, segmentName(0, 1)), seg);
      if (input[0]! & 2) fs.writeFileSync(path.join(dir, segmentName(1, 2)), seg.subarray(0, seg.length >> 1));
      await recover(dir);
    },
    declared: (err) => err instanceof WalError,
    close: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

// ---- snapshots ------------------------------------------------------------------------------

/** A backend snapshot stream (what a leader streams to a follower, and quorumkv's own snapshot
 *  payload), parsed in pieces: storage/backend/snapshot.ts readSnapshotStream. */
async function snapshotStream(): Promise<FuzzTarget> {
  const { SnapshotFormatError, readSnapshotStream } = await import('../../src/storage/backend/snapshot');
  return {
    scripts: ['src/storage/backend/snapshot.js'],
    async run(input) {
      if (input.length === 0) return;
      for await (const batch of readSnapshotStream(asAsync(pieces(input.subarray(1), input[0]!)), () => undefined)) void batch;
    },
    declared: (err) => err instanceof SnapshotFormatError,
    dictionary: [Buffer.from('QKVSNAP1'), Buffer.from([0xff, 0xff, 0xff, 0xff]), Buffer.from([0, 0, 0, 1])],
  };
}

/** FNV-1a 64, bbolt's meta page checksum. */
function fnv1a64(b: Buffer): bigint {
  let h = 0xcbf29ce484222325n;
  for (const x of b) h = BigInt.asUintN(64, (h ^ BigInt(x)) * 0x100000001b3n);
  return h;
}

/** Rewrites the checksums of the two meta pages (at 0 and at the first's page size). */
function fixBoltMeta(buf: Buffer): void {
  const fix = (off: number): void => {
    const m = off + 16;
    if (buf.length < m + 64) return;
    buf.writeBigUInt64LE(fnv1a64(buf.subarray(m, m + 56)), m + 56);
  };
  fix(0);
  if (buf.length >= 28) {
    const pageSize = buf.readUInt32LE(24);
    if (pageSize > 0 && pageSize < buf.length) fix(pageSize);
  }
}

/** `snapshot restore`'s readers on a file: the first byte says whether the rest is the file
 *  itself (0) or a payload the target wraps in its padding and SHA-256 (so that mutations reach
 *  the payload's parser), with bbolt meta checksums repaired (bit 1). Then: the file verified
 *  (snapshot_file.ts), an etcd db read as a snapshot stream (etcddb/), or a backend stream read
 *  from the file (readBackendStreamFile). */
async function snapshotFile(): Promise<FuzzTarget> {
  const { SnapshotFormatError, readSnapshotStream } = await import('../../src/storage/backend/snapshot');
  const { SnapshotFileError, emptyBackendStreamFileStats, isEtcdDbFile, paddingBytes, readBackendStreamFile, verifySnapshotFile } = await import('../../src/storage/snapshot_file');
  const { BoltFormatError, BoltReader } = await import('../../src/storage/etcddb/bolt');
  const { EtcdDbError, etcdDbAsSnapshotStream, etcdDbStatus } = await import('../../src/storage/etcddb/etcd_db');
  const dir = scratchDir('snapfile');
  const file = path.join(dir, 'snap.db');
  return {
    scripts: ['src/storage/snapshot_file.js', 'src/storage/backend/snapshot.js', 'src/storage/etcddb/'],
    inputBytesMax: 64 * 1024,
    async run(input) {
      if (input.length === 0) return;
      let body = Buffer.from(input.subarray(1));
      if (input[0]! & 2) fixBoltMeta(body);
      if (input[0]! & 1) {
        body = Buffer.concat([body, Buffer.alloc(paddingBytes(body.length))]);
        body = Buffer.concat([body, createHash('sha256').update(body).digest()]);
      }
      fs.writeFileSync(file, body);
      const bodyBytes = await verifySnapshotFile(file);
      if (await isEtcdDbFile(file)) {
        const db = BoltReader.open(file);
        try {
          etcdDbStatus(db);
          for await (const batch of readSnapshotStream(etcdDbAsSnapshotStream(db), () => undefined)) void batch;
        } finally {
          db.close();
        }
        return;
      }
      for await (const batch of readBackendStreamFile(file, bodyBytes, emptyBackendStreamFileStats())) void batch;
    },
    declared: (err) => err instanceof SnapshotFileError || err instanceof SnapshotFormatError || err instanceof BoltFormatError || err instanceof EtcdDbError,
    close: () => fs.rmSync(dir, { recursive: true, force: true }),
    dictionary: [Buffer.from('QKVSNAP1'), Buffer.from([0xed, 0xda, 0x0c, 0xed]), Buffer.from([0x02, 0x00, 0x00, 0x00]), Buffer.from([0x00, 0x10, 0x00, 0x00]), Buffer.from('key'), Buffer.from('meta')],
  };
}

export const TARGETS: Record<string, () => Promise<FuzzTarget>> = {
  hpack,
  h2_conn: h2Conn,
  grpc_framing: grpcFraming,
  protobuf_requests: protobufRequests,
  json_gateway: jsonGateway,
  wal_recovery: walRecovery,
  snapshot_stream: snapshotStream,
  snapshot_file: snapshotFile,
};
