// The client port's gRPC call layer in process, without sockets or a client library: request
// frames are pushed into the server's HTTP/2 connection over an in-memory Duplex whose writes are
// counted and dropped, so the CPU time measured is the server's alone (HTTP/2 framing, HPACK, the
// call objects of src/grpcserver/server.ts, protobuf), per call or per message:
//
//   node dist/scripts/bench-grpc-calls.js unary [N]   unary KV/Range answered with a fixed response
//   node dist/scripts/bench-grpc-calls.js bidi [N]    keepalive-shaped bidi stream: one response per request
//   node dist/scripts/bench-grpc-calls.js watch [N]   pre-encoded watch responses written on one stream
//
// The end-to-end benchmark (bench-kv.ts) on this shared 2-core VM varies by ±30% from run to run;
// this one isolates the layer a change to the call contract touches.
import { Duplex } from 'node:stream';
import Long from 'long';
import { H2GrpcServer } from '../src/grpcserver/server';
import { H2_PREFACE, encodeHeaderBlock } from '../src/grpcserver/h2_conn';
import type { BidiCall, Handler, ResponseStream, UnaryCall } from '../src/grpcserver/call';
import { protoRoot, serviceDefinition } from '../src/proto';

const mode = process.argv[2] ?? 'unary';
const N = Number(process.argv[3] ?? 300_000);

const header = { cluster_id: Long.fromString('1234', true), member_id: Long.fromString('5678', true), revision: 5, raft_term: 2 };
const RANGE_RESPONSE = { header, kvs: [], count: 0 };
const KEEPALIVE_RESPONSE = { header, ID: '7', TTL: 30 };
const WatchResponse = protoRoot().lookupType('etcdserverpb.WatchResponse');
const ENCODED_WATCH_RESPONSE = WatchResponse.encode(
  WatchResponse.fromObject({ header: { revision: 5 }, watch_id: 3, events: [{ type: 0, kv: { key: Buffer.from('fan'), value: Buffer.alloc(64, 0x78), mod_revision: 5, create_revision: 2, version: 4 } }] }),
).finish();

/** Every method of `service`: `impl`'s, the others never called. */
function handlers(service: string, impl: Record<string, Handler>): Record<string, Handler> {
  const out: Record<string, Handler> = {};
  for (const name of Object.keys(serviceDefinition(service))) out[name] = impl[name] ?? ((call: UnaryCall<never, unknown>) => call.fail({ code: 12, message: 'unused' }));
  return out;
}

let watchCall: ResponseStream<unknown> | undefined;
const server = new H2GrpcServer({ maxReceiveBytes: 4 << 20 });
server.addService(serviceDefinition('etcdserverpb.KV'), handlers('etcdserverpb.KV', { Range: (call: UnaryCall<never, unknown>) => call.respond(RANGE_RESPONSE) }));
server.addService(
  serviceDefinition('etcdserverpb.Lease'),
  handlers('etcdserverpb.Lease', { LeaseKeepAlive: (call: BidiCall<unknown>) => ({ message: () => void call.write(KEEPALIVE_RESPONSE), halfClosed: () => call.end() }) }),
);
server.addService(
  serviceDefinition('etcdserverpb.Watch'),
  handlers('etcdserverpb.Watch', {
    Watch: (call: BidiCall<unknown>) => {
      watchCall = call;
      return { message: () => undefined, halfClosed: () => call.end() };
    },
  }),
);

let outBytes = 0;
const sock = new Duplex({
  read: () => undefined,
  write: (chunk: Buffer, _enc, cb) => {
    outBytes += chunk.length;
    cb();
  },
});
Object.assign(sock, { remoteAddress: '127.0.0.1', remotePort: 1, localAddress: '127.0.0.1', localPort: 2 });
server.injectConnection(sock);

function frame(type: number, flags: number, id: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(id, 5);
  return Buffer.concat([h, payload]);
}

// The client's preface, SETTINGS (INITIAL_WINDOW_SIZE 2^31-1) and a connection WINDOW_UPDATE: no
// flow-control stall while responses are dropped unread.
const settings = Buffer.alloc(6);
settings.writeUInt16BE(4, 0);
settings.writeUInt32BE(0x7fffffff, 2);
const windowIncrement = Buffer.alloc(4);
windowIncrement.writeUInt32BE(0x7fffffff - 65535, 0);
sock.push(Buffer.concat([H2_PREFACE, frame(4, 0, 0, settings), frame(8, 0, 0, windowIncrement)]));

const requestHeaders = (path: string): Buffer =>
  encodeHeaderBlock([[':method', 'POST'], [':scheme', 'http'], [':path', path], [':authority', 'x'], ['content-type', 'application/grpc'], ['te', 'trailers'], ['user-agent', 'grpc-go/1.26']]);
const RANGE_REQUEST = Buffer.from([0, 0, 0, 0, 3, 0x0a, 0x01, 0x6b]); // RangeRequest{key: "k"}
const KEEPALIVE_REQUEST = Buffer.from([0, 0, 0, 0, 2, 0x08, 0x07]); // LeaseKeepAliveRequest{ID: 7}
let nextStreamId = 1;
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Runs `batch` (warm-up first, unmeasured) until `n` operations, a loop turn per batch. */
async function measure(what: string, perBatch: number, batch: () => void, n: number): Promise<void> {
  for (let done = 0; done < Math.min(n, 50_000); done += perBatch) (batch(), await turn());
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  for (let done = 0; done < n; done += perBatch) (batch(), await turn());
  const cpu = process.cpuUsage(c0);
  const wallUs = Number(process.hrtime.bigint() - t0) / 1e3;
  console.log(`${what}: ${n} in ${((cpu.user + cpu.system) / 1e3).toFixed(0)} ms CPU = ${((cpu.user + cpu.system) / n).toFixed(2)} µs CPU each, ${(wallUs / n).toFixed(2)} µs wall (${(outBytes / 1e6).toFixed(0)} MB out)`);
}

async function main(): Promise<void> {
  if (mode === 'unary') {
    const block = requestHeaders('/etcdserverpb.KV/Range');
    return measure('unary Range calls', 100, () => {
      const parts: Buffer[] = [];
      for (let i = 0; i < 100; i++, nextStreamId += 2) parts.push(frame(1, 4, nextStreamId, block), frame(0, 1, nextStreamId, RANGE_REQUEST));
      sock.push(Buffer.concat(parts));
    }, N);
  }
  if (mode === 'bidi') {
    const id = nextStreamId;
    sock.push(frame(1, 4, id, requestHeaders('/etcdserverpb.Lease/LeaseKeepAlive')));
    await turn();
    const requests = Buffer.concat(Array.from({ length: 200 }, () => frame(0, 0, id, KEEPALIVE_REQUEST)));
    return measure('keepalive requests answered', 200, () => sock.push(Buffer.from(requests)), N);
  }
  if (mode === 'watch') {
    sock.push(frame(1, 4, nextStreamId, requestHeaders('/etcdserverpb.Watch/Watch')));
    await turn();
    if (!watchCall) throw new Error('the watch stream did not start');
    const call = watchCall;
    return measure('pre-encoded watch responses', 1000, () => {
      for (let i = 0; i < 1000; i++) call.writeEncoded(ENCODED_WATCH_RESPONSE);
    }, N);
  }
  throw new Error(`unknown mode ${mode} (unary, bidi, watch)`);
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
