// Loads our .proto files (proto/ at the repo root) once per process: the gRPC service definitions
// through @grpc/proto-loader, and a protobufjs Root for messages we encode ourselves (the Raft log
// entry payload, InternalRequest).
import path from 'node:path';
import * as protoLoader from '@grpc/proto-loader';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';

/** proto/ at the repository root; this file runs from dist/src/proto/. */
export const PROTO_DIR = path.resolve(__dirname, '..', '..', '..', 'proto');

export const PROTO_FILES = [
  'etcdserverpb/rpc.proto',
  'v3electionpb/v3election.proto',
  'v3lockpb/v3lock.proto',
  'grpc/health/v1/health.proto',
  'quorumkv/peer.proto',
];

/** Conversion options shared by the gRPC layer and our own codec, so that request objects look the
 *  same whether they came from a client or from the log: field names as in the .proto files, int64
 *  as decimal strings (lease and member IDs are uint64 and must not lose precision), bytes as
 *  Buffers, enums as numbers, defaults filled in, and oneof members named by a virtual field. */
export const CONVERSION = {
  keepCase: true,
  longs: String,
  enums: Number,
  bytes: Buffer,
  defaults: true,
  oneofs: true,
} as const;

let grpcObject: grpc.GrpcObject | undefined;
let root: protobuf.Root | undefined;

export function grpcDefinitions(): grpc.GrpcObject {
  if (!grpcObject) {
    const def = protoLoader.loadSync(PROTO_FILES, { ...CONVERSION, includeDirs: [PROTO_DIR] });
    grpcObject = grpc.loadPackageDefinition(def);
  }
  return grpcObject;
}

export function protoRoot(): protobuf.Root {
  if (!root) {
    const r = new protobuf.Root();
    r.resolvePath = (_origin, target) => (path.isAbsolute(target) ? target : path.join(PROTO_DIR, target));
    // One parse for every user of these messages (our codecs and the JSON gateway): rpc.proto
    // parsed once per process instead of once per user (a member's start, docs/performance.md).
    r.loadSync(['etcdserverpb/rpc.proto', 'v3electionpb/v3election.proto', 'v3lockpb/v3lock.proto', 'quorumkv/internal.proto'], { keepCase: true });
    r.resolveAll();
    root = r;
  }
  return root;
}

/** The service definition (method table) of a fully qualified service, e.g. "etcdserverpb.KV". */
export function serviceDefinition(fullName: string): grpc.ServiceDefinition {
  let node: unknown = grpcDefinitions();
  for (const part of fullName.split('.')) node = (node as Record<string, unknown>)[part];
  const ctor = node as { service?: grpc.ServiceDefinition } | undefined;
  if (!ctor || !ctor.service) throw new Error(`service ${fullName} not found in ${PROTO_DIR}`);
  return ctor.service;
}
