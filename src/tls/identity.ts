// Client-certificate identity (etcd's AuthInfoFromTLS): with --client-cert-auth and auth enabled, a
// request that carries no token is made by the user named by the Common Name of the verified client
// certificate.
//
// How the CN reaches the auth check. The client port terminates TLS itself and hands the decrypted
// stream to the gRPC server (grpcserver/listener.ts, grpcserver/server.ts), which treats it as any
// Duplex. What it knows for every call is the connection's addresses (local and remote address and
// port, read from the stream it was given). A live TCP connection is uniquely named by that 4-tuple, so:
//   1. when a TLS handshake completes with a verified certificate, the listener records
//      4-tuple → CN here, and forgets it when the socket closes;
//   2. the client gRPC server's metadata hook, on every call, first deletes any
//      CERT_CN_METADATA_KEY the client sent itself (so it cannot be forged), then sets it from the
//      registry;
//   3. the auth gate (api/auth_service.ts callerOf) reads it (certCommonNameOf) when the request
//      has no token.
// The JSON gateway never sets the key (its calls' metadata is the token alone): etcd 3.4 refuses /v3/ requests whose certificate has a CN
// when client-cert auth and auth are on (gatewayCommonNameGuard below), and so do we.
import type net from 'node:net';
import type http from 'node:http';
import type tls from 'node:tls';
import { assert } from '../util/assert';

/** Metadata key carrying the verified certificate's CN to the handlers. Set only by the server. */
export const CERT_CN_METADATA_KEY = 'x-quorumkv-verified-cert-cn';

/** Bound on remembered connections (each is removed on close; this only guards against a leak). */
const IDENTITIES_MAX = 1_000_000;

function connectionKey(localAddress: string | undefined, localPort: number | undefined, remoteAddress: string | undefined, remotePort: number | undefined): string | undefined {
  if (!localAddress || !localPort || !remoteAddress || !remotePort) return undefined;
  return `${remoteAddress}|${remotePort}|${localAddress}|${localPort}`;
}

/** The verified CN of a TLS socket whose handshake succeeded, or undefined. */
export function verifiedCommonName(socket: tls.TLSSocket): string | undefined {
  if (!socket.authorized) return undefined;
  const cn = socket.getPeerCertificate()?.subject?.CN;
  // A subject may hold several CNs (Node then gives an array); etcd takes the certificate's
  // CommonName, which Go sets from the last one. Keep that.
  const name = Array.isArray(cn) ? cn[cn.length - 1] : cn;
  return typeof name === 'string' && name.length > 0 ? name : undefined;
}

/** Live client connections with a verified certificate CN, by their TCP 4-tuple. */
export class ConnectionIdentities {
  private readonly byConnection = new Map<string, string>();

  /** Records `socket`'s verified CN (if any) until it closes. */
  track(socket: tls.TLSSocket): void {
    const cn = verifiedCommonName(socket);
    const key = connectionKey(socket.localAddress, socket.localPort, socket.remoteAddress, socket.remotePort);
    if (cn === undefined || key === undefined) return;
    assert(this.byConnection.size < IDENTITIES_MAX, 'tls identities: more live connections than IDENTITIES_MAX');
    this.byConnection.set(key, cn);
    socket.once('close', () => this.byConnection.delete(key));
  }

  commonNameOf(info: { localAddress?: string; localPort?: number; remoteAddress?: string; remotePort?: number }): string | undefined {
    const key = connectionKey(info.localAddress, info.localPort, info.remoteAddress, info.remotePort);
    return key === undefined ? undefined : this.byConnection.get(key);
  }

  get size(): number {
    return this.byConnection.size;
  }
}

/** Step 2, run on every call's metadata (first text value by key) once the client gRPC server
 *  builds it (H2GrpcServer onMetadata): strips a client-sent CERT_CN_METADATA_KEY and, when
 *  `identities` is given (client-cert auth on), sets it from the connection's certificate. */
export function certIdentityHook(identities: ConnectionIdentities | undefined): (md: Map<string, string>, socket: { localAddress?: string; localPort?: number; remoteAddress?: string; remotePort?: number } | undefined) => void {
  return (md, socket) => {
    md.delete(CERT_CN_METADATA_KEY);
    const cn = socket ? identities?.commonNameOf(socket) : undefined;
    if (cn !== undefined) md.set(CERT_CN_METADATA_KEY, cn);
  };
}

/** The CN step 2 attached to a call's metadata, if any. */
export function certCommonNameOf(call: { metadata(key: string): string | undefined }): string | undefined {
  return call.metadata(CERT_CN_METADATA_KEY);
}

/** etcd 3.4's guard (embed/serve.go): with client-cert auth and auth enabled, a /v3/ gateway request
 *  whose verified certificate has a CN is answered 400, because the gateway cannot carry the CN to
 *  the auth check and etcd refuses rather than serve it as someone else. Wraps the HTTP server's
 *  request handlers. */
export function gatewayCommonNameGuard(server: http.Server, authEnabled: () => boolean): void {
  const handlers = server.listeners('request') as ((req: http.IncomingMessage, res: http.ServerResponse) => void)[];
  server.removeAllListeners('request');
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const sock = req.socket as net.Socket & Partial<tls.TLSSocket>;
    const path = req.url ?? '/';
    if (sock.encrypted && authEnabled() && /^\/v3(alpha|beta)?\//.test(path) && verifiedCommonName(sock as tls.TLSSocket) !== undefined) {
      const body = 'CommonName of client sending a request against gateway will be ignored and not used as expected\n';
      res.writeHead(400, { 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff', 'Content-Length': Buffer.byteLength(body) });
      return void res.end(body);
    }
    for (const h of handlers) h.call(server, req, res);
  });
}
