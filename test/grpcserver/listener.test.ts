// The client-port mux in-process: a gRPC call and HTTP requests on one port, the HTTP/2 preface
// arriving a byte at a time, HTTP split into tiny writes, and shutdown with connections open.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { ClientListener, HTTP2_PREFACE } from '../../src/grpcserver/listener';
import { grpcDefinitions, serviceDefinition } from '../../src/proto';
import { H2GrpcServer } from '../../src/grpcserver/server';
import type { ServerStreamCall, UnaryCall } from '../../src/grpcserver/call';

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
