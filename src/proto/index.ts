// Loads our .proto files (proto/ at the repo root) once per process: one protobufjs Root for the
// messages we encode ourselves (the Raft log entry payload, InternalRequest), the JSON gateway and
// the gRPC service tables built from it; and, for clients, the package object of
// @grpc/proto-loader.
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { lazyModule } from '../util/lazy_module';
import { decodePutRequest, encodePutResponse } from './put_codec';

/** Loaded only by grpcDefinitions() (clients): a member builds its tables without it. */
// eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded on first use (util/lazy_module.ts)
const protoLoader = lazyModule(() => require('@grpc/proto-loader') as typeof import('@grpc/proto-loader'));

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
let services: Map<string, grpc.ServiceDefinition> | undefined;

/** The gRPC package object of every .proto file through @grpc/proto-loader (message descriptors
 *  included): for clients (scripts, tests). A member uses serviceDefinitions(), built without it. */
export function grpcDefinitions(): grpc.GrpcObject {
  if (!grpcObject) {
    const def = protoLoader().loadSync(PROTO_FILES, { ...CONVERSION, includeDirs: [PROTO_DIR] });
    grpcObject = grpc.loadPackageDefinition(def);
  }
  return grpcObject;
}

/** One protobufjs root of every .proto file a member uses (our codecs, the JSON gateway, the
 *  service tables): each file parsed once per process. */
export function protoRoot(): protobuf.Root {
  if (!root) {
    const r = new protobuf.Root();
    r.resolvePath = (_origin, target) => (path.isAbsolute(target) ? target : path.join(PROTO_DIR, target));
    r.loadSync([...PROTO_FILES, 'quorumkv/internal.proto'], { keepCase: true });
    r.resolveAll();
    root = r;
  }
  return root;
}

/**
 * Every service's method table, built from protoRoot() the way @grpc/proto-loader builds it (path,
 * streaming flags, serializers: fromObject + encode, deserializers: decode + toObject with
 * CONVERSION, originalName) but without a descriptor of every message: at a member's start,
 * proto-loader's second parse of the files and its descriptors cost ~100 ms (docs/performance.md
 * "start"). test/proto/proto.test.ts checks that both agree.
 */
export function serviceDefinitions(): ReadonlyMap<string, grpc.ServiceDefinition> {
  if (!services) {
    const out = new Map<string, grpc.ServiceDefinition>();
    const walk = (ns: protobuf.NamespaceBase): void => {
      for (const obj of ns.nestedArray) {
        if (obj instanceof protobuf.Service) out.set(obj.fullName.slice(1), serviceTable(obj));
        else if (obj instanceof protobuf.Namespace) walk(obj);
      }
    };
    walk(protoRoot());
    services = out;
  }
  return services;
}

function serviceTable(service: protobuf.Service): grpc.ServiceDefinition {
  const table: Record<string, grpc.MethodDefinition<object, object>> = {};
  for (const m of service.methodsArray) {
    const req = m.resolvedRequestType!;
    const res = m.resolvedResponseType!;
    table[m.name] = {
      path: `/${service.fullName.slice(1)}/${m.name}`,
      requestStream: m.requestStream === true,
      responseStream: m.responseStream === true,
      requestSerialize: serializer(req),
      requestDeserialize: deserializer(req),
      responseSerialize: serializer(res),
      responseDeserialize: deserializer(res),
      originalName: camelCase(m.name),
    };
  }
  return table as grpc.ServiceDefinition;
}

/** lodash's camelCase of a method name, as proto-loader names originalName ("HashKV" → "hashKv"). */
function camelCase(name: string): string {
  const words = name.match(/[A-Z]{2,}(?=[A-Z][a-z]+|[0-9]|\b|$)|[A-Z]?[a-z]+|[A-Z]+|[0-9]+/g) ?? [name];
  return words.map((w, i) => (i === 0 ? w.toLowerCase() : w.charAt(0).toUpperCase() + w.slice(1).toLowerCase())).join('');
}

function serializer(type: protobuf.Type): (value: object) => Buffer {
  // A put's answer: hand-written, the same bytes (put_codec.ts).
  if (type.fullName === '.etcdserverpb.PutResponse') {
    return (value) => encodePutResponse(value) ?? (type.encode(type.fromObject(value)).finish() as Buffer);
  }
  return (value) => {
    if (Array.isArray(value)) throw new Error(`Failed to serialize message: expected object with ${type.name} structure, got array instead`);
    return type.encode(type.fromObject(value)).finish() as Buffer;
  };
}

function deserializer(type: protobuf.Type): (bytes: Buffer) => object {
  // A put's request: hand-written, the same object (put_codec.ts).
  if (type.fullName === '.etcdserverpb.PutRequest') {
    return (bytes) => decodePutRequest(bytes) ?? type.toObject(type.decode(bytes), CONVERSION);
  }
  return (bytes) => type.toObject(type.decode(bytes), CONVERSION);
}

/** The service definition (method table) of a fully qualified service, e.g. "etcdserverpb.KV". */
export function serviceDefinition(fullName: string): grpc.ServiceDefinition {
  const def = serviceDefinitions().get(fullName);
  if (!def) throw new Error(`service ${fullName} not found in ${PROTO_DIR}`);
  return def;
}
