// Public surface of the lease layer: the lessor (replicated lease state + the primary's expiry
// clock) and the runner that turns expiry and checkpoints into log entries.
export {
  Lessor,
  LEASE_TTL_SEC_MAX,
  EXPIRED_RETRY_MS,
  minLeaseTtlSec,
  restoreLeases,
} from './lessor';
export type { LessorConfig, LeaseCheckpoint, SavedLease, TimeToLive } from './lessor';
export { LeaseRunner, LEASE_CHECK_INTERVAL_MS, REVOKES_PER_CHECK_MAX, CHECKPOINTS_PER_ENTRY_MAX, checkpointEntry } from './lease_runner';
export type { LeaseProposal, LeaseProposer } from './lease_runner';
