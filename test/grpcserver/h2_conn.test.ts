// Our HTTP/2 framing (src/api/h2_conn.ts), driven by node:http2's client (nghttp2: a strict peer
// that checks every frame, window and header block we send) and by raw sockets for the protocol
// violations a real client would not commit.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { Duplex } from 'node:stream';
import { H2ServerConnection, H2_PREFACE, encodeHeaderBlock, type H2ServerOptions, type H2ServerStream } from '../../src/grpcserver/h2_conn';
import { ResponseBudget, STALLED_MS_MIN } from '../../src/grpcserver/limits';
import { HpackDecoder } from '../../src/grpcserver/hpack';
import { AssertionError, assert as invariant } from '../../src/util/assert';
import { Logger } from '../../src/util/log';
import { frame } from '../hostile/frames';

const RESPONSE = encodeHeaderBlock([[':status', '200'], ['content-type', 'application/octet-stream']]);
const TRAILERS = encodeHeaderBlock([['x-done', 'yes']]);

type Handler = (s: H2ServerStream) => void;


interface Frame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

/** Reads frames from a raw socket until `done` says so (or 3 s pass); the frames read. */
function readFrames(sock: net.Socket, done: (frames: Frame[]) => boolean): Promise<Frame[]> {
  return new Promise((resolve) => {
    const frames: Frame[] = [];
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => resolve(frames), 3000);
    sock.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      while (buf.length >= 9 && buf.length >= 9 + buf.readUIntBE(0, 3)) {
        const len = buf.readUIntBE(0, 3);
        frames.push({ type: buf[3]!, flags: buf[4]!, stream: buf.readUInt32BE(5) & 0x7fffffff, payload: buf.subarray(9, 9 + len) });
        buf = buf.subarray(9 + len);
      }
      if (done(frames)) {
        clearTimeout(timer);
        resolve(frames);
      }
    });
  });
}

/** Reads frames from a raw socket until a GOAWAY arrives (or the socket closes); its error code. */
function goawayCode(sock: net.Socket): Promise<number | undefined> {
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => resolve(undefined), 3000);
    sock.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      while (buf.length >= 9) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) break;
        if (buf[3] === 7) {
          clearTimeout(timer);
          return resolve(buf.readUInt32BE(9 + 4));
        }
        buf = buf.subarray(9 + len);
      }
    });
    sock.on('close', () => (clearTimeout(timer), resolve(undefined)));
  });
}

describe('H2ServerConnection (HTTP/2 framing on the socket)', () => {
  let tcp: net.Server;
  let port: number;
  let handler: Handler;
  const conns: H2ServerConnection[] = [];
  const sessions: http2.ClientHttp2Session[] = [];
  const sockets: net.Socket[] = [];
  let logged: Record<string, unknown>[] = [];
  const log = new Logger('info', {}, (line) => logged.push(JSON.parse(line) as Record<string, unknown>));
  /** Options a test gives the connections it makes (set before connecting). */
  let extra: Partial<H2ServerOptions> = {};

  beforeEach(async () => {
    handler = () => undefined;
    logged = [];
    extra = {};
    tcp = net.createServer((s) => conns.push(new H2ServerConnection(s, (st) => handler(st), { maxHeaderListBytes: 16 * 1024, log, ...extra })));
    await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
    port = (tcp.address() as net.AddressInfo).port;
  });

  afterEach(async () => {
    for (const s of sessions.splice(0)) s.destroy();
    for (const s of sockets.splice(0)) s.destroy();
    for (const c of conns.splice(0)) c.destroy();
    await new Promise((r) => tcp.close(r));
  });

  const connect = (settings: http2.Settings = {}): http2.ClientHttp2Session => {
    const s = http2.connect(`http://127.0.0.1:${port}`, { settings });
    s.on('error', () => undefined);
    sessions.push(s);
    return s;
  };

  const rawSocket = async (): Promise<net.Socket> => {
    const s = net.connect(port, '127.0.0.1');
    sockets.push(s);
    s.on('error', () => undefined);
    await new Promise((r) => s.once('connect', r));
    return s;
  };

  /** One request: its body sent whole; resolves with the response status, body and trailers. */
  function request(session: http2.ClientHttp2Session, body: Buffer, headers: http2.OutgoingHttpHeaders = {}): Promise<{ status: number; body: Buffer; trailers: http2.IncomingHttpHeaders }> {
    return new Promise((resolve, reject) => {
      const req = session.request({ ':method': 'POST', ':path': '/x', ...headers });
      const chunks: Buffer[] = [];
      let status = 0;
      let trailers: http2.IncomingHttpHeaders = {};
      req.on('response', (h) => (status = Number(h[':status'])));
      req.on('trailers', (t) => (trailers = t));
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => resolve({ status, body: Buffer.concat(chunks), trailers }));
      req.on('error', reject);
      req.end(body);
    });
  }

  /** Echoes the request body back once the client half-closes, then trailers. */
  const echo: Handler = (s) => {
    const got: Buffer[] = [];
    s.onData = (c) => got.push(Buffer.from(c));
    s.onEnd = () => {
      s.respond(RESPONSE, false);
      s.write(Buffer.concat(got), 1 << 30);
      s.end(TRAILERS);
    };
  };

  it('answers a request with headers, data and trailers', async () => {
    handler = echo;
    const r = await request(connect(), Buffer.from('hello'));
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'hello');
    assert.equal(r.trailers['x-done'], 'yes');
  });

  it('moves bodies far larger than every window both ways, whole, under small client windows', async () => {
    handler = echo;
    const session = connect({ initialWindowSize: 1000, maxFrameSize: 16384 });
    const body = Buffer.alloc(3 * 1024 * 1024 + 17);
    for (let i = 0; i < body.length; i++) body[i] = (i * 31) & 0xff;
    const rs = await Promise.all([request(session, body), request(session, body.subarray(5))]);
    assert.ok(rs[0]!.body.equals(body));
    assert.ok(rs[1]!.body.equals(body.subarray(5)));
  });

  it('many small writes held by a small client window arrive whole and in order', async () => {
    const pieces = Array.from({ length: 5000 }, (_, i) => Buffer.from(`<${i}>`));
    handler = (s) => {
      s.onEnd = () => {
        s.respond(RESPONSE, false);
        for (const p of pieces) s.write(p, 1 << 30);
        s.end(TRAILERS);
      };
    };
    const r = await request(connect({ initialWindowSize: 1000 }), Buffer.alloc(0));
    assert.ok(r.body.equals(Buffer.concat(pieces)));
    assert.equal(r.trailers['x-done'], 'yes');
  });

  it('answers PINGs and keeps a client that shrinks its header table decoding our headers', async () => {
    handler = echo;
    const session = connect({ headerTableSize: 0 });
    await new Promise((r) => session.once('connect', r));
    const rtt = await new Promise<number>((resolve, reject) => session.ping((err, ms) => (err ? reject(err) : resolve(ms))));
    assert.ok(rtt >= 0);
    for (let i = 0; i < 3; i++) assert.equal((await request(session, Buffer.from(`n${i}`))).body.toString(), `n${i}`);
  });

  it('tells the stream when the client resets it, and keeps the connection serving', async () => {
    let closed: boolean | undefined;
    handler = (s) => {
      if (s.headers[':path'] === '/hang') s.onClose = (aborted) => (closed = aborted);
      else echo(s);
    };
    const session = connect();
    const req = session.request({ ':method': 'POST', ':path': '/hang' });
    req.on('error', () => undefined);
    req.write('x');
    await new Promise((r) => setTimeout(r, 50));
    req.close(http2.constants.NGHTTP2_CANCEL);
    const deadline = Date.now() + 2000;
    while (closed === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.equal(closed, true);
    assert.equal((await request(session, Buffer.from('after'))).body.toString(), 'after');
    assert.equal(conns[0]!.openStreams, 0);
  });

  it('resets a stream answered before the client half-closed, and forgets it', async () => {
    handler = (s) => {
      s.respond(RESPONSE, false);
      s.write(Buffer.from('early'), 1 << 30);
      s.end(TRAILERS);
    };
    const session = connect();
    const req = session.request({ ':method': 'POST', ':path': '/x' });
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', () => undefined);
    req.write('never ends');
    await new Promise((r) => req.on('close', r));
    assert.equal(Buffer.concat(chunks).toString(), 'early');
    assert.equal(req.rstCode, http2.constants.NGHTTP2_NO_ERROR);
    assert.equal(conns[0]!.openStreams, 0);
  });

  it('a paused stream is handed nothing and holds the client to one stream window until it resumes', async () => {
    let stream: H2ServerStream | undefined;
    let received = 0;
    handler = (s) => {
      stream = s;
      s.pause();
      s.onData = (c) => (received += c.length);
      s.onEnd = () => {
        s.respond(RESPONSE, false);
        s.end(TRAILERS);
      };
    };
    const session = connect();
    const done = request(session, Buffer.alloc(3 * 1024 * 1024));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(received, 0, 'nothing handed on while paused');
    assert.ok(stream!.heldBytes > 0 && stream!.heldBytes <= 1024 * 1024, `held ${stream!.heldBytes} bytes while paused`);
    stream!.resume();
    assert.equal((await done).status, 200);
    assert.equal(received, 3 * 1024 * 1024);
  });

  it('receive windows start at 65,535 and grow (BDP PINGs) where data is consumed at once; a paused stream is never raised', async () => {
    const streams = new Map<string, H2ServerStream>();
    let received = 0;
    handler = (s) => {
      streams.set(String(s.headers[':path']), s);
      if (s.headers[':path'] === '/paused') s.pause();
      s.onData = (c) => (received += c.length);
      s.onEnd = () => {
        s.respond(RESPONSE, false);
        s.end(TRAILERS);
      };
    };
    // A connection whose first stream is paused: held to the initial window.
    const first = connect();
    const firstDone = request(first, Buffer.alloc(1024 * 1024), { ':path': '/paused' });
    await new Promise((r) => setTimeout(r, 300));
    const p0 = streams.get('/paused')!;
    assert.ok(p0.heldBytes > 0 && p0.heldBytes <= 65535, `held ${p0.heldBytes} bytes on a fresh connection`);
    assert.equal(p0.recvTarget, 65535);
    p0.resume();
    assert.equal((await firstDone).status, 200);
    // A connection moving 8 MiB that is consumed at once: its stream's window grows past the
    // initial one (at most 1 MiB).
    const session = connect();
    assert.equal((await request(session, Buffer.alloc(8 * 1024 * 1024), { ':path': '/bulk' })).status, 200);
    const bulk = streams.get('/bulk')!;
    assert.ok(bulk.recvTarget > 65535 && bulk.recvTarget <= 1024 * 1024, `the consumed stream's window: ${bulk.recvTarget}`);
    // Then a paused stream on that connection: not raised, however large the others' windows.
    const pausedDone = request(session, Buffer.alloc(3 * 1024 * 1024), { ':path': '/paused' });
    await new Promise((r) => setTimeout(r, 300));
    const p1 = streams.get('/paused')!;
    assert.notEqual(p1, p0);
    assert.equal(p1.recvTarget, 65535, 'a paused stream is never raised');
    assert.ok(p1.heldBytes > 0 && p1.heldBytes <= 65535, `held ${p1.heldBytes} bytes`);
    // Other streams of the connection are not stalled by it (its held bytes are credited to the
    // connection): a request of 100 KB goes through meanwhile.
    assert.equal((await request(session, Buffer.alloc(100_000), { ':path': '/other' })).status, 200);
    p1.resume();
    assert.equal((await pausedDone).status, 200);
    assert.equal(received, 1024 * 1024 + 8 * 1024 * 1024 + 3 * 1024 * 1024 + 100_000);
  });

  it('sends BDP PINGs as data is read, none on a connection whose windows a stream\'s user set (widenRecvWindow)', async () => {
    handler = (s) => {
      if (s.headers[':path'] === '/fixed') s.widenRecvWindow(2 * 1024 * 1024, 4 * 1024 * 1024);
      s.onData = () => undefined;
    };
    const pingsFor = async (path: string): Promise<number> => {
      const sock = await rawSocket();
      let pings = 0;
      let headersSeen = false;
      void readFrames(sock, (fs) => {
        pings = fs.filter((f) => f.type === 6 && (f.flags & 0x1) === 0).length;
        headersSeen ||= fs.length > 0;
        return false;
      });
      sock.write(Buffer.concat([H2_PREFACE, frame(4, 0, 0, Buffer.alloc(0)), frame(1, 0x4, 1, encodeHeaderBlock([[':method', 'POST'], [':scheme', 'http'], [':path', path]]))]));
      for (let i = 0; i < 10; i++) {
        await new Promise((r) => setTimeout(r, 10));
        sock.write(frame(0, 0, 1, Buffer.alloc(1000)));
      }
      await new Promise((r) => setTimeout(r, 100));
      assert.ok(headersSeen, 'the server wrote its SETTINGS');
      return pings;
    };
    assert.ok((await pingsFor('/estimated')) >= 1, 'BDP PINGs while data is read');
    assert.equal(await pingsFor('/fixed'), 0, 'none once the windows are set');
  });

  it('after GOAWAY finishes the open streams, refuses new ones, then ends the socket', async () => {
    let held: H2ServerStream | undefined;
    handler = (s) => {
      if (s.headers[':path'] === '/held') {
        held = s;
        s.onData = () => undefined;
      } else echo(s);
    };
    const session = connect();
    const first = request(session, Buffer.from('a'), { ':path': '/held' });
    while (!held) await new Promise((r) => setTimeout(r, 5));
    conns[0]!.goAway();
    await new Promise((r) => setTimeout(r, 50));
    held.respond(RESPONSE, false);
    held.write(Buffer.from('finished'), 1 << 30);
    held.end(TRAILERS);
    const r = await first;
    assert.equal(r.body.toString(), 'finished');
    await new Promise((r) => session.once('close', r));
  });

  it('accepts any :authority, including a URL (Go clients dialled with http://…)', async () => {
    handler = echo;
    const r = await request(connect(), Buffer.from('ok'), { ':authority': 'http://127.0.0.1:2379' });
    assert.equal(r.body.toString(), 'ok');
  });

  it('ends the connection with the matching GOAWAY code on protocol violations', async () => {
    const cases: [string, Buffer, number][] = [
      ['a frame above the maximum size', frame(0, 0, 1, Buffer.alloc(16385)), 0x6],
      ['HEADERS on an even stream', frame(1, 0x4 | 0x1, 2, Buffer.from([0x83])), 0x1],
      ['a broken header block', frame(1, 0x4 | 0x1, 1, Buffer.from([0x80])), 0x9],
      ['DATA on an idle stream', frame(0, 0, 7, Buffer.from('x')), 0x1],
      ['PING of the wrong size', frame(6, 0, 0, Buffer.alloc(4)), 0x6],
      ['a header block interrupted', Buffer.concat([frame(1, 0, 1, Buffer.from([0x83])), frame(6, 0, 0, Buffer.alloc(8))]), 0x1],
      ['a header block above the bound', Buffer.concat([frame(1, 0, 1, Buffer.alloc(16384)), ...Array.from({ length: 8 }, () => frame(9, 0, 1, Buffer.alloc(16384)))]), 0xb],
      ['a WINDOW_UPDATE overflowing the connection window', frame(8, 0, 0, Buffer.from([0x7f, 0xff, 0xff, 0xff])), 0x3],
    ];
    for (const [what, bytes, code] of cases) {
      const sock = await rawSocket();
      const got = goawayCode(sock);
      sock.write(Buffer.concat([H2_PREFACE, frame(4, 0, 0, Buffer.alloc(0)), bytes]));
      assert.equal(await got, code, what);
    }
  });

  it('drops a connection whose preface is not HTTP/2', async () => {
    const sock = await rawSocket();
    const closed = new Promise((r) => sock.once('close', r));
    sock.resume();
    sock.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await closed;
  });

  it('answers a header list above the bound with 431 for that stream alone, its HPACK context kept', async () => {
    const seen: H2ServerStream[] = [];
    handler = (s) => {
      seen.push(s);
      echo(s);
    };
    // A block whose indexed references decode to far more than it weighs: a 3,000-byte literal
    // entered into the dynamic table (it fits the default 4,096), then 8,000 one-byte references
    // to it (24 MB of header list from 11 KB).
    const literal = Buffer.concat([Buffer.from([0x40, 0x05]), Buffer.from('x-big'), Buffer.from([0x7f, 0xb9, 0x16]), Buffer.alloc(3000, 0x61)]);
    const bomb = Buffer.concat([Buffer.from([0x83, 0x86, 0x84]), literal, Buffer.alloc(8000, 0xbe)]);
    // Then, on the same connection, a request that refers to the entry the refused block made:
    // decoded right only if the refused block was decoded to its end.
    const next = Buffer.from([0x83, 0x86, 0x84, 0xbe]);
    const sock = await rawSocket();
    const t0 = Date.now();
    const got = readFrames(sock, (fs) => fs.some((f) => f.type === 1 && f.stream === 3 && f.flags & 0x1) || fs.some((f) => f.type === 7));
    sock.write(Buffer.concat([H2_PREFACE, frame(4, 0, 0, Buffer.alloc(0)), frame(1, 0x4, 1, bomb), frame(1, 0x4 | 0x1, 3, next)]));
    const frames = await got;
    assert.ok(Date.now() - t0 < 1000, `answered in ${Date.now() - t0} ms`);
    assert.equal(frames.filter((f) => f.type === 7).length, 0, 'no GOAWAY');
    // Stream 1: 431 and END_STREAM, then RST_STREAM NO_ERROR (the client had not half-closed).
    const responses = new HpackDecoder(64 * 1024);
    const h1 = frames.find((f) => f.type === 1 && f.stream === 1)!;
    assert.ok(h1.flags & 0x1);
    responses.decode(h1.payload);
    assert.deepEqual([responses.names[0], responses.values[0]], [':status', '431']);
    const rst1 = frames.find((f) => f.type === 3 && f.stream === 1)!;
    assert.equal(rst1.payload.readUInt32BE(0), 0);
    // Stream 3 was served, with the header the refused block entered.
    assert.deepEqual(
      seen.map((s) => s.id),
      [3],
    );
    assert.equal(seen[0]!.headers['x-big'], 'a'.repeat(3000));
    assert.ok(frames.some((f) => f.type === 1 && f.stream === 3));
  });

  it('bounds header blocks while decoding, and serves other connections meanwhile', async () => {
    handler = echo;
    // 1. A block above the bound in raw bytes: GOAWAY, the connection cannot decode past it.
    const huge = Buffer.concat([frame(1, 0, 1, Buffer.alloc(16384, 0x82)), frame(9, 0x4, 1, Buffer.alloc(1000, 0x82))]);
    // 2. A block that never ends: empty CONTINUATION frames.
    const endless = Buffer.concat([frame(1, 0, 1, Buffer.from([0x83])), ...Array.from({ length: 2000 }, () => frame(9, 0, 1, Buffer.alloc(0)))]);
    // 3. Streams opened and reset in a loop (rapid reset).
    const resets: Buffer[] = [];
    for (let id = 1; id < 2 * 1200; id += 2) resets.push(frame(1, 0x4, id, Buffer.from([0x83, 0x86, 0x84, 0x41, 0x01, 0x61])), frame(3, 0, id, Buffer.from([0, 0, 0, 8])));
    const cases: [string, Buffer, number][] = [
      ['a block above the bound', huge, 0xb],
      ['empty CONTINUATION frames without end', endless, 0xb],
      ['a stream reset flood', Buffer.concat(resets), 0xb],
    ];
    for (const [what, bytes, code] of cases) {
      const sock = await rawSocket();
      const got = goawayCode(sock);
      const t0 = Date.now();
      sock.write(Buffer.concat([H2_PREFACE, frame(4, 0, 0, Buffer.alloc(0)), bytes]));
      assert.equal(await got, code, what);
      assert.ok(Date.now() - t0 < 1000, `${what}: answered in ${Date.now() - t0} ms`);
    }
    const r = await request(connect(), Buffer.from('next'));
    assert.equal(r.body.toString(), 'next');
  });

  it('header names an object inherits (__proto__, constructor) become plain own headers', async () => {
    let got: H2ServerStream | undefined;
    handler = (s) => {
      got = s;
      echo(s);
    };
    const fields: [string, string][] = [['__proto__', 'p'], ['constructor', 'c'], ['x-dup', '1'], ['x-dup', '2'], ['__proto__', 'q'], ['tostring', 't']];
    const sock = await rawSocket();
    const answered = readFrames(sock, (fs) => fs.some((f) => f.type === 1 && f.stream === 1));
    sock.write(Buffer.concat([H2_PREFACE, frame(4, 0, 0, Buffer.alloc(0)), frame(1, 0x4 | 0x1, 1, Buffer.concat([Buffer.from([0x83, 0x86, 0x84]), encodeHeaderBlock(fields)]))]));
    await answered;
    const h = got!.headers;
    assert.equal(Object.getPrototypeOf(h), Object.prototype);
    assert.deepEqual(Object.getOwnPropertyDescriptor(h, '__proto__')?.value, ['p', 'q']);
    assert.equal(h.constructor, 'c');
    assert.deepEqual(h['x-dup'], ['1', '2']);
    assert.deepEqual(Object.keys(h), [':method', ':scheme', ':path', '__proto__', 'constructor', 'x-dup', 'tostring']);
  });

  it('a handler that throws resets its stream alone, logs it, and the connection serves on', async () => {
    let held: H2ServerStream | undefined;
    handler = (s) => {
      const path = s.headers[':path'];
      if (path === '/held') {
        held = s;
        s.onData = () => undefined;
      } else if (path === '/boom') throw new Error('planted: handler');
      else if (path === '/boom-data')
        s.onData = () => {
          throw new TypeError('planted: onData');
        };
      else if (path === '/boom-end') {
        s.onEnd = () => {
          throw new RangeError('planted: onEnd');
        };
      } else echo(s);
    };
    const session = connect();
    const first = request(session, Buffer.from('a'), { ':path': '/held' });
    while (!held) await new Promise((r) => setTimeout(r, 5));
    for (const path of ['/boom', '/boom-data', '/boom-end']) {
      const req = session.request({ ':method': 'POST', ':path': path });
      req.on('error', () => undefined);
      req.resume();
      req.end('payload');
      await new Promise((r) => req.on('close', r));
      assert.equal(req.rstCode, http2.constants.NGHTTP2_INTERNAL_ERROR, path);
    }
    // The held stream is still open, and finishes; new streams are served.
    held.respond(RESPONSE, false);
    held.write(Buffer.from('finished'), 1 << 30);
    held.end(TRAILERS);
    assert.equal((await first).body.toString(), 'finished');
    assert.equal((await request(session, Buffer.from('after'))).body.toString(), 'after');
    assert.deepEqual(
      logged.map((l) => [l.level, l.path, l.callback, l.error]),
      [
        ['error', '/boom', 'onStream', 'planted: handler'],
        ['error', '/boom-data', 'onData', 'planted: onData'],
        ['error', '/boom-end', 'onEnd', 'planted: onEnd'],
      ],
    );
    assert.ok(logged.every((l) => typeof l.stream === 'number' && typeof l.stack === 'string' && typeof l.remote === 'string'));
  });

  it('an AssertionError in a handler is not caught: it reaches the top and crashes the member', () => {
    const sock = new Duplex({ read: () => undefined, write: (_c, _e, cb) => cb() });
    const c = new H2ServerConnection(sock, () => invariant(false, 'planted invariant'), { maxHeaderListBytes: 16 * 1024, log });
    const bytes = Buffer.concat([H2_PREFACE, frame(4, 0, 0, Buffer.alloc(0)), frame(1, 0x4 | 0x1, 1, Buffer.from([0x83, 0x86, 0x84, 0x41, 0x01, 0x61]))]);
    assert.throws(() => sock.emit('data', bytes), (err: unknown) => err instanceof AssertionError && /planted invariant/.test(err.message));
    // Nothing caught it on the way, so nothing answered or logged it as a stream's failure.
    assert.equal(logged.length, 0);
    c.destroy();
  });

  // ---- limits (issue 22) ----

  /** A request's HEADERS (POST http /), END_HEADERS, END_STREAM when `end`. */
  const headersFrame = (stream: number, end: boolean) => frame(1, 0x4 | (end ? 0x1 : 0), stream, Buffer.from([0x83, 0x86, 0x84]));
  const settingsFrame = (pairs: [number, number][]) => {
    const p = Buffer.alloc(pairs.length * 6);
    pairs.forEach(([id, v], i) => (p.writeUInt16BE(id, i * 6), p.writeUInt32BE(v, i * 6 + 2)));
    return frame(4, 0, 0, p);
  };
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n, 0);
    return b;
  };

  it('advertises SETTINGS_MAX_CONCURRENT_STREAMS and refuses a stream above it with REFUSED_STREAM', async () => {
    extra = { maxConcurrentStreams: 2 };
    handler = () => undefined; // streams stay open
    const sock = await rawSocket();
    const got = readFrames(sock, (fs) => fs.some((f) => f.type === 3 && f.stream === 5));
    sock.write(Buffer.concat([H2_PREFACE, settingsFrame([]), headersFrame(1, false), headersFrame(3, false), headersFrame(5, false)]));
    const frames = await got;
    const settings = frames.find((f) => f.type === 4 && !(f.flags & 1))!;
    const advertised = new Map<number, number>();
    for (let o = 0; o < settings.payload.length; o += 6) advertised.set(settings.payload.readUInt16BE(o), settings.payload.readUInt32BE(o + 2));
    assert.equal(advertised.get(3), 2);
    const rst = frames.filter((f) => f.type === 3);
    assert.deepEqual(rst.map((f) => [f.stream, f.payload.readUInt32BE(0)]), [[5, 7]]);
    assert.equal(conns[0]!.openStreams, 2);
  });

  it('counts the resets the client makes the server send (MadeYouReset): GOAWAY ENHANCE_YOUR_CALM', async () => {
    handler = () => undefined;
    const sock = await rawSocket();
    const got = goawayCode(sock);
    // Each stream opened, then a WINDOW_UPDATE of 0 on it: a stream error the server answers
    // with RST_STREAM PROTOCOL_ERROR.
    const parts: Buffer[] = [H2_PREFACE, settingsFrame([])];
    for (let id = 1; id < 2 * 1100; id += 2) parts.push(headersFrame(id, true), frame(8, 0, id, u32(0)));
    sock.write(Buffer.concat(parts));
    assert.equal(await got, 0xb);
  });

  it('rate-limits PINGs and SETTINGS: a flood ends with GOAWAY ENHANCE_YOUR_CALM', async () => {
    for (const [what, one] of [
      ['PING', frame(6, 0, 0, Buffer.alloc(8))],
      ['SETTINGS', settingsFrame([])],
    ] as const) {
      const sock = await rawSocket();
      const got = goawayCode(sock);
      sock.write(Buffer.concat([H2_PREFACE, settingsFrame([]), ...new Array<Buffer>(1500).fill(one)]));
      assert.equal(await got, 0xb, what);
    }
  });

  it('a raised initial window wakes every blocked stream, a few per turn, and SETTINGS stay O(1)', async () => {
    const n = 600; // more than one turn's worth (WAKE_PER_TURN)
    handler = (s) => {
      s.onEnd = () => {
        s.respond(RESPONSE, false);
        s.write(Buffer.from('hello'), 1 << 30);
        s.end(TRAILERS);
      };
    };
    const sock = await rawSocket();
    const parts: Buffer[] = [H2_PREFACE, settingsFrame([[4, 0]])];
    for (let i = 0; i < n; i++) parts.push(headersFrame(2 * i + 1, true));
    // Many SETTINGS that change nothing while they wait: each must cost O(1).
    const t0 = Date.now();
    const blocked = readFrames(sock, (fs) => fs.filter((f) => f.type === 1).length >= n);
    sock.write(Buffer.concat(parts));
    assert.equal((await blocked).filter((f) => f.type === 0).length, 0, 'no DATA on a zero window');
    const acks = readFrames(sock, (fs) => fs.some((f) => f.type === 6 && f.flags & 1));
    sock.write(Buffer.concat([...new Array<Buffer>(50).fill(settingsFrame([[4, 0]])), frame(6, 0, 0, Buffer.alloc(8))]));
    await acks;
    assert.ok(Date.now() - t0 < 2000, `PING answered after ${Date.now() - t0} ms`);
    const ends = readFrames(sock, (fs) => fs.filter((f) => f.type === 1 && f.flags & 1).length >= n);
    sock.write(settingsFrame([[4, 65535]]));
    const frames = await ends;
    assert.equal(frames.filter((f) => f.type === 0).length, n, 'every stream sent its DATA');
    assert.equal(frames.filter((f) => f.type === 1 && f.flags & 1).length, n, 'and its trailers');
  });

  it('serves streams waiting for the connection window as WINDOW_UPDATEs on stream 0 come', async () => {
    const body = Buffer.alloc(40_000, 0x62);
    handler = (s) => {
      s.onEnd = () => {
        s.respond(RESPONSE, false);
        s.write(body, 1 << 30);
        s.end(TRAILERS);
      };
    };
    const sock = await rawSocket();
    // Four streams of 40 KB against the default 65,535-byte connection window.
    const got = readFrames(sock, (fs) => fs.filter((f) => f.type === 1 && f.flags & 1).length >= 4);
    sock.write(Buffer.concat([H2_PREFACE, settingsFrame([[4, 1 << 20]]), headersFrame(1, true), headersFrame(3, true), headersFrame(5, true), headersFrame(7, true)]));
    await new Promise((r) => setTimeout(r, 100));
    sock.write(frame(8, 0, 0, u32(100_000)));
    const frames = await got;
    for (const id of [1, 3, 5, 7]) assert.equal(frames.filter((f) => f.type === 0 && f.stream === id).reduce((a, f) => a + f.payload.length, 0), body.length, `stream ${id}`);
  });

  /** Opens streams 1, 3, 5, 7 on a zero window, each answered with 100 KB that stays queued. */
  async function fourBlockedStreams(budget: ResponseBudget, evicted: number[]): Promise<net.Socket> {
    extra = { budget };
    handler = (s) => {
      s.onEvict = () => {
        evicted.push(s.id);
        s.end(TRAILERS);
      };
      s.onEnd = () => {
        s.respond(RESPONSE, false);
        s.write(Buffer.alloc(100_000), 1 << 30);
      };
    };
    const sock = await rawSocket();
    sock.resume();
    const parts: Buffer[] = [H2_PREFACE, settingsFrame([[4, 0]])];
    for (const id of [1, 3, 5, 7]) parts.push(headersFrame(id, true));
    sock.write(Buffer.concat(parts));
    const t0 = Date.now();
    while (budget.waiting + evicted.length < 4 && Date.now() - t0 < 2000) await new Promise((r) => setTimeout(r, 10));
    return sock;
  }

  it('above the response budget, evicts the streams stalled longest, oldest first; none before they stall', async () => {
    const budget = new ResponseBudget(350_000);
    const evicted: number[] = [];
    const sock = await fourBlockedStreams(budget, evicted);
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(evicted, [], 'a stream that just started waiting is not stalled');
    budget.enforce(Date.now() + STALLED_MS_MIN);
    assert.deepEqual(evicted, [1]);
    assert.ok(budget.bytes <= 350_000, `${budget.bytes} bytes queued`);
    assert.equal(budget.evicted, 1);
    sock.destroy();
    const t0 = Date.now();
    while (budget.bytes > 0 && Date.now() - t0 < 2000) await new Promise((r) => setTimeout(r, 10));
    assert.equal(budget.bytes, 0, 'a closed connection returns what it held');
    assert.equal(budget.waiting, 0);
  });

  it('far above the response budget (4x), evicts the oldest waiting streams without waiting for a stall', async () => {
    const budget = new ResponseBudget(90_000);
    const evicted: number[] = [];
    await fourBlockedStreams(budget, evicted);
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(evicted, [1]);
    assert.ok(budget.bytes <= 4 * 90_000, `${budget.bytes} bytes queued`);
  });

});
