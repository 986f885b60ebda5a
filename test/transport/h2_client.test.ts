// The raft stream's HTTP/2 client (src/transport/h2_client.ts), against the server side of our own
// HTTP/2 (src/grpcserver/h2_conn.ts: it ends a connection whose client breaks a window or sends a
// bad frame), and against a raw server written frame by frame for what ours never does (a small
// SETTINGS_INITIAL_WINDOW_SIZE, frames above our limit, a GOAWAY before the stream, no PING ACK).
import assert from 'node:assert/strict';
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { H2ServerConnection, encodeHeaderBlock, type H2ServerStream } from '../../src/grpcserver/h2_conn';
import { GrpcCode } from '../../src/util/errors';
import { Logger } from '../../src/util/log';
import { H2ClientCall, MESSAGE_HEADROOM, type H2CallOptions, type H2CallStatus } from '../../src/transport/h2_client';
import { ERR_MEMBER_REMOVED, encodeBatchMessage, serviceDefinition, type MessageBatchPb } from '../../src/transport/wire';
import { decodeMessages, encodedBatchSize } from '../../src/transport/codec';
import { frame, settings, windowUpdate, T } from '../hostile/frames';
import { heartbeat, waitFor } from './helpers';

const RESPONSE = encodeHeaderBlock([[':status', '200'], ['content-type', 'application/grpc']]);
const OK_TRAILERS = encodeHeaderBlock([['grpc-status', '0']]);
const PREFACE_BYTES = 24;
const GOAWAY = 7;
const H2_FRAME_SIZE_ERROR = 6;
const H2_REFUSED_STREAM = 7;

interface Frame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

/** A call to 127.0.0.1:`port` and what it reported. */
interface Probe {
  call: H2ClientCall;
  ready: boolean;
  drains: number;
  status: H2CallStatus | undefined;
  ended: Promise<H2CallStatus>;
}

/** A message of `body` with the client's headroom in front. */
function msg(body: Buffer): Buffer {
  return Buffer.concat([Buffer.alloc(MESSAGE_HEADROOM), body]);
}

/** The gRPC messages in `data` (5-byte headers). */
function messages(data: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  while (off + 5 <= data.length) {
    const len = data.readUInt32BE(off + 1);
    out.push(data.subarray(off + 5, off + 5 + len));
    off += 5 + len;
  }
  assert.equal(off, data.length, 'whole messages');
  return out;
}

describe('transport: the raft stream\'s HTTP/2 client', function () {
  this.timeout(15_000);
  const servers: net.Server[] = [];
  const sockets: net.Socket[] = [];
  const calls: H2ClientCall[] = [];
  const log = new Logger('error', {}, () => undefined);
  afterEach(async () => {
    for (const c of calls.splice(0)) c.cancel();
    for (const s of sockets.splice(0)) s.destroy();
    await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
  });

  const listen = async (onSocket: (s: net.Socket) => void): Promise<number> => {
    const srv = net.createServer((s) => {
      sockets.push(s);
      s.on('error', () => undefined);
      onSocket(s);
    });
    servers.push(srv);
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    return (srv.address() as net.AddressInfo).port;
  };

  /** Our server's side of HTTP/2; `onStream` gets the client's stream. */
  const ourServer = (onStream: (s: H2ServerStream) => void): Promise<number> =>
    listen((s) => {
      new H2ServerConnection(s, onStream, { maxHeaderListBytes: 64 * 1024, log });
    });

  /** A raw server: `onFrame` gets every frame after the client's preface, with the socket. */
  const rawServer = (onFrame: (f: Frame, s: net.Socket) => void, first: Buffer[] = [settings()]): Promise<number> =>
    listen((s) => {
      for (const b of first) s.write(b);
      let buf = Buffer.alloc(0);
      let prefaceLeft = PREFACE_BYTES;
      s.on('data', (c: Buffer) => {
        buf = Buffer.concat([buf, c]);
        if (prefaceLeft > 0) {
          const n = Math.min(prefaceLeft, buf.length);
          prefaceLeft -= n;
          buf = buf.subarray(n);
        }
        while (buf.length >= 9 && buf.length >= 9 + buf.readUIntBE(0, 3)) {
          const len = buf.readUIntBE(0, 3);
          onFrame({ type: buf[3]!, flags: buf[4]!, stream: buf.readUInt32BE(5) & 0x7fffffff, payload: Buffer.from(buf.subarray(9, 9 + len)) }, s);
          buf = buf.subarray(9 + len);
        }
      });
    });

  const dial = (port: number, extra: Partial<H2CallOptions> = {}): Probe => {
    let resolveEnd: (st: H2CallStatus) => void = () => undefined;
    const ended = new Promise<H2CallStatus>((r) => (resolveEnd = r));
    const probe = { ready: false, drains: 0, status: undefined, ended } as unknown as Probe;
    probe.call = new H2ClientCall(
      {
        host: '127.0.0.1',
        port,
        tls: undefined,
        path: '/quorumkvpb.RaftTransport/Stream',
        metadata: [['x-server-from', '1']],
        keepaliveIntervalMs: 0,
        keepaliveTimeoutMs: 1000,
        log,
        ...extra,
      },
      {
        ready: () => (probe.ready = true),
        drain: () => probe.drains++,
        end: (st) => {
          assert.equal(probe.status, undefined, 'end reported once');
          probe.status = st;
          resolveEnd(st);
        },
      },
    );
    calls.push(probe.call);
    return probe;
  };

  it('sends the request headers, becomes ready on the response, delivers messages split into frames, half-closes and reads the trailers', async () => {
    let stream: H2ServerStream | undefined;
    const got: Buffer[] = [];
    const port = await ourServer((s) => {
      stream = s;
      s.onData = (d) => got.push(Buffer.from(d));
      s.onEnd = () => s.end(OK_TRAILERS);
      s.respond(RESPONSE, false);
    });
    const p = dial(port);
    await waitFor(() => p.ready, 'response headers');
    assert.equal(stream!.headers[':path'], '/quorumkvpb.RaftTransport/Stream');
    assert.equal(stream!.headers['content-type'], 'application/grpc');
    assert.equal(stream!.headers['te'], 'trailers');
    assert.equal(stream!.headers['x-server-from'], '1');
    const small = Buffer.from('hello');
    const big = Buffer.alloc(40_000, 7); // three DATA frames at 16 KiB
    big[39_999] = 9;
    assert.equal(p.call.write(msg(small)), true);
    p.call.write(msg(big));
    p.call.end();
    const st = await p.ended;
    assert.deepEqual(st, { code: GrpcCode.OK, details: '' });
    const [a, b] = messages(Buffer.concat(got));
    assert.deepEqual(a, small);
    assert.deepEqual(b, big);
  });

  it('everything written in one callback goes out in one socket write', async () => {
    const got: Buffer[] = [];
    const port = await ourServer((s) => {
      s.onData = (d) => got.push(Buffer.from(d));
      s.respond(RESPONSE, false);
    });
    const p = dial(port);
    await waitFor(() => p.ready, 'response headers');
    await new Promise((r) => setTimeout(r, 20)); // the SETTINGS ACK and the like are out
    const sock = (p.call as unknown as { socket: net.Socket }).socket;
    let writes = 0;
    const write = sock.write.bind(sock) as (b: Buffer) => boolean;
    sock.write = ((b: Buffer) => {
      writes++;
      return write(b);
    }) as typeof sock.write;
    for (let i = 0; i < 3; i++) p.call.write(msg(Buffer.from(`m${i}`)));
    await new Promise((r) => setImmediate(r));
    assert.equal(writes, 1);
    await waitFor(() => Buffer.concat(got).length === 3 * 7, 'three messages');
    assert.deepEqual(messages(Buffer.concat(got)).map(String), ['m0', 'm1', 'm2']);
  });

  it('stays within our server\'s stream window: write() returns false, the rest goes after WINDOW_UPDATE, then drain', async () => {
    let stream: H2ServerStream | undefined;
    const got: Buffer[] = [];
    const port = await ourServer((s) => {
      stream = s;
      s.onData = (d) => got.push(Buffer.from(d));
      s.onEnd = () => s.end(OK_TRAILERS);
      s.respond(RESPONSE, false);
      s.pause(); // nothing handed on, nothing credited: the client has 64 KiB of window
    });
    const p = dial(port);
    await waitFor(() => p.ready, 'response headers');
    const body = Buffer.alloc(64 * 1024, 3);
    const results = [1, 2, 3, 4].map(() => p.call.write(msg(body)));
    assert.deepEqual(results.slice(1), [false, false, false], 'past the window, writes push back');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(p.drains, 0);
    assert.equal(p.status, undefined, 'our server saw no window violation');
    stream!.resume();
    await waitFor(() => p.drains === 1, 'drain once everything went out');
    p.call.end();
    assert.equal((await p.ended).code, GrpcCode.OK);
    assert.equal(messages(Buffer.concat(got)).length, 4);
  });

  it('a trailers-only error status ends the call with its code and percent-decoded message', async () => {
    const port = await ourServer((s) => {
      s.respond(encodeHeaderBlock([[':status', '200'], ['content-type', 'application/grpc'], ['grpc-status', String(GrpcCode.FAILED_PRECONDITION)], ['grpc-message', encodeURI(ERR_MEMBER_REMOVED)]]), true);
    });
    const st = await dial(port).ended;
    assert.deepEqual(st, { code: GrpcCode.FAILED_PRECONDITION, details: ERR_MEMBER_REMOVED });
  });

  it('trailers with an error after the response headers end the call with that status', async () => {
    const port = await ourServer((s) => {
      s.respond(RESPONSE, false);
      setTimeout(() => s.end(encodeHeaderBlock([['grpc-status', String(GrpcCode.UNAVAILABLE)], ['grpc-message', 'quorumkv: transport closed']])), 20);
    });
    const p = dial(port);
    const st = await p.ended;
    assert.equal(p.ready, true);
    assert.deepEqual(st, { code: GrpcCode.UNAVAILABLE, details: 'quorumkv: transport closed' });
  });

  it('a stream reset by the server ends the call (REFUSED_STREAM: UNAVAILABLE)', async () => {
    const port = await ourServer((s) => {
      s.respond(RESPONSE, false);
      setTimeout(() => s.conn.resetStream(s, H2_REFUSED_STREAM, true), 20);
    });
    const st = await dial(port).ended;
    assert.equal(st.code, GrpcCode.UNAVAILABLE);
    assert.match(st.details, /reset by the server/);
  });

  it('a graceful GOAWAY that covers the stream lets it finish; one that does not ends it UNAVAILABLE', async () => {
    const port = await ourServer((s) => {
      s.respond(RESPONSE, false);
      s.conn.goAway();
      s.onEnd = () => s.end(OK_TRAILERS);
    });
    const p = dial(port);
    await waitFor(() => p.ready, 'response headers');
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(p.status, undefined, 'the GOAWAY covered stream 1');
    p.call.write(msg(Buffer.from('after goaway')));
    p.call.end();
    assert.equal((await p.ended).code, GrpcCode.OK);

    const goaway = Buffer.alloc(8); // last stream 0, NO_ERROR
    const port2 = await rawServer(() => undefined, [settings(), frame(GOAWAY, 0, 0, goaway)]);
    const st = await dial(port2).ended;
    assert.equal(st.code, GrpcCode.UNAVAILABLE);
    assert.match(st.details, /GOAWAY/);
  });

  it('respects a small SETTINGS_INITIAL_WINDOW_SIZE, the connection window and SETTINGS_MAX_FRAME_SIZE', async () => {
    const data: Frame[] = [];
    let acked = false;
    let sock: net.Socket | undefined;
    const port = await rawServer(
      (f, s) => {
        sock = s;
        if (f.type === T.DATA) data.push(f);
        if (f.type === T.SETTINGS && f.flags === 1) acked = true;
        if (f.type === T.HEADERS) s.write(frame(T.HEADERS, 0x4, 1, RESPONSE));
      },
      [settings([[0x4, 1000]])],
    );
    const p = dial(port);
    await waitFor(() => p.ready && acked, 'response headers and our SETTINGS acknowledged');
    const bytes = (): number => data.reduce((n, f) => n + f.payload.length, 0);
    assert.equal(p.call.write(msg(Buffer.alloc(5000, 1))), false);
    await waitFor(() => bytes() === 1000, 'the stream window');
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(bytes(), 1000, 'not a byte past the stream window');
    // The stream window opens wide; the connection's (64 KiB - 1000 used) is now the bound.
    sock!.write(windowUpdate(1, 1 << 20));
    await waitFor(() => bytes() === 5005, 'the rest of the first message');
    assert.equal(p.drains, 1);
    p.call.write(msg(Buffer.alloc(100_000, 2)));
    await waitFor(() => bytes() === 65_535, 'the connection window');
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(bytes(), 65_535, 'not a byte past the connection window');
    assert.ok(data.every((f) => f.payload.length <= 16_384), 'frames within the default SETTINGS_MAX_FRAME_SIZE');
    // Larger frames allowed, and more connection window.
    sock!.write(settings([[0x5, 65_536]]));
    sock!.write(windowUpdate(0, 1 << 20));
    await waitFor(() => bytes() === 105_010, 'the rest of the second message');
    assert.ok(data.some((f) => f.payload.length > 16_384), 'the raised frame size used');
    assert.equal(p.status, undefined);
  });

  it('refuses a frame above our SETTINGS_MAX_FRAME_SIZE: GOAWAY FRAME_SIZE_ERROR, the call ends INTERNAL', async () => {
    let goawayCode: number | undefined;
    const port = await rawServer((f, s) => {
      if (f.type === T.HEADERS) {
        s.write(frame(T.HEADERS, 0x4, 1, RESPONSE));
        s.write(frame(T.DATA, 0, 1, Buffer.alloc(20_000)));
      }
      if (f.type === GOAWAY) goawayCode = f.payload.readUInt32BE(4);
    });
    const p = dial(port);
    const st = await p.ended;
    assert.equal(st.code, GrpcCode.INTERNAL);
    assert.match(st.details, /above SETTINGS_MAX_FRAME_SIZE/);
    await waitFor(() => goawayCode !== undefined, 'our GOAWAY');
    assert.equal(goawayCode, H2_FRAME_SIZE_ERROR);
  });

  it('answers every PING of the server with an ACK of the same payload (a BDP estimator sends one per burst of data)', async () => {
    const acks: Buffer[] = [];
    const pings = Array.from({ length: 1000 }, (_, i) => frame(T.PING, 0, 0, Buffer.from(`ping${String(i).padStart(4, '0')}`)));
    const port = await rawServer(
      (f) => {
        if (f.type === T.PING && f.flags === 1) acks.push(f.payload);
      },
      [settings(), ...pings],
    );
    const p = dial(port);
    await waitFor(() => acks.length === 1000, 'the PING ACKs');
    assert.deepEqual(acks[0], Buffer.from('ping0000'));
    assert.deepEqual(acks[999], Buffer.from('ping0999'));
    assert.equal(p.status, undefined);
  });

  it('keepalive: PINGs answered keep the call; unanswered, the call ends UNAVAILABLE', async () => {
    let pings = 0;
    const port = await ourServer((s) => s.respond(RESPONSE, false));
    const kept = dial(port, { keepaliveIntervalMs: 20, keepaliveTimeoutMs: 100 });
    const port2 = await rawServer((f, s) => {
      if (f.type === T.PING) pings++;
      if (f.type === T.HEADERS) s.write(frame(T.HEADERS, 0x4, 1, RESPONSE));
    });
    const silent = dial(port2, { keepaliveIntervalMs: 20, keepaliveTimeoutMs: 100 });
    const st = await silent.ended;
    assert.equal(st.code, GrpcCode.UNAVAILABLE);
    assert.match(st.details, /keepalive PING not answered within 100 ms/);
    assert.equal(pings, 1, 'one PING outstanding at a time');
    assert.equal(kept.ready, true);
    assert.equal(kept.status, undefined, 'our server answers its PINGs');
  });

  it('works with grpc-js\'s server (nghttp2: Huffman-coded, indexed response headers), as an older member\'s peer port was', async () => {
    const got: Buffer[] = [];
    const server = new grpc.Server();
    server.addService(serviceDefinition(), {
      Stream: (call: grpc.ServerReadableStream<MessageBatchPb, Record<string, never>>, cb: grpc.sendUnaryData<Record<string, never>>) => {
        call.sendMetadata(new grpc.Metadata());
        call.on('data', (b: MessageBatchPb) => got.push(b.messages));
        call.on('end', () => cb(null, {}));
      },
      Snapshot: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => cb({ code: grpc.status.UNIMPLEMENTED }),
    });
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
    try {
      for (let round = 0; round < 2; round++) {
        const p = dial(port);
        await waitFor(() => p.ready, 'response headers');
        p.call.write(encodeBatchMessage([heartbeat(1n, 2n, round)], encodedBatchSize([heartbeat(1n, 2n, round)]), MESSAGE_HEADROOM));
        p.call.end();
        assert.deepEqual(await p.ended, { code: GrpcCode.OK, details: 'OK' });
        assert.equal(decodeMessages(got[round]!)[0]!.commit, round);
      }
    } finally {
      server.forceShutdown();
    }
  });

  it('a connection refused ends the call UNAVAILABLE', async () => {
    const port = await listen(() => undefined);
    await new Promise((r) => servers.pop()!.close(r));
    const st = await dial(port).ended;
    assert.equal(st.code, GrpcCode.UNAVAILABLE);
    assert.match(st.details, /ECONNREFUSED/);
  });
});
