// grpc.health.v1.Health, as etcd registers it: SERVING while the member can serve requests.
import type * as grpc from '@grpc/grpc-js';
import type { Handlers } from './services';

const SERVING = 1;
const NOT_SERVING = 2;

export function healthService(isServing: () => boolean): Handlers {
  return {
    Check: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) =>
      cb(null, { status: isServing() ? SERVING : NOT_SERVING }),
    Watch: (call: grpc.ServerWritableStream<unknown, unknown>) => {
      call.write({ status: isServing() ? SERVING : NOT_SERVING });
    },
  };
}
