// The primary's lease duties that need a timer: every LEASE_CHECK_INTERVAL_MS it proposes a
// revoke for each expired lease and a checkpoint for the leases whose checkpoint is due, through
// the log like any other request (so every member applies them at the same index). It also serves
// keepalives, which restart a lease's clock on the primary without a log entry. Non-primaries do
// nothing here: expiry is never decided from a follower's clock.
import type { EtcdError } from '../util/errors';
import type { LeaseId } from '../mvcc';
import type { LeaseCheckpoint, Lessor } from './lessor';

/** How often the primary looks for expired leases and due checkpoints (etcd: 500 ms). */
export const LEASE_CHECK_INTERVAL_MS = 500;
/** Most revokes proposed per check (etcd leaseRevokeRate is 1000/s). */
export const REVOKES_PER_CHECK_MAX = 500;
/** Most checkpoints per log entry (etcd maxLeaseCheckpointBatchSize). */
export const CHECKPOINTS_PER_ENTRY_MAX = 1000;

/** The log entry bodies the runner proposes (a subset of the server's InternalRequestBody). */
export interface LeaseProposal {
  lease_revoke?: { ID: string };
  lease_checkpoint?: { checkpoints: { ID: string; remaining_TTL: number }[] };
}

export interface LeaseProposer {
  propose(body: LeaseProposal): Promise<unknown>;
  isLeader(): boolean;
}

export function checkpointEntry(cps: readonly LeaseCheckpoint[]): LeaseProposal {
  return { lease_checkpoint: { checkpoints: cps.map((c) => ({ ID: c.id.toString(), remaining_TTL: c.remainingTtlSec })) } };
}

export class LeaseRunner {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    readonly lessor: Lessor,
    private readonly proposer: LeaseProposer,
    private readonly onError: (what: string, err: unknown) => void = () => undefined,
  ) {}

  start(intervalMs = LEASE_CHECK_INTERVAL_MS): void {
    this.timer ??= setInterval(() => this.check(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One round of the primary's duties (also called directly by tests). */
  check(): void {
    if (!this.proposer.isLeader() || !this.lessor.isPrimary) return;
    for (const id of this.lessor.expired(REVOKES_PER_CHECK_MAX)) {
      // A failed revoke (e.g. the lease was revoked by a client meanwhile) is harmless; an expired
      // lease that is still there is handed out again after EXPIRED_RETRY_MS.
      this.proposer.propose({ lease_revoke: { ID: id.toString() } }).catch((err) => this.onError('lease revoke', err));
    }
    const cps = this.lessor.dueCheckpoints(CHECKPOINTS_PER_ENTRY_MAX);
    if (cps.length > 0) this.proposer.propose(checkpointEntry(cps)).catch((err) => this.onError('lease checkpoint', err));
  }

  /** A keepalive: the TTL granted again, or an error (NotLeader, LeaseNotFound). */
  renew(id: LeaseId): number | EtcdError {
    const r = this.lessor.renew(id);
    if (!('ttlSec' in r)) return r;
    if (r.clearCheckpoint) {
      this.proposer.propose(checkpointEntry([{ id, remainingTtlSec: 0 }])).catch((err) => this.onError('lease checkpoint', err));
    }
    return r.ttlSec;
  }
}
