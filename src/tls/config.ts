// TLS material of one side of a member (clients or peers), loaded once from etcd's flags, and the
// three shapes the rest of the code needs it in:
//   - tls.Server options for the client port and the peer port (src/grpcserver/listener.ts
//     terminates TLS itself);
//   - grpc-js channel credentials for dialing peers (transport, bootstrap) and leader client URLs
//     (lease and member forwarding).
//
// etcd 3.4's rules, kept here:
//   - a client certificate is required when --client-cert-auth is set OR a --trusted-ca-file is
//     given (etcd verifies against the CA whenever one is configured; checked against 3.4.23: a
//     client without a certificate fails the handshake even without --client-cert-auth);
//   - the certificate's CN names the user only with --client-cert-auth (see identity.ts).
import fs from 'node:fs';
import tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';

/** The files and switches of one side, as given on the command line. */
export interface TlsFiles {
  certFile: string;
  keyFile: string;
  /** CA bundle that client (or peer) certificates must chain to; also what we trust when we dial. */
  trustedCaFile?: string;
  /** etcd's --client-cert-auth / --peer-client-cert-auth. */
  clientCertAuth: boolean;
}

/** The files read into memory (PEM). */
export interface TlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca: Buffer | undefined;
  /** Whether connecting clients must present a certificate that chains to `ca`. */
  readonly requireClientCert: boolean;
  /** Whether the verified certificate's CN authenticates the caller (client side only). */
  readonly commonNameAuth: boolean;
}

export class TlsConfigError extends Error {
  override name = 'TlsConfigError';
}

/** Reads the files and checks that the key matches the certificate, so that a bad pair fails at
 *  start-up with one line instead of on the first handshake. */
export function loadTls(files: TlsFiles, flagPrefix: '' | 'peer-'): TlsMaterial {
  const read = (flag: string, file: string): Buffer => {
    try {
      return fs.readFileSync(file);
    } catch (err) {
      throw new TlsConfigError(`cannot read --${flagPrefix}${flag}=${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  };
  const cert = read('cert-file', files.certFile);
  const key = read('key-file', files.keyFile);
  const ca = files.trustedCaFile !== undefined ? read('trusted-ca-file', files.trustedCaFile) : undefined;
  try {
    tls.createSecureContext({ cert, key, ca });
  } catch (err) {
    const why = (err as Error).message.split('\n')[0];
    throw new TlsConfigError(`invalid --${flagPrefix}cert-file/--${flagPrefix}key-file/--${flagPrefix}trusted-ca-file (${files.certFile}, ${files.keyFile}): ${why}`);
  }
  return { cert, key, ca, requireClientCert: files.clientCertAuth || ca !== undefined, commonNameAuth: files.clientCertAuth };
}

/**
 * ALPN on the client port. gRPC needs h2; the HTTP side (gateway, /health, /metrics) is an
 * HTTP/1.1 server, but curl and browsers offer ['h2', 'http/1.1'] and would get h2 if we simply
 * preferred it (etcd's Go server speaks both). gRPC clients (grpc-go, grpc-js, grpc-java) offer h2
 * alone, so: a client that offers http/1.1 gets http/1.1, one that offers only h2 gets h2. A client
 * that sends no ALPN is routed by its first bytes (listener.ts); one that offers only other
 * protocols is refused (no_application_protocol alert), as Go's server does.
 */
export function selectClientAlpn({ protocols }: { protocols: string[] }): string | undefined {
  if (protocols.includes('http/1.1')) return 'http/1.1';
  if (protocols.includes('h2')) return 'h2';
  return undefined;
}
/** A TLS client that has not finished its handshake by then is dropped (Node's default is 120 s). */
export const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;

/** Options for the tls.Server of the client port and of the peer port. */
export function tlsServerOptions(m: TlsMaterial): tls.TlsOptions {
  return {
    cert: m.cert,
    key: m.key,
    ca: m.ca,
    requestCert: m.requireClientCert,
    rejectUnauthorized: m.requireClientCert,
    ALPNCallback: selectClientAlpn,
    handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS,
    minVersion: 'TLSv1.2', // etcd 3.4's minimum
  };
}

/** Credentials for dialing a member with `m`'s files: our certificate as the client certificate
 *  (etcd does the same with its peer and client certs), the trusted CA (or the system's roots when
 *  none is given) to verify the server. The certificate needs extendedKeyUsage clientAuth when the
 *  other side verifies client certificates. */
export function grpcChannelCredentials(m: TlsMaterial): grpc.ChannelCredentials {
  return grpc.credentials.createSsl(m.ca ?? null, m.key, m.cert);
}

/** Credentials for `url` (http → insecure, https → TLS with `m`); throws for https without TLS. */
export function credentialsForUrl(url: string, m: TlsMaterial | undefined, what: string): grpc.ChannelCredentials {
  const https = new URL(url).protocol === 'https:';
  if (!https) return grpc.credentials.createInsecure();
  if (!m) throw new TlsConfigError(`${what} ${url} is https but this member has no TLS files to dial it with`);
  return grpcChannelCredentials(m);
}
