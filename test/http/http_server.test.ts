// The client port's HTTP/1.1 server under slow and greedy clients, in process with short limits:
// headers trickled byte by byte, a body left unfinished, a stream request left half-sent, an idle
// keep-alive connection, and pipelining deeper than PIPELINED_REQUESTS_MAX. Each client here is
// bounded (a few seconds at most) and every socket is destroyed at the end.
import assert from 'node:assert/strict';
import type http from 'node:http';
import net from 'node:net';
import type { Server } from '../../src/server/server';
import type { ServiceHandlers } from '../../src/api/services';
import type { BidiHandler, BidiListener } from '../../src/api/call';
import { JsonGateway } from '../../src/http/gateway';
import { createClientHttpServer, PIPELINED_REQUESTS_MAX } from '../../src/http/http_server';
import { Logger } from '../../src/util/log';
import { Registry } from 'prom-client';

const HEADERS_TIMEOUT_MS = 1000;
const BODY_TIMEOUT_MS = 500;
const KEEP_ALIVE_TIMEOUT_MS = 500;

/** A raw client: what it received, and when the server closed the connection. */
class RawClient {
  readonly socket: net.Socket;
  received = '';
  closedAt: number | undefined;
  readonly openedAt = Date.now();
  private readonly closed: Promise<void>;

  constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.on('data', (d: Buffer) => (this.received += d.toString('latin1')));
    this.socket.on('error', () => undefined); // a reset by the server is one of the outcomes
    this.closed = new Promise((resolve) => this.socket.on('close', () => ((this.closedAt = Date.now()), resolve())));
  }

  /** Resolves true if the server closed the connection within `ms`. */
  async closedWithin(ms: number): Promise<boolean> {
    let t: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => (t = setTimeout(() => resolve(false), ms)));
    const r = await Promise.race([this.closed.then(() => true as const), timeout]);
    clearTimeout(t);
    return r;
  }

  /** Writes `text` one byte every `intervalMs` until the connection closes or `maxMs` passes. */
  async trickle(text: string, intervalMs: number, maxMs: number): Promise<void> {
    const end = Date.now() + maxMs;
    for (let i = 0; this.closedAt === undefined && Date.now() < end; i = (i + 1) % text.length) {
      this.socket.write(text[i]!);
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  }
}

describe('client HTTP server: slow and greedy HTTP/1.1 clients', function () {
  this.timeout(20_000);
  let server: http.Server;
  let port: number;
  const clients: RawClient[] = [];
  const client = () => {
    const c = new RawClient(port);
    clients.push(c);
    return c;
  };

  before(async () => {
    // KV Range never answers (a read waiting on the leader); Watch answers each request.
    const services: Record<string, ServiceHandlers> = {
      'etcdserverpb.KV': { Range: () => undefined },
      'etcdserverpb.Watch': {
        Watch: ((call): BidiListener<unknown> => ({
          message: () => void call.write({ watch_id: 1, created: true }),
          halfClosed: () => undefined,
        })) as BidiHandler<unknown, unknown>,
      },
    };
    const gateway = new JsonGateway({ services, maxRequestBytes: 1 << 20, maxTxnOps: 128, log: new Logger('error'), bodyTimeoutMs: BODY_TIMEOUT_MS });
    server = createClientHttpServer({ server: {} as Server, gateway, metrics: new Registry(), version: '3.4.0', headersTimeoutMs: HEADERS_TIMEOUT_MS, keepAliveTimeoutMs: KEEP_ALIVE_TIMEOUT_MS });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as net.AddressInfo).port;
  });

  after(async () => {
    for (const c of clients) c.socket.destroy();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('headers trickled one byte at a time: 408 and closed within the headers timeout', async () => {
    const c = client();
    await c.trickle('POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nX-Slow: ' + 'a'.repeat(1000), 50, 5000);
    assert.ok(c.closedAt !== undefined, 'still open after 5 s');
    assert.ok(c.closedAt - c.openedAt < HEADERS_TIMEOUT_MS + 2000, `closed after ${c.closedAt - c.openedAt} ms`);
    assert.match(c.received, /^HTTP\/1\.1 408/);
  });

  it('a unary body left unfinished: 504 and closed within the body timeout', async () => {
    const c = client();
    c.socket.write('POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"key":');
    assert.ok(await c.closedWithin(BODY_TIMEOUT_MS + 2000));
    assert.match(c.received, /^HTTP\/1\.1 504/);
    assert.match(c.received, /request body not received within 500 ms/);
  });

  it('a stream: idle between requests stays open; a request left half-sent ends it', async () => {
    const c = client();
    c.socket.write('POST /v3/watch HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n');
    const chunk = (s: string) => c.socket.write(`${Buffer.byteLength(s).toString(16)}\r\n${s}\r\n`);
    chunk('{"create_request":{"key":"YQ=="}}');
    assert.equal(await c.closedWithin(BODY_TIMEOUT_MS * 3), false, 'an idle stream must stay open');
    assert.match(c.received, /"created":true/);
    chunk('{"create_request":{"key":"YQ=');
    assert.ok(await c.closedWithin(BODY_TIMEOUT_MS + 2000));
    assert.match(c.received, /request body not received within 500 ms/);
  });

  it('an idle keep-alive connection is closed after the keep-alive timeout', async () => {
    const c = client();
    c.socket.write('POST /v3/nosuch HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n');
    assert.ok(await c.closedWithin(KEEP_ALIVE_TIMEOUT_MS + 2000));
    assert.match(c.received, /^HTTP\/1\.1 404/);
  });

  it(`pipelining: ${PIPELINED_REQUESTS_MAX} requests in flight are held, one more closes the connection`, async () => {
    const req = 'POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}';
    const ok = client();
    ok.socket.write(req.repeat(PIPELINED_REQUESTS_MAX));
    assert.equal(await ok.closedWithin(300), false);
    const greedy = client();
    greedy.socket.write(req.repeat(PIPELINED_REQUESTS_MAX + 1));
    assert.ok(await greedy.closedWithin(1000));
  });
});
