// The HTTP/1.1 side of the client port: /health, /version, /metrics and the JSON gateway (/v3/),
// answering as etcd 3.4 does (status codes, bodies and content types checked against etcd 3.4.23).
import http from 'node:http';
import type { Server } from '../server/server';
import { AlarmType } from '../server/alarms';
import type { Registry } from 'prom-client';
import { CORS_HEADERS, type JsonGateway } from './gateway';
import { GATEWAY_ROUTES } from './routes';

/** etcd's /health gives its quorum read one second. */
export const HEALTH_READ_TIMEOUT_MS = 1000;
/** A request's headers must arrive within this time of its first byte (slow-loris bound). Node
 *  checks it every CONNECTIONS_CHECK_INTERVAL_MS. The body has its own bound (gateway.ts
 *  BODY_TIMEOUT_MS): Node's requestTimeout cannot be used, as it would also end a watch or
 *  keepalive stream, whose request body lasts as long as the stream. */
export const HEADERS_TIMEOUT_MS = 10_000;
const CONNECTIONS_CHECK_INTERVAL_MS = 1000;
/** An idle keep-alive connection is closed after this (Node's default, made explicit). */
export const KEEP_ALIVE_TIMEOUT_MS = 5000;
/** Requests of one connection in flight at once (HTTP/1.1 pipelining): Node parses pipelined
 *  requests as they come and queues their responses, so without a bound one connection could
 *  start any number of calls. A client that pipelines deeper is disconnected. */
export const PIPELINED_REQUESTS_MAX = 16;

export interface ClientHttpOptions {
  server: Server;
  gateway: JsonGateway;
  metrics: Registry;
  /** What /version reports for both the server and the cluster. */
  version: string;
  /** Overrides of HEADERS_TIMEOUT_MS and KEEP_ALIVE_TIMEOUT_MS (tests). */
  headersTimeoutMs?: number;
  keepAliveTimeoutMs?: number;
}

/** etcd 3.4's /health: a leader, no alarm, and a quorum read that completes within a second. */
export async function isHealthy(server: Server): Promise<boolean> {
  if (!server.healthy) return false;
  if (server.alarms.get(0n, AlarmType.NONE).length > 0) return false;
  if (server.raftStatus().leader === 0n) return false;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), HEALTH_READ_TIMEOUT_MS)));
  const read = server.linearizableRead().then(
    () => true,
    () => false,
  );
  try {
    return await Promise.race([read, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function text(res: http.ServerResponse, status: number, body: string, extra: http.OutgoingHttpHeaders = {}): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body), ...CORS_HEADERS, ...extra });
  res.end(body);
}

function methodNotAllowed(res: http.ServerResponse, allow: string): void {
  text(res, 405, 'Method Not Allowed\n', { Allow: allow, 'X-Content-Type-Options': 'nosniff' });
}

export function createClientHttpServer(o: ClientHttpOptions): http.Server {
  const versionBody = JSON.stringify({ etcdserver: o.version, etcdcluster: o.version });
  const inFlight = new WeakMap<object, number>();
  const s = http.createServer(
    {
      requestTimeout: 0,
      headersTimeout: o.headersTimeoutMs ?? HEADERS_TIMEOUT_MS,
      keepAliveTimeout: o.keepAliveTimeoutMs ?? KEEP_ALIVE_TIMEOUT_MS,
      connectionsCheckingInterval: CONNECTIONS_CHECK_INTERVAL_MS,
    },
    (req, res) => {
      const socket = req.socket;
      const n = (inFlight.get(socket) ?? 0) + 1;
      if (n > PIPELINED_REQUESTS_MAX) return void socket.destroy();
      inFlight.set(socket, n);
      res.once('close', () => inFlight.set(socket, (inFlight.get(socket) ?? 1) - 1));
      serveRequest(req, res);
    },
  );
  function serveRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    let p = q < 0 ? url : url.slice(0, q);
    if (req.method === 'OPTIONS') return text(res, 200, ''); // CORS preflight, as etcd
    if (p === '/health') {
      if (req.method !== 'GET') return methodNotAllowed(res, 'GET');
      void isHealthy(o.server).then((ok) => (ok ? text(res, 200, '{"health":"true"}') : text(res, 503, '{"health":"false"}\n', { 'X-Content-Type-Options': 'nosniff' })));
      return;
    }
    if (p === '/version') {
      if (req.method !== 'GET' && req.method !== 'HEAD') return methodNotAllowed(res, 'GET, HEAD');
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(versionBody), ...CORS_HEADERS });
      return void res.end(versionBody);
    }
    if (p === '/metrics') {
      o.metrics.metrics().then(
        (body) => text(res, 200, body, { 'Content-Type': o.metrics.contentType }),
        (err) => text(res, 500, `metrics: ${String(err)}\n`),
      );
      return;
    }
    // etcd 3.4 still serves the gateway under its pre-3.4 prefixes too.
    if (p.startsWith('/v3beta/')) p = '/v3/' + p.slice(8);
    else if (p.startsWith('/v3alpha/')) p = '/v3/' + p.slice(9);
    const route = GATEWAY_ROUTES.get(p);
    if (route) {
      if (req.method !== 'POST') return methodNotAllowed(res, 'POST');
      return o.gateway.serve(req, res, route);
    }
    text(res, 404, p.startsWith('/v3/') ? 'Not Found\n' : '404 page not found\n', { 'X-Content-Type-Options': 'nosniff' });
  }
  // A malformed request gets 400, headers too slow 408, and the connection is closed (Node's
  // defaults, made explicit so that no error escapes).
  s.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
    if (socket.writable) socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    else socket.destroy();
  });
  return s;
}
