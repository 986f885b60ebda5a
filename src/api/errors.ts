// Turning errors into gRPC statuses. EtcdErrors carry etcd's code and message; anything else is a
// bug, reported as INTERNAL (and logged by the caller) rather than leaking a stack to clients.
import type * as grpc from '@grpc/grpc-js';
import { EtcdError, GrpcCode } from '../util/errors';

export function toStatus(err: unknown): { code: number; details: string; message: string } {
  if (err instanceof EtcdError) return err.toGrpc();
  const msg = err instanceof Error ? err.message : String(err);
  return { code: GrpcCode.INTERNAL, details: `quorumkv: internal error: ${msg}`, message: msg };
}

export function replyError(cb: grpc.sendUnaryData<unknown>, err: unknown): void {
  if (!(err instanceof EtcdError)) process.emitWarning(`internal error serving a request: ${String(err)}`);
  cb(toStatus(err) as grpc.ServiceError, null);
}
