// TLS with etcd's flags: loading the files (config.ts) and client-certificate identity (identity.ts).
// Where TLS terminates: the client port in src/gateway/listener.ts (a tls.Server in front of the
// protocol routing), the peer port in src/server/peer.ts (grpc-js server credentials). See
// docs/security.md "TLS".
export {
  TlsConfigError,
  loadTls,
  tlsServerOptions,
  grpcServerCredentials,
  grpcChannelCredentials,
  credentialsForUrl,
  selectClientAlpn,
  TLS_HANDSHAKE_TIMEOUT_MS,
} from './config';
export type { TlsFiles, TlsMaterial } from './config';
export { CERT_CN_METADATA_KEY, ConnectionIdentities, certIdentityHook, certCommonNameOf, gatewayCommonNameGuard, verifiedCommonName } from './identity';
