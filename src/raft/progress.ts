// Progress: the leader's view of one follower's log (etcd tracker/progress.go).
//
//   Probe:     the leader does not know where the follower's log matches; it sends one MsgApp at a
//              time and waits (or for a heartbeat response) before the next — backtracking.
//   Replicate: the follower is known to match up to `match`; the leader streams MsgApps optimistically,
//              bounded by the inflights window.
//   Snapshot:  the follower needs a snapshot; nothing else is sent until it is reported done.
//
// Invariant: match < next (next is the next index to send).

import { assert } from '../util/assert';
import { Inflights } from './inflights';
import type { Index } from './types';

export enum ProgressState {
  Probe = 'Probe',
  Replicate = 'Replicate',
  Snapshot = 'Snapshot',
}

export class Progress {
  match: Index;
  next: Index;
  state: ProgressState = ProgressState.Probe;
  /** In StateSnapshot: the index of the snapshot being sent. */
  pendingSnapshot: Index = 0;
  /** Heard from this peer since the last check-quorum round. */
  recentActive = false;
  /** In StateProbe: a MsgApp was sent and no answer (or heartbeat response) has come back. */
  msgAppFlowPaused = false;
  readonly inflights: Inflights;
  isLearner: boolean;

  constructor(next: Index, maxInflightMsgs: number, maxInflightBytes: number, isLearner: boolean) {
    this.match = 0;
    this.next = next;
    this.inflights = new Inflights(maxInflightMsgs, maxInflightBytes);
    this.isLearner = isLearner;
  }

  private resetState(state: ProgressState): void {
    this.msgAppFlowPaused = false;
    this.pendingSnapshot = 0;
    this.state = state;
    this.inflights.reset();
  }

  becomeProbe(): void {
    if (this.state === ProgressState.Snapshot) {
      // After a snapshot, probe from just past it: the follower most likely has it now.
      const pending = this.pendingSnapshot;
      this.resetState(ProgressState.Probe);
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.resetState(ProgressState.Probe);
      this.next = this.match + 1;
    }
  }

  becomeReplicate(): void {
    this.resetState(ProgressState.Replicate);
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshotIndex: Index): void {
    this.resetState(ProgressState.Snapshot);
    this.pendingSnapshot = snapshotIndex;
  }

  /** Records that a MsgApp with `entries` entries (last one at lastIndex) was sent. */
  sentEntries(entries: number, lastIndex: Index, bytes: number): void {
    switch (this.state) {
      case ProgressState.Replicate:
        if (entries > 0) {
          assert(lastIndex >= this.next, `sent entries up to ${lastIndex} below next ${this.next}`);
          this.next = lastIndex + 1;
          this.inflights.add(lastIndex, bytes);
        }
        break;
      case ProgressState.Probe:
        // One message per probe round: wait for an answer before sending more.
        this.msgAppFlowPaused = true;
        break;
      case ProgressState.Snapshot:
        assert(false, 'sending append in unhandled state Snapshot');
    }
  }

  /** An acknowledgement up to n. Returns whether match advanced. */
  maybeUpdate(n: Index): boolean {
    let updated = false;
    if (this.match < n) {
      this.match = n;
      updated = true;
      this.msgAppFlowPaused = false;
    }
    this.next = Math.max(this.next, n + 1);
    return updated;
  }

  /**
   * A rejection of the MsgApp at `rejected`; matchHint is where the follower's log may match.
   * Returns false if the rejection is stale (out of order) and was ignored.
   */
  maybeDecrTo(rejected: Index, matchHint: Index): boolean {
    if (this.state === ProgressState.Replicate) {
      // Stale if it rejects something already matched.
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    // Probe: only the rejection of the last probe counts.
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
    this.msgAppFlowPaused = false;
    return true;
  }

  /** Whether sending MsgApp to this peer is throttled. */
  isPaused(): boolean {
    switch (this.state) {
      case ProgressState.Probe:
        return this.msgAppFlowPaused;
      case ProgressState.Replicate:
        return this.inflights.full();
      case ProgressState.Snapshot:
        return true;
    }
  }

  toString(): string {
    let s = `${this.state} match=${this.match} next=${this.next}`;
    if (this.isLearner) s += ' learner';
    if (this.isPaused()) s += ' paused';
    if (this.pendingSnapshot > 0) s += ` pendingSnap=${this.pendingSnapshot}`;
    if (!this.recentActive) s += ' inactive';
    return s;
  }
}
