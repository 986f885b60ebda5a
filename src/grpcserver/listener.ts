// One client port for gRPC and HTTP, as etcd's cmux: every accepted connection is routed once, by
// its first bytes, either to the gRPC server (server.ts: the HTTP/2 client preface) or to a Node http.Server
// (anything else: /health, /version, /metrics and the JSON gateway under /v3/). The peer port
// is one too, without the HTTP side: a connection that is not HTTP/2 is closed.
//
// Cost on the gRPC path: one peek per connection (at most 24 bytes, usually the first read), then
// the socket belongs to the gRPC server's HTTP/2 session; no per-request work happens here.
//
// TLS (https:// listen URLs) terminates here, in front of the routing: a tls.Server (options from
// src/tls) whose 'secureConnection' handler calls routeAlpn(tlsSocket) on the decrypted stream.
// The gRPC server accepts any Duplex, so the gRPC side needs no credentials of its own. Any
// :authority is accepted (Go clients dialled with a URL send `http://host:port` there, which Go's
// server takes and nghttp2 refused: our own HTTP/2 framing, src/api/h2_conn.ts, takes it). A verified client
// certificate's CN is recorded per connection for the auth check (src/tls/identity.ts).
import net from 'node:net';
import tls from 'node:tls';
import type http from 'node:http';
import type { ConnectionIdentities } from '../tls';
import { assert } from '../util/assert';
import type { H2GrpcServer } from './server';

/** The HTTP/2 connection preface every gRPC client sends first (RFC 9113 §3.4). */
export const HTTP2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
/** A connection that has sent nothing routable for this long is dropped (it holds a socket). */
export const ROUTE_TIMEOUT_MS = 30_000;
/** Connections one listener holds at once (gRPC and HTTP together); Node closes those accepted
 *  above it (net.Server maxConnections). etcd has no such cap; each connection here costs a
 *  socket and its bounded buffers (h2_conn.ts CONN_BUFFER_BYTES_MAX). */
export const CONNECTIONS_PER_LISTENER_MAX = 10_000;
/** TLS handshakes one listener keeps in progress at once unless told otherwise (config's
 *  --max-tls-handshakes; etcd has no such bound). A handshake in progress costs a TLSSocket and
 *  OpenSSL's state (~15 KB measured: 3,000 silent connections took RSS from 108 to 152 MB). */
export const TLS_HANDSHAKES_MAX_DEFAULT = 1024;
/** Past the cap, a handshake running this long gives its place to the new connection (a client
 *  that stalls — sends no ClientHello, or finishes nothing — loses to one that arrives); younger
 *  ones are kept and the new connection is closed at once (a burst of real clients: those
 *  refused reconnect, those admitted finish). 256 and 1 s let 2 of 11 new clients fail under
 *  3,000 silent connections (they arrive in waves as their SYNs are retried, and every slot was
 *  young for a second after each); 1024 and 250 ms: none (docs/security.md). */
export const TLS_HANDSHAKE_STALLED_MS = 250;
/** How long stop() lets gRPC calls and HTTP responses finish before cutting connections. */
export const SHUTDOWN_GRACE_MS = 2000;
/** While close() waits for HTTP responses in flight: how often it closes the connections that
 *  became idle (a socket's close wakes it sooner). */
const HTTP_DRAIN_POLL_MS = 20;

function dropUnrouted(this: net.Socket): void {
  this.destroy();
}

/** A connection's addresses, the same on its raw socket and on the TLSSocket wrapping it. */
function tupleKey(s: net.Socket): string {
  return `${s.remoteAddress}|${s.remotePort}|${s.localAddress}|${s.localPort}`;
}

export interface ClientListenerOptions {
  grpc: H2GrpcServer;
  /** Where connections that are not HTTP/2 go; without it they are closed (the peer port). */
  http?: http.Server;
  /** For https:// URLs: the tls.Server options (src/tls tlsServerOptions). */
  tls?: tls.TlsOptions;
  /** Where verified client certificate CNs are recorded (only with --client-cert-auth). */
  identities?: ConnectionIdentities;
  /** A TLS handshake failed (no or untrusted client certificate, wrong protocol...). */
  onTlsError?: (err: Error, remote: string) => void;
  /** TLS handshakes in progress per listener (default TLS_HANDSHAKES_MAX_DEFAULT). */
  maxTlsHandshakes?: number;
  /** Connections closed because the handshakes in progress were at maxTlsHandshakes: called at
   *  the first and then at most once a second, with the count since the last call. */
  onHandshakesShed?: (count: number) => void;
}

export class ClientListener {
  private readonly servers: net.Server[] = [];
  /** Raw TCP sockets of TLS connections still in their handshake (closed with the listener), with
   *  when each was accepted and its tupleKey as then (the addresses are gone once it closes);
   *  oldest first (a Map keeps insertion order). */
  private readonly handshaking = new Map<net.Socket, { sinceMs: number; key: string | undefined }>();
  /** The same sockets by their connection's addresses (tupleKey), so that the TLSSocket whose
   *  handshake finished finds its raw socket in O(1): tls.Server hands over only the TLSSocket. */
  private readonly handshakingByTuple = new Map<string, net.Socket>();
  /** Connections shed at the handshake cap since the last report, and when that was. */
  private shedCount = 0;
  private shedReportedMs = 0;
  /** Sockets accepted but not yet routed (they belong to neither server yet). */
  private readonly unrouted = new Set<net.Socket>();
  /** Sockets handed to the HTTP server (Node does not wait for them in close() without a listen). */
  private readonly httpSockets = new Set<net.Socket>();
  /** close(): wakes its wait for the HTTP sockets when one of them closes. */
  private httpSocketClosed: (() => void) | undefined;
  private closed = false;

  constructor(private readonly o: ClientListenerOptions) {}

  /** TLS handshakes in progress, all listeners together. */
  get handshakesInProgress(): number {
    return this.handshaking.size;
  }

  /** Binds every listen URL ("http://host:port"); resolves with the bound ports. */
  async listen(urls: readonly string[]): Promise<number[]> {
    const ports: number[] = [];
    for (const u of urls) {
      const url = new URL(u);
      const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
      const s = url.protocol === 'https:' ? this.tlsServer(u) : net.createServer({ noDelay: true }, (socket) => this.accept(socket));
      s.maxConnections = CONNECTIONS_PER_LISTENER_MAX;
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(Number(url.port), host, () => (s.off('error', reject), resolve()));
      });
      this.servers.push(s);
      ports.push((s.address() as net.AddressInfo).port);
    }
    return ports;
  }

  private tlsServer(u: string): tls.Server {
    if (!this.o.tls) throw new Error(`--listen-client-urls ${u} is https but no --cert-file/--key-file were given`);
    const s = tls.createServer(this.o.tls, (socket) => {
      this.o.identities?.track(socket);
      this.accept(socket);
      if (!socket.destroyed) this.routeAlpn(socket);
    });
    // (tls.Server's own 'connection' listener, which wraps the socket in a TLSSocket, ran first:
    // destroying the raw socket ends that too.)
    s.on('connection', (raw: net.Socket) => {
      raw.setNoDelay(true);
      this.admitHandshake(raw);
    });
    // The handshake is over: the connection is now tracked as unrouted/grpc/http like a plain one.
    s.on('secureConnection', (socket: tls.TLSSocket) => {
      const raw = this.handshakingByTuple.get(tupleKey(socket));
      if (raw !== undefined) this.forgetHandshake(raw);
    });
    // (The address is gone when the client hung up itself.) Destroyed here: Node 20 reports a
    // handshake timeout (handshakeTimeout) this way but leaves the socket open, so a client that
    // never sends a ClientHello would hold its connection for good (measured: still open 8 s
    // after a 3 s timeout); the errors OpenSSL raises have destroyed it already.
    s.on('tlsClientError', (err: Error, socket: tls.TLSSocket) => {
      this.o.onTlsError?.(err, socket.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort}` : 'unknown');
      socket.destroy();
    });
    return s;
  }

  /** A TCP connection to a TLS listener, about to handshake: kept, unless maxTlsHandshakes are
   *  already in progress; then the oldest goes if it has stalled (TLS_HANDSHAKE_STALLED_MS), else
   *  this one. O(1): the oldest is the Map's first entry; the end of a handshake finds its socket
   *  by its addresses (handshakingByTuple). */
  private admitHandshake(raw: net.Socket): void {
    const now = Date.now();
    if (this.handshaking.size >= (this.o.maxTlsHandshakes ?? TLS_HANDSHAKES_MAX_DEFAULT)) {
      const [oldest, { sinceMs }] = this.handshaking.entries().next().value as [net.Socket, { sinceMs: number }];
      let shed = raw;
      if (now - sinceMs >= TLS_HANDSHAKE_STALLED_MS) {
        this.forgetHandshake(oldest);
        shed = oldest;
      }
      shed.destroy();
      this.shedCount++;
      if (now - this.shedReportedMs >= 1000) {
        this.shedReportedMs = now;
        this.o.onHandshakesShed?.(this.shedCount);
        this.shedCount = 0;
      }
      if (shed === raw) return;
    }
    // Two live TCP connections never share all four addresses; a socket already reset by its
    // client has none (it is not indexed: its close comes next and forgets it).
    const key = raw.remoteAddress === undefined ? undefined : tupleKey(raw);
    if (key !== undefined && !this.handshakingByTuple.has(key)) this.handshakingByTuple.set(key, raw);
    this.handshaking.set(raw, { sinceMs: now, key });
    raw.once('close', () => this.forgetHandshake(raw));
  }

  /** `raw` is no longer in its handshake (finished, shed, or closed). */
  private forgetHandshake(raw: net.Socket): void {
    const h = this.handshaking.get(raw);
    if (h === undefined) return;
    this.handshaking.delete(raw);
    if (h.key !== undefined && this.handshakingByTuple.get(h.key) === raw) this.handshakingByTuple.delete(h.key);
  }

  /** A new connection (plain, or TLS once its handshake is done): unrouted until its protocol is
   *  known. Plain ones are routed by their first bytes here; TLS ones by the caller (routeAlpn). */
  private accept(socket: net.Socket): void {
    if (this.closed) return void socket.destroy();
    this.unrouted.add(socket);
    socket.on('error', () => socket.destroy());
    socket.setTimeout(ROUTE_TIMEOUT_MS, dropUnrouted);
    socket.once('close', () => this.unrouted.delete(socket));
    if (!(socket instanceof tls.TLSSocket)) this.routeByPreface(socket);
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
      socket.unshift(head);
      this.handOver(socket, isH2Prefix ? 'grpc' : 'http');
    };
    socket.on('data', onData);
  }

  /** TLS: HTTP/1.1 by ALPN goes straight to HTTP; h2 (and clients without ALPN) are routed by
   *  their first decrypted bytes, as plain connections are. */
  routeAlpn(socket: tls.TLSSocket): void {
    if (socket.alpnProtocol === 'http/1.1') this.handOver(socket, 'http');
    else this.routeByPreface(socket);
  }

  private handOver(socket: net.Socket, to: 'grpc' | 'http'): void {
    this.unrouted.delete(socket);
    socket.setTimeout(0);
    socket.off('timeout', dropUnrouted);
    if (this.closed) return void socket.destroy();
    if (to === 'grpc') this.o.grpc.injectConnection(socket);
    else if (this.o.http === undefined) return void socket.destroy();
    else {
      this.httpSockets.add(socket);
      socket.once('close', () => (this.httpSockets.delete(socket), this.httpSocketClosed?.()));
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
    for (const s of this.handshaking.keys()) s.destroy();
    this.handshaking.clear();
    this.handshakingByTuple.clear();
    const listening = Promise.all(this.servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    const grpcClosed = this.o.grpc.close(graceMs);
    // HTTP: idle keep-alive connections go now; responses in flight get the grace period.
    this.o.http?.closeIdleConnections();
    // Woken by each socket's close (an idle one closes a turn after closeIdleConnections), else
    // every HTTP_DRAIN_POLL_MS: a response that finishes leaves its connection idle, closed here.
    const deadline = Date.now() + graceMs;
    while (this.httpSockets.size > 0 && Date.now() < deadline) {
      await new Promise<void>((r) => {
        const t = setTimeout(() => (this.httpSocketClosed = undefined, r()), Math.min(HTTP_DRAIN_POLL_MS, deadline - Date.now()));
        this.httpSocketClosed = () => (clearTimeout(t), this.httpSocketClosed = undefined, r());
      });
      this.o.http?.closeIdleConnections();
    }
    for (const s of this.httpSockets) s.destroy();
    await listening;
    await grpcClosed;
    assert(this.unrouted.size === 0, 'client listener: unrouted sockets after close');
  }
}
