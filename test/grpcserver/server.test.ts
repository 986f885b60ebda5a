// The client port's gRPC server (src/grpcserver/server.ts), in process, driven by grpc-js clients:
// the protocol cases a real server must get right — statuses, trailers-only errors, unknown
// methods, oversize and compressed requests, metadata, bidi streams with half-close, cancellation,
// server streaming under backpressure, pre-encoded responses, and handlers that fail unexpectedly.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import type protobuf from 'protobufjs';
import { H2GrpcServer, MessageReader, frameMessage, parseGrpcTimeoutMs } from '../../src/grpcserver/server';
import zlib from 'node:zlib';
import { addService } from '../../src/api/services';
import type { BidiCall, Encoded, ServerStreamCall, UnaryCall } from '../../src/api/call';
import { grpcDefinitions, protoRoot } from '../../src/proto';
import { CERT_CN_METADATA_KEY, certCommonNameOf, certIdentityHook } from '../../src/tls';
import * as F from '../hostile/frames';
import { HpackDecoder } from '../../src/grpcserver/hpack';
import { until } from '../until';

type AnyClient = grpc.Client & Record<string, (...a: unknown[]) => unknown>;
type Ctor = new (address: string, creds: grpc.ChannelCredentials, opts?: object) => AnyClient;

function ctor(name: string): Ctor {
  return (grpcDefinitions().etcdserverpb as Record<string, unknown>)[name] as Ctor;
}

function unary<T>(c: AnyClient, method: string, req: object, md = new grpc.Metadata()): Promise<T> {
  return new Promise((resolve, reject) => c[method]!(req, md, (err: Error | null, res: T) => (err ? reject(err) : resolve(res))));
}


describe('H2GrpcServer (gRPC on our HTTP/2 framing)', () => {
  let server: H2GrpcServer;
  let tcp: net.Server;
  let endpoint: string;
  const calls: { path: string; code?: number }[] = [];
  const cancelled: string[] = [];
  const hanging: UnaryCall<unknown, unknown>[] = [];
  const abandoned: string[] = [];
  const internalErrors: { path: string; err: unknown }[] = [];
  /** Watch request messages the handler was given. */
  let watchMessages = 0;
  const clients: AnyClient[] = [];
  const client = (name: string, opts?: object): AnyClient => {
    const c = new (ctor(name))(endpoint, grpc.credentials.createInsecure(), opts);
    clients.push(c);
    return c;
  };

  beforeEach(async () => {
    calls.length = 0;
    cancelled.length = 0;
    hanging.length = 0;
    abandoned.length = 0;
    internalErrors.length = 0;
    watchMessages = 0;
    server = new H2GrpcServer({
      maxReceiveBytes: 4096,
      onCallStart: (path) => {
        const c: { path: string; code?: number } = { path };
        calls.push(c);
        return (code) => (c.code = code);
      },
      onMetadata: certIdentityHook(undefined),
      onInternalError: (path, err) => internalErrors.push({ path, err }),
    });
    addService(server, 'etcdserverpb.KV', {
      Range: (call: UnaryCall<{ key: Buffer; limit: string }, object>) => {
        const key = call.request.key.toString();
        if (key === 'fail') return call.fail({ code: grpc.status.FAILED_PRECONDITION, message: 'etcdserver: nope' });
        if (key === 'hang') {
          call.onAbandoned(() => abandoned.push(key));
          return void hanging.push(call);
        }
        if (key === 'throw') throw new Error('handler bug');
        if (key === 'cause') return call.fail({ code: grpc.status.INTERNAL, message: 'quorumkv: internal error: disk gone', cause: new Error('disk gone') });
        const token = call.metadata('token');
        const cn = certCommonNameOf(call);
        call.respond({ kvs: [{ key: Buffer.from(`${key}|${String(token ?? '')}|${cn ?? ''}`), value: Buffer.alloc(0) }], count: Number(call.request.limit) });
      },
    });
    addService(server, 'etcdserverpb.Watch', {
      Watch: (call: BidiCall<object>) => {
        let n = 0;
        return {
          message: (req: { create_request?: { key: Buffer } }) => {
            watchMessages++;
            const key = req.create_request?.key.toString() ?? '';
            // A pre-encoded response: the bytes of a WatchResponse, framed by the server.
            if (key === 'hold') {
              // A handler with work in flight: no requests for 300 ms.
              call.holdRequests!();
              setTimeout(() => call.releaseRequests!(), 300);
            }
            if (key === 'encoded') return void call.writeEncoded(encodedWatchResponse({ watch_id: 77, created: true, cancel_reason: 'pre-encoded' }));
            call.write({ watch_id: ++n, created: true, cancel_reason: key });
          },
          halfClosed: () => call.end(),
          closed: () => {
            if (call.cancelled) cancelled.push('Watch');
          },
        };
      },
    });
    addService(server, 'etcdserverpb.Maintenance', {
      Snapshot: (call: ServerStreamCall<object, object>) => {
        let wake: (() => void) | undefined;
        void (async () => {
          for (let i = 0; i < 64; i++) {
            const blob = Buffer.alloc(64 * 1024, i);
            if (!call.write({ remaining_bytes: 63 - i, blob })) await new Promise<void>((r) => (wake = r));
          }
          call.end();
        })();
        return { drain: () => wake?.() };
      },
    });
    tcp = net.createServer((s) => server.injectConnection(s));
    await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
    endpoint = `127.0.0.1:${(tcp.address() as net.AddressInfo).port}`;
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await server.close(200);
    await new Promise((r) => tcp.close(r));
  });

  it('answers unary calls with the handler result, metadata included, and counts them', async () => {
    const kv = client('KV');
    const md = new grpc.Metadata();
    md.set('token', 'tok1');
    const r = await unary<{ kvs: { key: Buffer }[]; count: string }>(kv, 'Range', { key: Buffer.from('a'), limit: 7 }, md);
    assert.equal(r.kvs[0]!.key.toString(), 'a|tok1|');
    assert.equal(r.count, '7');
    assert.deepEqual(calls, [{ path: '/etcdserverpb.KV/Range', code: 0 }]);
  });

  it('drops a certificate CN the client sent itself (only the server may set it)', async () => {
    const md = new grpc.Metadata();
    md.set(CERT_CN_METADATA_KEY, 'root');
    const r = await unary<{ kvs: { key: Buffer }[] }>(client('KV'), 'Range', { key: Buffer.from('b') }, md);
    assert.equal(r.kvs[0]!.key.toString(), 'b||');
  });

  it('sends a handler error as the call status, trailers-only, and keeps serving', async () => {
    const kv = client('KV');
    await assert.rejects(unary(kv, 'Range', { key: Buffer.from('fail') }), (e: grpc.ServiceError) => e.code === grpc.status.FAILED_PRECONDITION && e.details === 'etcdserver: nope');
    assert.equal(calls[0]!.code, grpc.status.FAILED_PRECONDITION);
    assert.equal((await unary<{ kvs: { key: Buffer }[] }>(kv, 'Range', { key: Buffer.from('ok') })).kvs.length, 1);
  });

  it('answers UNIMPLEMENTED for a method no service registered', async () => {
    await assert.rejects(unary(client('Lease'), 'LeaseGrant', { TTL: 5 }), (e: grpc.ServiceError) => e.code === grpc.status.UNIMPLEMENTED && /LeaseGrant/.test(e.details));
  });

  it('refuses a request above the receive limit with RESOURCE_EXHAUSTED, then serves the next', async () => {
    const kv = client('KV');
    await assert.rejects(unary(kv, 'Range', { key: Buffer.alloc(5000, 'k') }), (e: grpc.ServiceError) => e.code === grpc.status.RESOURCE_EXHAUSTED && /larger than max/.test(e.details));
    assert.equal((await unary<{ kvs: unknown[] }>(kv, 'Range', { key: Buffer.from('small') })).kvs.length, 1);
  });

  it('accepts gzip-compressed requests', async () => {
    const kv = client('KV', { 'grpc.default_compression_algorithm': grpc.compressionAlgorithms.gzip });
    const key = 'z'.repeat(3000);
    const r = await unary<{ kvs: { key: Buffer }[] }>(kv, 'Range', { key: Buffer.from(key) });
    assert.equal(r.kvs[0]!.key.toString(), `${key}||`);
  });

  it('carries a bidi stream both ways, and ends it with OK after the client half-closes', async () => {
    const call = client('Watch').Watch!() as grpc.ClientDuplexStream<object, { watch_id: string; cancel_reason: string }>;
    const got: string[] = [];
    call.on('data', (r) => got.push(`${r.watch_id}:${r.cancel_reason}`));
    const status = new Promise<grpc.StatusObject>((r) => call.on('status', r));
    for (const k of ['x', 'y', 'z']) call.write({ create_request: { key: Buffer.from(k) } });
    await until(() => got.length === 3);
    call.end();
    assert.equal((await status).code, grpc.status.OK);
    assert.deepEqual(got, ['1:x', '2:y', '3:z']);
    assert.deepEqual(calls, [{ path: '/etcdserverpb.Watch/Watch', code: 0 }]);
  });

  it('tells the handler when the client cancels a stream or a unary call', async () => {
    const call = client('Watch').Watch!() as grpc.ClientDuplexStream<object, unknown>;
    call.on('error', () => undefined);
    call.write({ create_request: { key: Buffer.from('x') } });
    await new Promise((r) => call.once('data', r));
    call.cancel();
    await until(() => cancelled.includes("Watch")).catch(() => assert.fail(`watch not cancelled: ${JSON.stringify(calls)} ${cancelled}`));
    const kv = client('KV');
    const u = kv.Range!({ key: Buffer.from('hang') }, (_e: unknown) => undefined) as grpc.ClientUnaryCall;
    await until(() => hanging.length === 1);
    assert.equal(hanging[0]!.cancelled, false);
    u.cancel();
    await until(() => hanging[0]!.cancelled);
    assert.equal(calls[0]!.code, grpc.status.CANCELLED);
    assert.equal(calls[1]!.code, grpc.status.CANCELLED);
  });

  it('ends a call whose grpc-timeout passes with DEADLINE_EXCEEDED and runs its abandon hooks once', async () => {
    // A bare HTTP/2 client: grpc-js would also cancel the call on its own timer, racing ours.
    const session = http2.connect(`http://${endpoint}`);
    const started = Date.now();
    try {
      const req = session.request({ ':method': 'POST', ':path': '/etcdserverpb.KV/Range', 'content-type': 'application/grpc', te: 'trailers', 'grpc-timeout': '300m' });
      const trailers = new Promise<http2.IncomingHttpHeaders>((resolve) => req.on('trailers', resolve));
      const headers = new Promise<http2.IncomingHttpHeaders>((resolve) => req.on('response', resolve));
      req.on('data', () => undefined);
      req.end(frameMessage(protoRoot().lookupType('etcdserverpb.RangeRequest').encode({ key: Buffer.from('hang') }).finish()));
      const h = await Promise.race([trailers, headers.then(async (x) => (x['grpc-status'] !== undefined ? x : trailers))]);
      assert.equal(h['grpc-status'], String(grpc.status.DEADLINE_EXCEEDED));
      assert.equal(decodeURIComponent(String(h['grpc-message'])), 'context deadline exceeded');
    } finally {
      session.close();
    }
    assert.ok(Date.now() - started >= 250);
    assert.equal(calls[0]!.code, grpc.status.DEADLINE_EXCEEDED);
    assert.deepEqual(abandoned, ['hang']);
    assert.equal(hanging[0]!.cancelled, false, 'a deadline is not the client going away');
    // A hook registered after the fact runs at once; the answer of a handler that ends late is dropped.
    let late = false;
    hanging[0]!.onAbandoned(() => (late = true));
    assert.equal(late, true);
    hanging[0]!.respond({ kvs: [] });
    // A call answered in time: no hook, served normally.
    const kv = client('KV');
    const ok = await new Promise<{ kvs: unknown[] }>((resolve, reject) => kv.Range!({ key: Buffer.from('a') }, new grpc.Metadata(), { deadline: Date.now() + 5000 }, (e: Error | null, r: { kvs: unknown[] }) => (e ? reject(e) : resolve(r))));
    assert.equal(ok.kvs.length, 1);
    assert.deepEqual(abandoned, ['hang']);
  });

  it('runs the abandon hooks of a unary call its client cancels', async () => {
    const u = client('KV').Range!({ key: Buffer.from('hang') }, (_e: unknown) => undefined) as grpc.ClientUnaryCall;
    await until(() => hanging.length === 1);
    assert.deepEqual(abandoned, []);
    u.cancel();
    await until(() => abandoned.length === 1);
    assert.equal(hanging[0]!.cancelled, true);
  });

  it('parses grpc-timeout values (1-8 digits and a unit), ignoring malformed ones', () => {
    assert.equal(parseGrpcTimeoutMs('100m'), 100);
    assert.equal(parseGrpcTimeoutMs('2S'), 2000);
    assert.equal(parseGrpcTimeoutMs('3M'), 180_000);
    assert.equal(parseGrpcTimeoutMs('1H'), 3_600_000);
    assert.equal(parseGrpcTimeoutMs('5000u'), 5);
    assert.equal(parseGrpcTimeoutMs('99999999n'), 99.999999);
    for (const bad of [undefined, '', 'm', '123456789m', '10x', '-1S', '1.5S', ['1S']]) assert.equal(parseGrpcTimeoutMs(bad), undefined, String(bad));
  });

  it('a bidi call whose client obeys flow control but never reads is not credited past its send buffer', async () => {
    const sock = await F.connectRaw(Number(endpoint.split(':')[1]), [F.settings([[F.SETTINGS_INITIAL_WINDOW_SIZE, 0]]), F.grpcHeaders(1, '/etcdserverpb.Watch/Watch')]);
    try {
      const w = new F.SendWindows(sock);
      const key = 'k'.repeat(2000);
      const sent = await F.floodWithinWindows(sock, w, [1], 2000, new Array<Buffer>(8).fill(F.watchCreateRequest(key.slice(0, 99))));
      // ~1 MiB of queued answers (~100 bytes + 96 counted each) stops the handler; what the client
      // may still send is one stream window (1 MiB), held, not handed on.
      assert.ok(watchMessages < 8000, `${watchMessages} requests handled`);
      assert.ok(sent < 2.5 * 1024 * 1024, `${sent} bytes sent`);
    } finally {
      sock.destroy();
    }
  });

  it('a bidi handler can hold its requests: none delivered meanwhile, then the rest in order, the half-close last', async () => {
    const call = client('Watch').Watch!() as grpc.ClientDuplexStream<object, { cancel_reason: string }>;
    const got: string[] = [];
    call.on('data', (r) => got.push(r.cancel_reason));
    const status = new Promise<grpc.StatusObject>((r) => call.on('status', r));
    for (const k of ['hold', 'a', 'b', 'c']) call.write({ create_request: { key: Buffer.from(k) } });
    call.end();
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(watchMessages, 1, 'nothing delivered while held');
    assert.equal((await status).code, grpc.status.OK);
    assert.deepEqual(got, ['hold', 'a', 'b', 'c']);
  });

  it('stops reading a bidi call whose responses are not drained, then delivers the rest in order, the half-close last', async () => {
    // A bare HTTP/2 client whose stream is paused from the start: Node then consumes (and credits)
    // nothing of it, so the server's send window closes (grpc-js may buffer a paused call's
    // messages itself, which made this depend on timing).
    const session = http2.connect(`http://${endpoint}`);
    try {
      const req = session.request({ ':method': 'POST', ':path': '/etcdserverpb.Watch/Watch', 'content-type': 'application/grpc', te: 'trailers' });
      req.pause();
      const n = 3000;
      const key = (i: number) => `${i}:`.padEnd(2000, 'k');
      const WatchRequest = protoRoot().lookupType('etcdserverpb.WatchRequest');
      for (let i = 0; i < n; i++) req.write(frameMessage(WatchRequest.encode({ create_request: { key: Buffer.from(key(i)) } }).finish()));
      req.end();
      await new Promise((r) => setTimeout(r, 500));
      // Answers (2 KB each) fill the call's 1 MiB send buffer and the client's window: the server
      // stops handing requests to the handler, and ends nothing early.
      assert.ok(watchMessages > 0 && watchMessages < n, `${watchMessages} of ${n} requests handled while the client read nothing`);
      const chunks: Buffer[] = [];
      const trailers = new Promise<http2.IncomingHttpHeaders>((resolve) => req.on('trailers', resolve));
      req.on('data', (c: Buffer) => chunks.push(c));
      req.resume();
      assert.equal((await trailers)['grpc-status'], String(grpc.status.OK));
      const all = Buffer.concat(chunks);
      const WatchResponse = protoRoot().lookupType('etcdserverpb.WatchResponse');
      const got: string[] = [];
      for (let off = 0; off < all.length; ) {
        const len = all.readUInt32BE(off + 1);
        got.push((WatchResponse.decode(all.subarray(off + 5, off + 5 + len)) as unknown as { cancel_reason: string }).cancel_reason);
        off += 5 + len;
      }
      assert.equal(got.length, n);
      got.forEach((k, i) => assert.equal(k, key(i), `response ${i}`));
    } finally {
      session.close();
    }
  });

  it('close(): streaming calls end at once (UNAVAILABLE), a unary call in flight gets the grace, then it resolves', async () => {
    const watch = client('Watch').Watch!() as grpc.ClientDuplexStream<object, unknown>;
    watch.on('error', () => undefined);
    watch.on('data', () => undefined);
    watch.write({ create_request: { key: Buffer.from('x') } });
    const kv = client('KV');
    const answered = unary<{ kvs: unknown[] }>(kv, 'Range', { key: Buffer.from('hang') });
    await until(() => hanging.length === 1 && watchMessages === 1);
    const t0 = Date.now();
    const watchEnded = new Promise<{ st: grpc.StatusObject; ms: number }>((r) => watch.on('status', (st: grpc.StatusObject) => r({ st, ms: Date.now() - t0 })));
    setTimeout(() => hanging[0]!.respond({ kvs: [], count: 0 }), 400);
    await server.close(5000);
    const closeMs = Date.now() - t0;
    const { st, ms } = await watchEnded;
    assert.equal(st.code, grpc.status.UNAVAILABLE);
    assert.equal(st.details, 'grpc: the server has been stopped');
    assert.ok(ms < 300, `the watch ended ${ms} ms after close(), not after the unary call`);
    assert.equal((await answered).kvs.length, 0, 'the unary call in flight was answered');
    assert.ok(closeMs >= 350 && closeMs < 2000, `close() took ${closeMs} ms: the unary call's time, not the grace`);
    assert.deepEqual(calls.map((c) => c.code), [grpc.status.UNAVAILABLE, grpc.status.OK]);
  });

  it('closes a connection that opens no stream, and one left idle, with GOAWAY NO_ERROR', async () => {
    const own = new H2GrpcServer({ maxReceiveBytes: 4096, firstStreamTimeoutMs: 300, idleTimeoutMs: 300 });
    addService(own, 'etcdserverpb.KV', { Range: (call: UnaryCall<object, object>) => call.respond({ kvs: [], count: 0 }) });
    const ownTcp = net.createServer((sock) => own.injectConnection(sock));
    await new Promise<void>((r) => ownTcp.listen(0, '127.0.0.1', r));
    const port = (ownTcp.address() as net.AddressInfo).port;
    try {
      for (const withStream of [false, true]) {
        const first: Buffer[] = [F.settings()];
        if (withStream) first.push(F.grpcHeaders(1, '/etcdserverpb.KV/Range'), F.grpcData(1, [Buffer.alloc(0)], true));
        const sock = await F.connectRaw(port, first);
        const t0 = Date.now();
        const got = await new Promise<{ code: number; answered: boolean }>((resolve, reject) => {
          let answered = false;
          const t = setTimeout(() => reject(new Error('no GOAWAY in 3 s')), 3000);
          F.readFrames(sock, (type, flags, id, p) => {
            if (type === F.T.HEADERS && id === 1 && flags & 1) answered = true;
            if (type === F.T.GOAWAY) (clearTimeout(t), resolve({ code: p.readUInt32BE(4), answered }));
          });
        });
        const closed = await new Promise<boolean>((r) => (sock.once('close', () => r(true)), setTimeout(() => r(false), 2500)));
        sock.destroy();
        assert.equal(got.code, 0, `withStream=${withStream}`);
        assert.equal(got.answered, withStream, 'the call was answered before the connection went idle');
        assert.ok(Date.now() - t0 >= 300, 'not before the timeout');
        assert.ok(closed, 'the socket is closed after the GOAWAY');
      }
    } finally {
      own.destroy();
      await new Promise((r) => ownTcp.close(r));
    }
  });

  it('bounds incomplete request bytes per connection (the call crossing it ends), and member-wide (stalled calls evicted, oldest first)', async function () {
    this.timeout(10_000);
    let evicted = 0;
    // Per connection: 2 x maxReceiveBytes (the option asks for less); member-wide: 100,000 bytes.
    const own = new H2GrpcServer({ maxReceiveBytes: 20_000, partialRequestBytesPerConnectionMax: 1, partialRequestBytesMax: 100_000, onEvicted: () => evicted++ });
    addService(own, 'etcdserverpb.KV', { Range: (call: UnaryCall<object, object>) => call.respond({ kvs: [], count: 0 }) });
    const ownTcp = net.createServer((sock) => own.injectConnection(sock));
    await new Promise<void>((r) => ownTcp.listen(0, '127.0.0.1', r));
    const port = (ownTcp.address() as net.AddressInfo).port;
    /** Streams `ids` of a new connection, each a message of 19,000 bytes declared and `sent` of
     *  it sent; the statuses the server ends them with, by stream. */
    const partial = async (ids: number[], sent: number) => {
      const statuses = new Map<number, string>();
      const frames: Buffer[] = [F.settings()];
      for (const id of ids) {
        const head = Buffer.alloc(5);
        head.writeUInt32BE(19_000, 1);
        frames.push(F.grpcHeaders(id, '/etcdserverpb.KV/Range'), F.frame(F.T.DATA, 0, id, Buffer.concat([head, Buffer.alloc(sent - 5, 1)])));
      }
      const sock = await F.connectRaw(port, frames);
      const decoder = new HpackDecoder(64 * 1024);
      F.readFrames(sock, (type, flags, id, p) => {
        if (type !== F.T.HEADERS || !(flags & 1)) return;
        decoder.decode(p);
        const i = decoder.names.slice(0, decoder.count).indexOf('grpc-message');
        statuses.set(id, `${decoder.values[decoder.names.indexOf('grpc-status')]} ${decodeURIComponent(decoder.values[i] ?? '')}`);
      });
      return { sock, statuses };
    };
    try {
      // One connection: 3 x 15,000 bytes > 40,000: the third stream ends, the others are kept.
      const a = await partial([1, 3, 5], 15_000);
      await until(() => a.statuses.size > 0);
      assert.deepEqual([...a.statuses], [[5, '8 quorumkv: more than 40000 bytes of incomplete request messages on this connection']]);
      // Member-wide: 30,000 (a) + 2 x 15,000 (b) + 2 x 15,000 (c) = 90,000, then 15,000 more (d)
      // = 105,000 > 100,000: nothing is evicted before a call has been silent for 2 s, then the
      // one holding longest (a's stream 1) goes, which is enough.
      const b = await partial([1, 3], 15_000);
      const c = await partial([1, 3], 15_000);
      await new Promise((r) => setTimeout(r, 500));
      const d = await partial([1], 15_000);
      await new Promise((r) => setTimeout(r, 1000));
      assert.equal(a.statuses.size + b.statuses.size + c.statuses.size + d.statuses.size, 1, 'no eviction before 2 s of silence');
      await until(() => a.statuses.size === 2, 3000);
      await new Promise((r) => setTimeout(r, 600));
      assert.equal(a.statuses.get(1), '8 quorumkv: the request was not completed: more than 100000 bytes of incomplete requests in this member');
      assert.equal(b.statuses.size + c.statuses.size + d.statuses.size, 0, 'only as many evicted as needed');
      assert.equal(evicted, 1);
      assert.equal(own.partialRequests.bytes, 90_000);
      for (const x of [a, b, c, d]) x.sock.destroy();
      await until(() => own.partialRequests.bytes === 0);
    } finally {
      own.destroy();
      await new Promise((r) => ownTcp.close(r));
    }
  });

  it('keepalive: PINGs a silent connection and closes it when the client stays silent (etcd\'s --grpc-keepalive-*)', async function () {
    this.timeout(15_000);
    const own = new H2GrpcServer({ maxReceiveBytes: 4096, idleTimeoutMs: 0, keepaliveIntervalMs: 1000, keepaliveTimeoutMs: 1000 });
    // A server-streaming call that never ends: the connection always has an open stream, so only
    // the keepalive can close it.
    addService(own, 'etcdserverpb.Maintenance', { Snapshot: () => undefined });
    const ownTcp = net.createServer((sock) => own.injectConnection(sock));
    await new Promise<void>((r) => ownTcp.listen(0, '127.0.0.1', r));
    const port = (ownTcp.address() as net.AddressInfo).port;
    try {
      const open = (answerPings: boolean) =>
        F.connectRaw(port, [F.settings(), F.grpcHeaders(1, '/etcdserverpb.Maintenance/Snapshot'), F.grpcData(1, [Buffer.alloc(0)], true)]).then((sock) => {
          const seen = { pings: 0, closedAtMs: 0 };
          const t0 = Date.now();
          F.readFrames(sock, (type, flags, _id, p) => {
            if (type !== F.T.PING || flags & 1) return;
            seen.pings++;
            if (answerPings) sock.write(F.frame(F.T.PING, 1, 0, p));
          });
          sock.once('close', () => (seen.closedAtMs = Date.now() - t0));
          return { sock, seen };
        });
      const [alive, silent] = await Promise.all([open(true), open(false)]);
      await new Promise((r) => setTimeout(r, 6000));
      assert.ok(silent.seen.pings >= 1 && silent.seen.closedAtMs >= 1500 && silent.seen.closedAtMs <= 5500, `silent client: ${JSON.stringify(silent.seen)}`);
      assert.ok(alive.seen.pings >= 1 && alive.seen.closedAtMs === 0, `answering client: ${JSON.stringify(alive.seen)}`);
      alive.sock.destroy();
    } finally {
      own.destroy();
      await new Promise((r) => ownTcp.close(r));
    }
  });

  it('streams a server-streaming response under backpressure, in order and whole', async () => {
    const call = client('Maintenance').Snapshot!({}) as grpc.ClientReadableStream<{ blob: Buffer; remaining_bytes: string }>;
    const blobs: Buffer[] = [];
    call.on('data', (r) => blobs.push(r.blob));
    const status = await new Promise<grpc.StatusObject>((r) => call.on('status', r));
    assert.equal(status.code, grpc.status.OK);
    assert.equal(blobs.length, 64);
    blobs.forEach((b, i) => assert.ok(b.length === 64 * 1024 && b[0] === i && b[b.length - 1] === i, `chunk ${i}`));
  });

  it('sends a response given already encoded as the same message', async () => {
    const call = client('Watch').Watch!() as grpc.ClientDuplexStream<object, { watch_id: string; created: boolean; cancel_reason: string }>;
    const got = new Promise<{ watch_id: string; created: boolean; cancel_reason: string }>((r) => call.once('data', r));
    // (afterEach's close() may end the call before its OK goes out.)
    call.on('error', () => undefined);
    call.write({ create_request: { key: Buffer.from('encoded') } });
    const r = await got;
    call.end();
    assert.deepEqual([r.watch_id, r.created, r.cancel_reason], ['77', true, 'pre-encoded']);
  });

  it('answers INTERNAL for a handler that throws, reports it with the method, and keeps serving', async () => {
    const kv = client('KV');
    await assert.rejects(unary(kv, 'Range', { key: Buffer.from('throw') }), (e: grpc.ServiceError) => e.code === grpc.status.INTERNAL && e.details === 'quorumkv: internal error: handler bug');
    assert.deepEqual(internalErrors.map((e) => [e.path, (e.err as Error).message]), [['/etcdserverpb.KV/Range', 'handler bug']]);
    await assert.rejects(unary(kv, 'Range', { key: Buffer.from('cause') }), (e: grpc.ServiceError) => e.code === grpc.status.INTERNAL && e.details === 'quorumkv: internal error: disk gone');
    assert.equal(internalErrors.length, 2, 'a status given with its cause is reported');
    assert.equal((await unary<{ kvs: unknown[] }>(kv, 'Range', { key: Buffer.from('ok') })).kvs.length, 1);
    assert.deepEqual(calls.map((c) => c.code), [grpc.status.INTERNAL, grpc.status.INTERNAL, grpc.status.OK]);
  });
});

let watchResponseType: protobuf.Type | undefined;
function encodedWatchResponse(msg: object): Encoded<object> {
  watchResponseType ??= protoRoot().lookupType('etcdserverpb.WatchResponse');
  return watchResponseType.encode(watchResponseType.fromObject(msg)).finish() as Encoded<object>;
}

describe('MessageReader (gRPC message framing)', () => {
  const msgs = [Buffer.alloc(0), Buffer.from('a'), Buffer.alloc(40_000, 7), Buffer.from('hello world')];
  const stream = Buffer.concat(msgs.map((m) => frameMessage(m)));

  it('gives the same messages however the bytes are split into chunks', () => {
    for (const size of [1, 2, 3, 5, 7, 16384, stream.length]) {
      const r = new MessageReader(1 << 20, undefined);
      const out: Buffer[] = [];
      for (let off = 0; off < stream.length; off += size) r.push(stream.subarray(off, off + size), out);
      assert.deepEqual(out.map((b) => b.toString('hex')), msgs.map((b) => b.toString('hex')), `chunks of ${size}`);
      assert.equal(r.partial, false);
    }
  });

  it('refuses a message above the limit from its header alone, and decompresses gzip', () => {
    const r = new MessageReader(100, 'gzip');
    const head = Buffer.from([0, 0, 0, 0, 101]);
    assert.throws(() => r.push(head, []), (e: { code: number }) => e.code === grpc.status.RESOURCE_EXHAUSTED);
    const z = zlib.gzipSync(Buffer.from('compressed'));
    const framed = Buffer.concat([Buffer.from([1, 0, 0, 0, z.length]), z]);
    const out: Buffer[] = [];
    new MessageReader(100, 'gzip').push(framed, out);
    assert.equal(out[0]!.toString(), 'compressed');
    const bomb = zlib.gzipSync(Buffer.alloc(1000));
    assert.throws(() => new MessageReader(100, 'gzip').push(Buffer.concat([Buffer.from([1, 0, 0, 0, bomb.length]), bomb]), []), (e: { code: number }) => e.code === grpc.status.RESOURCE_EXHAUSTED);
    assert.throws(() => new MessageReader(100, 'snappy').push(framed, []), (e: { code: number }) => e.code === grpc.status.UNIMPLEMENTED);
  });
});
