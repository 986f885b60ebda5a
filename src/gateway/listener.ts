// One client port for gRPC and HTTP, as etcd's cmux: every accepted connection is routed once, by
// its first bytes, either to grpc-js (the HTTP/2 client preface) or to a Node http.Server
// (anything else: /health, /version, /metrics and the JSON gateway under /v3/).
//
// Cost on the gRPC path: one peek per connection (at most 24 bytes, usually the first read), then
// the socket belongs to grpc-js's HTTP/2 session; no per-request work happens here.
//
// TLS (not built yet) slots in front of route(): a tls.Server with ALPNProtocols ['h2', 'http/1.1']
// whose 'secureConnection' handler calls routeAlpn(tlsSocket): 'h2' goes to gRPC, anything else
// to HTTP (a client without ALPN falls back to routeByPreface on the decrypted stream). grpc-js
// accepts any Duplex through the injector, so the gRPC side needs no credentials of its own.
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { admitGrpcConnection } from './h2_authority';
import type http from 'node:http';
import type tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { assert } from '../util/assert';

/** The HTTP/2 connection preface every gRPC client sends first (RFC 9113 §3.4). */
export const HTTP2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
/** A connection that has sent nothing routable for this long is dropped (it holds a socket). */
export const ROUTE_TIMEOUT_MS = 30_000;
/** How long stop() lets gRPC calls and HTTP responses finish before cutting connections. */
export const SHUTDOWN_GRACE_MS = 2000;

function dropUnrouted(this: net.Socket): void {
  this.destroy();
}

export interface ClientListenerOptions {
  grpc: grpc.Server;
  http: http.Server;
}

export class ClientListener {
  private readonly servers: net.Server[] = [];
  /** Sockets accepted but not yet routed (they belong to neither server yet). */
  private readonly unrouted = new Set<net.Socket>();
  /** Sockets handed to the HTTP server (Node does not wait for them in close() without a listen). */
  private readonly httpSockets = new Set<net.Socket>();
  private readonly injector: grpc.ConnectionInjector;
  private closed = false;

  constructor(private readonly o: ClientListenerOptions) {
    this.injector = o.grpc.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  }

  /** Binds every listen URL ("http://host:port"); resolves with the bound ports. */
  async listen(urls: readonly string[]): Promise<number[]> {
    const ports: number[] = [];
    for (const u of urls) {
      const url = new URL(u);
      if (url.protocol !== 'http:') throw new Error(`--listen-client-urls ${u}: only http:// is supported (TLS is not built yet)`);
      const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
      const s = net.createServer({ noDelay: true }, (socket) => this.accept(socket));
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(Number(url.port), host, () => (s.off('error', reject), resolve()));
      });
      this.servers.push(s);
      ports.push((s.address() as net.AddressInfo).port);
    }
    return ports;
  }

  private accept(socket: net.Socket): void {
    if (this.closed) return void socket.destroy();
    this.unrouted.add(socket);
    socket.on('error', () => socket.destroy());
    socket.setTimeout(ROUTE_TIMEOUT_MS, dropUnrouted);
    socket.once('close', () => this.unrouted.delete(socket));
    this.routeByPreface(socket);
  }

  /** Reads until the first bytes decide the protocol, puts them back, and hands the socket over. */
  routeByPreface(socket: net.Socket | tls.TLSSocket): void {
    let head: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      const n = Math.min(head.length, HTTP2_PREFACE.length);
      const isH2Prefix = head.subarray(0, n).equals(HTTP2_PREFACE.subarray(0, n));
      if (isH2Prefix && n < HTTP2_PREFACE.length) return; // a prefix of the preface: wait for more
      socket.off('data', onData);
      socket.pause();
      if (isH2Prefix) {
        // gRPC: first look at the client's :authority (see h2_authority.ts), then hand over the
        // socket itself or, for clients that put a URL there, a rewriting wrapper.
        admitGrpcConnection(socket, head).then(
          (conn) => this.handOver(socket, 'grpc', conn),
          () => socket.destroy(),
        );
        return;
      }
      socket.unshift(head);
      this.handOver(socket, 'http');
    };
    socket.on('data', onData);
  }

  /** For the TLS listener to come: route by the protocol ALPN agreed on. */
  routeAlpn(socket: tls.TLSSocket): void {
    if (socket.alpnProtocol === 'h2') this.handOver(socket, 'grpc');
    else if (socket.alpnProtocol === 'http/1.1') this.handOver(socket, 'http');
    else this.routeByPreface(socket);
  }

  private handOver(socket: net.Socket, to: 'grpc' | 'http', conn: Duplex = socket): void {
    this.unrouted.delete(socket);
    socket.setTimeout(0);
    socket.off('timeout', dropUnrouted);
    if (this.closed) return void socket.destroy();
    if (to === 'grpc') this.injector.injectConnection(conn);
    else {
      this.httpSockets.add(socket);
      socket.once('close', () => this.httpSockets.delete(socket));
      this.o.http.emit('connection', socket);
    }
    // Both servers attach their readers synchronously; the bytes put back are delivered first.
    process.nextTick(() => socket.resume());
  }

  /** Stops accepting, lets in-flight work finish for a grace period, then closes everything. */
  async close(graceMs = SHUTDOWN_GRACE_MS): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.unrouted) s.destroy();
    this.unrouted.clear();
    const listening = Promise.all(this.servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    this.injector.drain(graceMs);
    // HTTP: idle keep-alive connections go now; responses in flight get the grace period.
    this.o.http.closeIdleConnections();
    const deadline = Date.now() + graceMs;
    while (this.httpSockets.size > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
      this.o.http.closeIdleConnections();
    }
    for (const s of this.httpSockets) s.destroy();
    await listening;
    this.injector.destroy();
    assert(this.unrouted.size === 0, 'client listener: unrouted sockets after close');
  }
}
