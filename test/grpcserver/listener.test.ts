// The client-port mux in-process: a gRPC call and HTTP requests on one port, the HTTP/2 preface
// arriving a byte at a time, HTTP split into tiny writes, and shutdown with connections open.
import assert from 'node:assert/strict';
import http from 'node:http';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { ClientListener, HTTP2_PREFACE, TLS_HANDSHAKE_STALLED_MS } from '../../src/grpcserver/listener';
import { grpcDefinitions, serviceDefinition } from '../../src/proto';
import { H2GrpcServer } from '../../src/grpcserver/server';
import type { ServerStreamCall, UnaryCall } from '../../src/grpcserver/call';
import { hasOpenssl, makeTestCerts, removeTestCerts, type TestCerts } from '../integration/tls_certs';
import { until } from '../until';

type HealthClient = grpc.Client & { Check(req: object, cb: (err: grpc.ServiceError | null, res: { status: number }) => void): void };

describe('client port mux (gRPC and HTTP on one port)', () => {
  let g: H2GrpcServer;
  let httpServer: http.Server;
  let listener: ClientListener;
  let port: number;

  beforeEach(async () => {
    g = new H2GrpcServer({ maxReceiveBytes: 1024 * 1024 });
    g.addService(serviceDefinition('grpc.health.v1.Health'), {
      Check: (c: UnaryCall<object, object>) => c.respond({ status: 1 }),
      Watch: (c: ServerStreamCall<object, object>) => c.fail({ code: grpc.status.UNIMPLEMENTED, message: 'no' }),
    });
    httpServer = http.createServer((req, res) => res.end(`hello ${req.url}`));
    listener = new ClientListener({ grpc: g, http: httpServer });
    [port] = await listener.listen(['http://127.0.0.1:0']);
  });
  afterEach(async () => {
    await listener.close(200);
    g.destroy();
  });

  const healthCheck = (): Promise<number> => {
    const Ctor = (grpcDefinitions().grpc as any).health.v1.Health as new (a: string, c: grpc.ChannelCredentials) => HealthClient;  
    const c = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    return new Promise((resolve, reject) => c.Check({}, (err, res) => (c.close(), err ? reject(err) : resolve(res.status))));
  };

  it('serves a gRPC call and HTTP requests on the same port', async () => {
    assert.equal(await healthCheck(), 1);
    assert.equal(await (await fetch(`http://127.0.0.1:${port}/x`)).text(), 'hello /x');
    assert.equal(await healthCheck(), 1);
  });

  it('routes by the preface even when it arrives a byte at a time; HTTP split into tiny writes works', async () => {
    const h2 = await new Promise<Buffer>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        void (async () => {
          for (const b of HTTP2_PREFACE) {
            s.write(Buffer.from([b]));
            await new Promise((r) => setTimeout(r, 1));
          }
          // An empty SETTINGS frame: the server answers with its own SETTINGS (type 4).
          s.write(Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]));
        })();
      });
      s.once('data', (d) => (s.destroy(), resolve(d)));
    });
    assert.equal(h2[3], 4, 'an HTTP/2 SETTINGS frame came back');
    const reply = await new Promise<string>((resolve) => {
      let out = '';
      const s = net.connect(port, '127.0.0.1', () => {
        void (async () => {
          for (const ch of 'GET /tiny HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n') {
            s.write(ch);
            await new Promise((r) => setTimeout(r, 1));
          }
        })();
      });
      s.on('data', (d) => (out += d));
      s.on('close', () => resolve(out));
    });
    assert.match(reply, /^HTTP\/1\.1 200/);
    assert.match(reply, /hello \/tiny$/);
  });

  it('without an HTTP server (the peer port) closes a connection that is not HTTP/2, and still serves gRPC', async () => {
    const grpcOnly = new ClientListener({ grpc: g });
    const [p] = await grpcOnly.listen(['http://127.0.0.1:0']);
    try {
      const got = await new Promise<{ bytes: number; closed: boolean }>((resolve) => {
        let bytes = 0;
        const s = net.connect(p!, '127.0.0.1', () => s.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n'));
        s.on('data', (d: Buffer) => (bytes += d.length));
        s.on('error', () => undefined);
        s.on('close', () => resolve({ bytes, closed: true }));
        setTimeout(() => (s.destroy(), resolve({ bytes, closed: false })), 2000).unref();
      });
      assert.deepEqual(got, { bytes: 0, closed: true });
      const Ctor = (grpcDefinitions().grpc as any).health.v1.Health as new (a: string, c: grpc.ChannelCredentials) => HealthClient;
      const c = new Ctor(`127.0.0.1:${p}`, grpc.credentials.createInsecure());
      assert.equal(await new Promise<number>((resolve, reject) => c.Check({}, (err, res) => (c.close(), err ? reject(err) : resolve(res.status)))), 1);
    } finally {
      await grpcOnly.close(0);
    }
  });

  it('close() ends silent connections and open HTTP responses within the grace period', async () => {
    const silent = net.connect(port, '127.0.0.1');
    const silentClosed = new Promise((r) => silent.on('close', r));
    await new Promise((r) => silent.on('connect', r));
    httpServer.removeAllListeners('request');
    httpServer.on('request', (_req, res) => res.write('never ends'));
    const open = net.connect(port, '127.0.0.1', () => open.write('GET /hang HTTP/1.1\r\nHost: a\r\n\r\n'));
    const openClosed = new Promise((r) => open.on('close', r));
    open.on('error', () => undefined);
    await new Promise((r) => open.once('data', r));
    const t0 = Date.now();
    await listener.close(200);
    await Promise.all([silentClosed, openClosed]);
    assert.ok(Date.now() - t0 < 2000);
    await assert.rejects(fetch(`http://127.0.0.1:${port}/`));
  });
});

describe('TLS client listener under a handshake flood (--max-tls-handshakes, --tls-handshake-timeout)', function () {
  this.timeout(20_000);
  let certs: TestCerts | undefined;
  let g: H2GrpcServer;
  let listener: ClientListener;
  const sockets: net.Socket[] = [];

  before(function () {
    if (!hasOpenssl()) this.skip();
    certs = makeTestCerts();
  });
  after(() => removeTestCerts(certs));
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    await listener?.close(0);
    g?.destroy();
  });

  it('a finished handshake gives its place back at once: 12 clients one after another through a cap of 2, connections kept open', async () => {
    const shed: number[] = [];
    g = new H2GrpcServer({ maxReceiveBytes: 1024 * 1024 });
    listener = new ClientListener({
      grpc: g,
      http: http.createServer(),
      tls: { cert: fs.readFileSync(certs!.server.cert), key: fs.readFileSync(certs!.server.key) },
      maxTlsHandshakes: 2,
      onHandshakesShed: (n) => shed.push(n),
    });
    const [port] = await listener.listen(['https://127.0.0.1:0']);
    for (let i = 0; i < 12; i++) {
      const c = tls.connect({ host: '127.0.0.1', port: port!, ca: fs.readFileSync(certs!.ca), ALPNProtocols: ['h2'] });
      sockets.push(c);
      await new Promise<void>((resolve, reject) => (c.once('secureConnect', resolve), c.once('error', reject)));
    }
    await until(() => listener.handshakesInProgress === 0, 1000);
    assert.deepEqual(shed, [], 'no connection was shed');
    assert.ok(sockets.slice(-12).every((c) => !c.destroyed), 'every client kept its connection');
  });

  it('keeps at most the cap of handshakes in progress, gives a stalled one\'s place to a new client, and drops the rest at the timeout', async () => {
    const CAP = 8;
    const TIMEOUT_MS = 3000;
    const shed: number[] = [];
    g = new H2GrpcServer({ maxReceiveBytes: 1024 * 1024 });
    listener = new ClientListener({
      grpc: g,
      http: http.createServer(),
      tls: { cert: fs.readFileSync(certs!.server.cert), key: fs.readFileSync(certs!.server.key), handshakeTimeout: TIMEOUT_MS },
      maxTlsHandshakes: CAP,
      onHandshakesShed: (n) => shed.push(n),
    });
    const [port] = await listener.listen(['https://127.0.0.1:0']);
    // 20 TCP connections that never send a ClientHello, all within a few ms (none has stalled yet).
    const t0 = Date.now();
    const closedAt = new Map<net.Socket, number>();
    for (let i = 0; i < 20; i++) {
      const s = net.connect(port!, '127.0.0.1');
      s.on('error', () => undefined);
      s.on('close', () => closedAt.set(s, Date.now() - t0));
      sockets.push(s);
      await new Promise((r) => s.once('connect', r));
    }
    const connectMs = Date.now() - t0;
    await until(() => closedAt.size >= 20 - CAP, 2000);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(closedAt.size, 20 - CAP, 'one connection closed per connection above the cap');
    // (On a machine so loaded that connecting took longer than the stall age, the oldest went instead.)
    if (connectMs < TLS_HANDSHAKE_STALLED_MS) assert.ok(sockets.slice(0, CAP).every((s) => !closedAt.has(s)), 'the oldest were kept (none had stalled)');
    assert.deepEqual(shed.slice(0, 1), [1], 'reported at the first');
    // Once the held ones have stalled, a real client takes the oldest one's place.
    await new Promise((r) => setTimeout(r, Math.max(0, TLS_HANDSHAKE_STALLED_MS + 100 - (Date.now() - t0))));
    const oldest = sockets.find((s) => !closedAt.has(s))!;
    const ok = tls.connect({ host: '127.0.0.1', port: port!, ca: fs.readFileSync(certs!.ca), ALPNProtocols: ['h2'] });
    sockets.push(ok);
    await new Promise<void>((resolve, reject) => (ok.once('secureConnect', resolve), ok.once('error', reject)));
    await until(() => closedAt.has(oldest), 1000);
    assert.equal(closedAt.size, 20 - CAP + 1, 'one stalled handshake (the oldest) gave its place');
    assert.equal(listener.handshakesInProgress, CAP - 1, 'the finished handshake no longer holds a place');
    // The rest are dropped at the handshake timeout (Node's default would be 120 s).
    await until(() => closedAt.size === 20, TIMEOUT_MS + 2000);
    const last = Math.max(...closedAt.values());
    assert.ok(last >= TIMEOUT_MS - 100 && last < TIMEOUT_MS + 2000, `the last silent connection closed after ${last} ms`);
    assert.equal(ok.destroyed, false, 'the finished handshake is not affected');
  });
});

