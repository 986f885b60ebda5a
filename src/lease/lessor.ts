// The lessor: etcd's lease state machine (server/lease/lessor.go), in two clearly separated parts.
//
// Replicated state, changed only by applied log entries and therefore identical on every member:
// the leases, their granted TTL, their last checkpointed remaining TTL and their attached keys
// (grant, revoke, checkpoint, attach, detach).
//
// Leader-local (volatile) state: each lease's expiry time. Only the primary (the Raft leader) keeps
// real expiry times; everywhere else leases never expire on their own. The primary decides that a
// lease has expired and proposes a revoke through the log (see LeaseRunner), so all members delete
// the keys at the same index. Keepalives (renew) are served by the primary only and are not logged:
// that is why a new leader must not trust anyone's clock, and instead "promotes" every lease to
// expire at now + (checkpointed remaining TTL, else the full TTL) + a grace period.
//
// Time is injected (`now()` in milliseconds): no clock is read in here, so tests drive it.
import { assert } from '../util/assert';
import { EtcdError, Errors } from '../util/errors';
import type { Bytes, BytesLike, LeaseId, MvccStore, WriteTxn } from '../mvcc';
import { bytesOf, NO_LEASE } from '../mvcc';
import { LeaseHeap } from './lease_queue';

/** Largest TTL a lease may have (etcd MaxLeaseTTL). */
export const LEASE_TTL_SEC_MAX = 9_000_000_000;
/** After the primary hands out an expired lease for revocation, it hands it out again after this
 *  long if the revoke has not been applied (etcd expiredLeaseRetryInterval). */
export const EXPIRED_RETRY_MS = 3_000;

export interface LessorConfig {
  /** Smaller TTLs are raised to this (etcd: ceil(1.5 × election timeout)). */
  readonly minTtlSec: number;
  /** How often the primary persists remaining TTLs of long leases; 0 disables checkpointing. */
  readonly checkpointIntervalMs: number;
  /** The clock, in milliseconds. Only leader-local state depends on it. */
  readonly now: () => number;
  /** Called whenever a lease's replicated state changes (grant, checkpoint) or it is gone
   *  (revoke), so the backend can store it with the applied batch. */
  readonly persist?: (id: LeaseId, state: SavedLease | undefined) => void;
}

/** A lease's replicated state as it is saved (the backend's lease record) and restored. */
export interface SavedLease {
  readonly ttlSec: number;
  readonly remainingTtlSec: number;
}

/** Minimum lease TTL for an election timeout, as etcd computes it. */
export function minLeaseTtlSec(electionTimeoutMs: number): number {
  return Math.ceil((3 * electionTimeoutMs) / 2 / 1000);
}

class Lease {
  /** Checkpointed remaining TTL (replicated); 0 = none, the full TTL applies on promotion. */
  remainingTtlSec = 0;
  readonly keys = new Set<Bytes>(); // the store's own key strings (shared, not copies)
  /** Leader-local: when the lease expires (Infinity on a non-primary). */
  expiryMs = Infinity;
  /** Leader-local: time of this lease's live entry in the expiry heap (older entries are stale). */
  expiryHeapAtMs = -1;
  /** Leader-local: time of this lease's live entry in the checkpoint heap. */
  checkpointAtMs = -1;

  constructor(
    readonly id: LeaseId,
    readonly ttlSec: number,
  ) {}
}

export interface LeaseCheckpoint {
  readonly id: LeaseId;
  readonly remainingTtlSec: number;
}

export interface TimeToLive {
  readonly id: LeaseId;
  /** Seconds left (truncated, as etcd); meaningful on the primary only. */
  readonly ttlSec: number;
  readonly grantedTtlSec: number;
  readonly keys: Buffer[];
}

export class Lessor {
  private readonly leases = new Map<LeaseId, Lease>();
  private primary = false;
  private readonly expiryHeap = new LeaseHeap();
  private readonly checkpointHeap = new LeaseHeap();

  constructor(private readonly cfg: LessorConfig) {
    assert(cfg.minTtlSec >= 1, 'minimum lease TTL must be at least 1 s');
    assert(cfg.checkpointIntervalMs >= 0, 'checkpoint interval must not be negative');
  }

  get isPrimary(): boolean {
    return this.primary;
  }

  get count(): number {
    return this.leases.size;
  }

  // ---- LeaseAttachments (the KV apply path) ---------------------------------------------------

  exists(id: LeaseId): boolean {
    return this.leases.has(id);
  }

  attach(id: LeaseId, key: BytesLike): void {
    const l = this.leases.get(id);
    assert(l !== undefined, `attach to unknown lease ${id}`); // checkPut verified it exists
    l.keys.add(bytesOf(key));
  }

  detach(id: LeaseId, key: BytesLike): void {
    // The lease may be gone already (revoked in an earlier entry): nothing to do then.
    this.leases.get(id)?.keys.delete(bytesOf(key));
  }

  // ---- Applied entries (replicated, deterministic) --------------------------------------------

  /** Applies a LeaseGrant entry. The TTL is raised to the minimum, as etcd does. */
  grant(id: LeaseId, ttlSec: number): { id: LeaseId; ttlSec: number } | EtcdError {
    if (id === NO_LEASE) return Errors.LeaseNotFound;
    if (ttlSec > LEASE_TTL_SEC_MAX) return Errors.LeaseTTLTooLarge;
    if (this.leases.has(id)) return Errors.LeaseExist;
    const l = new Lease(id, Math.max(ttlSec, this.cfg.minTtlSec));
    this.leases.set(id, l);
    this.cfg.persist?.(id, { ttlSec: l.ttlSec, remainingTtlSec: 0 });
    if (this.primary) this.refresh(l, 0, false);
    return { id, ttlSec: l.ttlSec };
  }

  /** Applies a LeaseRevoke entry: deletes the attached keys (in key order, inside the caller's
   *  write txn, so they share one revision) and forgets the lease. */
  revoke(id: LeaseId, txn: WriteTxn): EtcdError | undefined {
    const l = this.leases.get(id);
    if (!l) return Errors.LeaseNotFound;
    const keys = [...l.keys].sort();
    for (const k of keys) txn.deleteRange(k, undefined, false);
    this.leases.delete(id);
    this.cfg.persist?.(id, undefined);
    return undefined;
  }

  /** Applies a LeaseCheckpoint entry: records remaining TTLs (0 clears a checkpoint). The expiry
   *  time is not touched: promotion is what turns a checkpoint into an expiry. */
  checkpoint(checkpoints: readonly LeaseCheckpoint[]): void {
    for (const cp of checkpoints) {
      const l = this.leases.get(cp.id);
      if (!l) continue;
      l.remainingTtlSec = Math.max(0, cp.remainingTtlSec);
      this.cfg.persist?.(cp.id, { ttlSec: l.ttlSec, remainingTtlSec: l.remainingTtlSec });
      if (this.primary) this.scheduleCheckpoint(l);
    }
  }

  /** Forgets every lease (before restoring the ones of a snapshot installed from the leader). */
  reset(): void {
    this.leases.clear();
    this.expiryHeap.clear();
    this.checkpointHeap.clear();
  }

  /** Restores a lease saved in the backend (restart, snapshot install). Keys are attached again
   *  by the caller from the store's key-values, which record their lease. */
  restore(id: LeaseId, ttlSec: number, remainingTtlSec: number): void {
    assert(!this.leases.has(id), `lease ${id} restored twice`);
    const l = new Lease(id, ttlSec);
    l.remainingTtlSec = remainingTtlSec;
    this.leases.set(id, l);
    if (this.primary) this.refresh(l, 0, true);
  }

  // ---- Leader-local -------------------------------------------------------------------------------

  /** Becomes primary: every lease expires at now + extend + (checkpointed remaining, else TTL). */
  promote(extendMs: number): void {
    this.primary = true;
    this.expiryHeap.clear();
    this.checkpointHeap.clear();
    for (const l of this.leases.values()) this.refresh(l, extendMs, true);
  }

  /** Stops being primary: leases no longer expire here. */
  demote(): void {
    this.primary = false;
    this.expiryHeap.clear();
    this.checkpointHeap.clear();
    for (const l of this.leases.values()) {
      l.expiryMs = Infinity;
      l.expiryHeapAtMs = -1;
      l.checkpointAtMs = -1;
    }
  }

  /**
   * A keepalive: restarts the lease's TTL. Primary only (NotLeader otherwise). An unknown or
   * already expired lease is LeaseNotFound. `clearCheckpoint` asks the caller to log a zero
   * checkpoint, so a later leader does not resurrect the old remaining TTL (etcd does the same).
   */
  renew(id: LeaseId): { ttlSec: number; clearCheckpoint: boolean } | EtcdError {
    if (!this.primary) return Errors.NotLeader;
    const l = this.leases.get(id);
    if (!l) return Errors.LeaseNotFound;
    // Expired but not yet revoked: the revoke is on its way through the log.
    if (l.expiryMs <= this.cfg.now()) return Errors.LeaseNotFound;
    const clearCheckpoint = this.cfg.checkpointIntervalMs > 0 && l.remainingTtlSec > 0;
    this.refresh(l, 0, false);
    return { ttlSec: l.ttlSec, clearCheckpoint };
  }

  timeToLive(id: LeaseId, withKeys: boolean): TimeToLive | undefined {
    const l = this.leases.get(id);
    if (!l) return undefined;
    const keys = withKeys ? [...l.keys].sort().map((k) => Buffer.from(k, 'latin1')) : [];
    return { id, ttlSec: this.remainingSec(l), grantedTtlSec: l.ttlSec, keys };
  }

  /** Every lease ID, ascending. */
  leaseIds(): LeaseId[] {
    return [...this.leases.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  /**
   * The primary's expired leases, at most `max`, each handed out once per EXPIRED_RETRY_MS (so a
   * revoke lost on its way through the log is retried, and one in flight is not proposed twice).
   */
  expired(max: number): LeaseId[] {
    const out: LeaseId[] = [];
    if (!this.primary) return out;
    const now = this.cfg.now();
    while (out.length < max) {
      const top = this.expiryHeap.peek();
      if (!top || top.atMs > now) break;
      this.expiryHeap.pop();
      const l = this.leases.get(top.id);
      if (!l || l.expiryHeapAtMs !== top.atMs) continue; // stale: revoked or renewed since
      if (l.expiryMs > now) continue;
      out.push(l.id);
      l.expiryHeapAtMs = now + EXPIRED_RETRY_MS;
      this.expiryHeap.push({ atMs: l.expiryHeapAtMs, id: l.id });
    }
    return out;
  }

  /** The primary's checkpoints that are due, at most `max` (etcd maxLeaseCheckpointBatchSize). */
  dueCheckpoints(max: number): LeaseCheckpoint[] {
    const out: LeaseCheckpoint[] = [];
    if (!this.primary || this.cfg.checkpointIntervalMs === 0) return out;
    const now = this.cfg.now();
    while (out.length < max) {
      const top = this.checkpointHeap.peek();
      if (!top || top.atMs > now) break;
      this.checkpointHeap.pop();
      const l = this.leases.get(top.id);
      if (!l || l.checkpointAtMs !== top.atMs) continue;
      l.checkpointAtMs = -1;
      const remainingSec = Math.ceil((l.expiryMs - now) / 1000);
      if (remainingSec >= l.ttlSec || remainingSec <= 0) continue;
      out.push({ id: l.id, remainingTtlSec: remainingSec });
    }
    return out;
  }

  private remainingSec(l: Lease): number {
    if (l.expiryMs === Infinity) return l.remainingTtlSec > 0 ? l.remainingTtlSec : l.ttlSec;
    return Math.max(0, Math.floor((l.expiryMs - this.cfg.now()) / 1000));
  }

  /** Primary only: restarts the lease's clock from now (+ extend). A renew restarts the full TTL;
   *  promotion honours the checkpointed remaining TTL, so a leader change neither expires a lease
   *  early nor extends it by a whole TTL. */
  private refresh(l: Lease, extendMs: number, useCheckpoint: boolean): void {
    assert(this.primary, 'only the primary keeps expiry times');
    const ttlSec = useCheckpoint && l.remainingTtlSec > 0 ? l.remainingTtlSec : l.ttlSec;
    l.expiryMs = this.cfg.now() + extendMs + ttlSec * 1000;
    l.expiryHeapAtMs = l.expiryMs;
    this.expiryHeap.push({ atMs: l.expiryMs, id: l.id });
    this.scheduleCheckpoint(l);
  }

  private scheduleCheckpoint(l: Lease): void {
    const interval = this.cfg.checkpointIntervalMs;
    if (interval === 0 || l.expiryMs === Infinity) return;
    if (l.expiryMs - this.cfg.now() <= interval) return; // expires before a checkpoint would help
    l.checkpointAtMs = this.cfg.now() + interval;
    this.checkpointHeap.push({ atMs: l.checkpointAtMs, id: l.id });
  }
}

/** Brings back the leases saved in the backend (restart, snapshot install) and re-attaches every
 *  live key that names one: keys are not saved with their lease, each key-value records it. */
export function restoreLeases(lessor: Lessor, saved: ReadonlyMap<LeaseId, SavedLease>, store: MvccStore): void {
  if (saved.size === 0) return;
  for (const [id, lease] of saved) lessor.restore(id, lease.ttlSec, lease.remainingTtlSec);
  const all = store.range(Buffer.from([0]), Buffer.from([0]), {});
  for (const kv of all.kvs) if (kv.lease !== NO_LEASE && lessor.exists(kv.lease)) lessor.attach(kv.lease, kv.key);
}
