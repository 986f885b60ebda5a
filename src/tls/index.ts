// TLS with etcd's flags: loading the files (config.ts) and client-certificate identity (identity.ts).
// Where TLS terminates: both ports in src/grpcserver/listener.ts (a tls.Server in front of the
// protocol routing; the peer port's wired in src/server/peer.ts). See docs/security.md "TLS".
export {
  TlsConfigError,
  loadTls,
  tlsServerOptions,
  grpcChannelCredentials,
  credentialsForUrl,
  selectClientAlpn,
  TLS_HANDSHAKE_TIMEOUT_MS,
} from './config';
export type { TlsFiles, TlsMaterial } from './config';
export { CERT_CN_METADATA_KEY, ConnectionIdentities, certIdentityHook, certCommonNameOf, gatewayCommonNameGuard, verifiedCommonName } from './identity';
