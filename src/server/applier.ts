// The apply path: turns committed log entries into state changes, deterministically. Every member
// applies the same entries in the same order and so reaches the same MVCC state and the same
// results; the member that proposed an entry hands the result back to the waiting client.
import { assert } from '../util/assert';
import { EtcdError, Errors } from '../util/errors';
import type { Event, LeaseId, MvccStore, WriteTxn } from '../mvcc';
import { decodeRequest, type InternalRequest } from './codec';
import { AUTH_ENTRY_KINDS, type AuthStore } from '../auth';
import { AlarmAction, AlarmType, type AlarmMember } from './alarms';
import { quotaCostBytes } from './quota';
import { applyCheckedPut, applyDeleteRange, applyRange, applyTxn, toLeaseId, toNumber, type LeaseAttachments } from './kv_ops';

/** The lease state machine's applied operations (src/lease Lessor implements them). */
export interface LeaseStateMachine extends LeaseAttachments {
  grant(id: LeaseId, ttlSec: number): { id: LeaseId; ttlSec: number } | EtcdError;
  /** Deletes the lease's keys inside `txn` (one revision) and forgets the lease. */
  revoke(id: LeaseId, txn: WriteTxn): EtcdError | undefined;
  checkpoint(checkpoints: readonly { id: LeaseId; remainingTtlSec: number }[]): void;
}

function isLeaseStateMachine(l: LeaseAttachments): l is LeaseStateMachine {
  return typeof (l as Partial<LeaseStateMachine>).grant === 'function';
}

/** The outcome of one applied entry. `response` has no header yet: the server adds it. */
export interface ApplyResult {
  /** Proposal id of the request, to find the waiting client. */
  readonly id: string;
  readonly response?: object;
  readonly error?: EtcdError;
  /** Store revision right after the entry was applied. */
  readonly revision: number;
}

/** Membership updates that travel as normal entries (not Raft conf changes). */
export interface ClusterStateMachine {
  setAttributes(id: bigint, name: string, clientURLs: string[]): void;
  setPeerURLs(id: bigint, peerURLs: string[]): void;
}

/** What etcd's applierV3Corrupt refuses. */
const CORRUPT_REFUSED: ReadonlySet<string> = new Set(['put', 'delete_range', 'txn', 'range', 'compaction', 'lease_grant', 'lease_revoke']);

/** The alarm half of the state machine (server/alarms.ts AlarmStore implements it). */
export interface AlarmStateMachine {
  get(memberId: bigint, type: number): AlarmMember[];
  activate(memberId: bigint, type: number): AlarmMember[];
  deactivate(memberId: bigint, type: number): AlarmMember[];
  has(type: number): boolean;
}

export type EventSink = (events: Event[], revision: number) => void;

export class Applier {
  /** Index of the last applied log entry. Invariant: appliedIndex only grows, by exactly one. */
  private appliedIndexValue = 0;

  constructor(
    private readonly store: MvccStore,
    private readonly leases: LeaseAttachments,
    private readonly onEvents: EventSink = () => undefined,
    private readonly onCompact: (rev: number) => void = () => undefined,
    private readonly cluster?: ClusterStateMachine,
    private readonly alarms?: AlarmStateMachine,
    private readonly auth?: AuthStore,
  ) {}

  get appliedIndex(): number {
    return this.appliedIndexValue;
  }

  /** Starts a restarted member at the applied index its backend was saved with. */
  startFrom(appliedIndex: number): void {
    assert(this.appliedIndexValue === 0, 'startFrom on an applier that already applied entries');
    this.appliedIndexValue = appliedIndex;
  }

  /** Jumps to the applied index of a snapshot installed from the leader. */
  resetTo(appliedIndex: number): void {
    this.appliedIndexValue = appliedIndex;
  }

  /** Advances over an entry with nothing for the state machine (a new leader's empty entry, or a
   *  membership change, which the Raft layer applies itself). */
  skip(index: number): void {
    assert(index === this.appliedIndexValue + 1, `entries applied in order: got ${index} after ${this.appliedIndexValue}`);
    this.appliedIndexValue = index;
  }

  apply(index: number, data: Uint8Array): ApplyResult {
    assert(index === this.appliedIndexValue + 1, `entries applied in order: got ${index} after ${this.appliedIndexValue}`);
    this.appliedIndexValue = index;
    const req = decodeRequest(data);
    try {
      return this.dispatch(req, index);
    } catch (err) {
      // Typed store errors (compacted, future revision) are results like any other: every member
      // reaches the same one. Anything else is a bug and must crash the member.
      if (err instanceof EtcdError) return { id: req.id, error: err, revision: this.store.currentRevision };
      throw err;
    }
  }

  private dispatch(req: InternalRequest, index: number): ApplyResult {
    const id = req.id;
    // Auth first, as etcd's authApplierV3 wraps the others: auth entries, then the authoritative
    // permission check against the auth state at this index (identical on every member). Entries
    // without a header come from the server itself (lease expiry) and pass.
    if (this.auth) {
      const kind = req.request;
      if (kind !== undefined && AUTH_ENTRY_KINDS.has(kind)) {
        const r = this.auth.apply(kind, req[kind] as Record<string, unknown>, req.header, index);
        return { id, ...r, revision: this.store.currentRevision };
      }
      if (this.auth.enabled && req.header) {
        const denied = this.auth.checkEntry(kind, kind ? req[kind] : undefined, req.header);
        if (denied) return { id, error: denied, revision: this.store.currentRevision };
      }
    }
    // etcd's applierV3Capped: while any member's NOSPACE alarm is active, every member refuses
    // whatever would consume space, whatever the backend's size; deletes, compaction and reads
    // pass, so the operator can recover. Decided by replicated state only: deterministic.
    if (this.alarms?.has(AlarmType.NOSPACE) && quotaCostBytes(req) > 0) {
      return { id, error: Errors.NoSpace, revision: this.store.currentRevision };
    }
    // etcd's applierV3Corrupt: while a CORRUPT alarm is active (corrupt_check.ts), the KV and
    // lease writes fail on every member; reads, alarms and membership entries still apply, so
    // the operator can inspect the cluster and disarm the alarm once it is repaired.
    if (req.request !== undefined && CORRUPT_REFUSED.has(req.request) && this.alarms?.has(AlarmType.CORRUPT)) {
      return { id, error: Errors.Corrupt, revision: this.store.currentRevision };
    }
    switch (req.request) {
      case 'put':
        return this.write(id, (txn) => applyCheckedPut(txn, req.put!, this.leases));
      case 'delete_range':
        return this.write(id, (txn) => applyDeleteRange(txn, req.delete_range!, this.leases));
      case 'txn':
        return this.write(id, (txn) => applyTxn(txn, req.txn!, this.leases));
      case 'range':
        return { id, response: applyRange(this.store, req.range!), revision: this.store.currentRevision };
      case 'compaction':
        // The compaction point moves now (reads below it fail from this entry on, on every
        // member); the versions it made unreachable are freed by the server in slices across
        // event-loop turns (Server.scheduleCompactSteps): one pass over a million keys took seconds.
        this.store.scheduleCompaction(toNumber(req.compaction!.revision));
        this.onCompact(toNumber(req.compaction!.revision));
        return { id, response: {}, revision: this.store.currentRevision };
      case 'lease_grant':
      case 'lease_revoke':
      case 'lease_checkpoint':
        if (isLeaseStateMachine(this.leases)) return this.applyLease(req, this.leases);
        return { id, error: new EtcdError(12, `quorumkv: log entry kind ${req.request} needs a lessor`), revision: this.store.currentRevision };
      case 'alarm':
        if (!this.alarms) break;
        return { id, response: { alarms: this.applyAlarm(req.alarm!, this.alarms) }, revision: this.store.currentRevision };
      case 'member_attributes':
      case 'member_update':
        if (!this.cluster) break;
        if (req.request === 'member_attributes') {
          const a = req.member_attributes!;
          this.cluster.setAttributes(BigInt(a.ID), a.name, a.clientURLs);
        } else {
          const u = req.member_update!;
          this.cluster.setPeerURLs(BigInt(u.ID), u.peerURLs);
        }
        return { id, response: {}, revision: this.store.currentRevision };
      default:
        break;
    }
    return { id, error: new EtcdError(12, `quorumkv: log entry kind ${String(req.request)} is not supported by this version`), revision: this.store.currentRevision };
  }

  private applyAlarm(a: NonNullable<InternalRequest['alarm']>, alarms: AlarmStateMachine): AlarmMember[] {
    const member = BigInt(a.memberID);
    if (a.action === AlarmAction.ACTIVATE) return alarms.activate(member, a.alarm);
    if (a.action === AlarmAction.DEACTIVATE) return alarms.deactivate(member, a.alarm);
    return alarms.get(member, a.alarm);
  }

  private applyLease(req: InternalRequest, leases: LeaseStateMachine): ApplyResult {
    const id = req.id;
    if (req.request === 'lease_grant') {
      const g = leases.grant(toLeaseId(req.lease_grant!.ID), toNumber(req.lease_grant!.TTL));
      if (g instanceof EtcdError) return { id, error: g, revision: this.store.currentRevision };
      return { id, response: { ID: g.id.toString(), TTL: g.ttlSec }, revision: this.store.currentRevision };
    }
    if (req.request === 'lease_revoke') {
      const lease = toLeaseId(req.lease_revoke!.ID);
      // All attached keys go in one write txn: one revision, one watch response.
      return this.write(id, (txn) => leases.revoke(lease, txn) ?? {});
    }
    const cps = req.lease_checkpoint!.checkpoints.map((c) => ({ id: toLeaseId(c.ID), remainingTtlSec: toNumber(c.remaining_TTL) }));
    leases.checkpoint(cps);
    return { id, response: {}, revision: this.store.currentRevision };
  }

  /** Runs `fn` in one write txn: one revision for all its changes, events handed to watchers. */
  private write(id: string, fn: (txn: ReturnType<MvccStore['write']>) => object | EtcdError): ApplyResult {
    const txn = this.store.write();
    let response: object | EtcdError;
    try {
      response = fn(txn);
    } finally {
      const result = txn.end();
      if (result.events.length > 0) this.onEvents(result.events, result.revision);
    }
    if (response instanceof EtcdError) return { id, error: response, revision: this.store.currentRevision };
    return { id, response, revision: this.store.currentRevision };
  }
}
