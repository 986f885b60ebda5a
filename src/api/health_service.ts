// grpc.health.v1.Health, as etcd registers it: SERVING while the member can serve requests.
import type { HealthCheckRequest, HealthCheckResponse } from '../proto/types';
import type { ServerStreamHandler, UnaryHandler } from './call';

const SERVING = 1;
const NOT_SERVING = 2;

export function healthService(isServing: () => boolean) {
  const Check: UnaryHandler<HealthCheckRequest, HealthCheckResponse> = (call) => call.respond({ status: isServing() ? SERVING : NOT_SERVING });
  // One answer and the stream stays open, as etcd's (grpc-go's health server before it learned
  // to send changes).
  const Watch: ServerStreamHandler<HealthCheckRequest, HealthCheckResponse> = (call) => {
    call.write({ status: isServing() ? SERVING : NOT_SERVING });
  };
  return { Check, Watch };
}
