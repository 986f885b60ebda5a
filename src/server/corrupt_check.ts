// The periodic corruption check (etcd's --experimental-corrupt-check-time): the leader computes its
// HashKV at its current revision, asks every other member for its HashKV at that same revision
// over the peer port, and raises a CORRUPT alarm (through the log) for each member whose state
// cannot be the leader's: the same compaction point but another hash, a compaction point beyond
// the leader's, or a current revision beyond the leader's. While a CORRUPT alarm is active every
// member refuses writes with "etcdserver: corrupt cluster" (applier.ts), as etcd's applierV3Corrupt.
// A member that has not yet applied the revision (or has compacted past it) is skipped this round.
import type { HashKVResult } from '../mvcc';
import type { Logger } from '../util/log';

export interface PeerHash {
  memberId: bigint;
  hash: number;
  compactRevision: number;
  hashRevision: number;
  currentRevision: number;
}

export interface CorruptCheckOptions {
  /** Milliseconds between checks; 0 = off (etcd's default). */
  intervalMs: number;
  log: Logger;
  isLeader(): boolean;
  /** This member's HashKV at `rev` (0: now). */
  hashKV(rev: number): Promise<HashKVResult>;
  currentRevision(): number;
  /** This member's compaction point now. */
  compactRevision(): number;
  /** The other members with peer URLs to ask. */
  peers(): { id: bigint; peerURLs: readonly string[] }[];
  /** One member's HashKV at `rev`, asked over its peer URLs (rejects: unreachable, future or
   *  compacted revision). */
  peerHashKV(peerURLs: readonly string[], rev: number): Promise<PeerHash>;
  /** Proposes ACTIVATE CORRUPT for `memberId`. */
  raiseCorrupt(memberId: bigint): Promise<void>;
}

export interface CheckOutcome {
  revision: number;
  /** Members that answered (the leader's own hash counts too). */
  compared: number;
  /** Members found corrupt, with the rule that caught each. */
  corrupt: { memberId: bigint; reason: string }[];
}

/** Which rule, if any, says `p` cannot hold the leader's state (hash `h` at `crev`; the leader's
 *  revisions after the peers answered: `rev2`, `crev2`). */
export function mismatchReason(p: PeerHash, h: HashKVResult, rev2: number, crev2: number): string | undefined {
  if (p.currentRevision > rev2) return `its revision ${p.currentRevision} is ahead of the leader's ${rev2}`;
  if (p.compactRevision > crev2) return `its compaction point ${p.compactRevision} is ahead of the leader's ${crev2}`;
  if (p.compactRevision === h.compactRevision && p.hashRevision === h.hashRevision && p.hash !== h.hash) {
    return `hash ${p.hash} at revision ${p.hashRevision} differs from the leader's ${h.hash}`;
  }
  return undefined;
}

export class CorruptChecker {
  private timer: NodeJS.Timeout | undefined;
  private running = false;

  constructor(private readonly o: CorruptCheckOptions) {}

  start(): void {
    if (this.o.intervalMs <= 0 || this.timer) return;
    this.timer = setInterval(() => {
      if (this.running || !this.o.isLeader()) return;
      this.running = true;
      this.check()
        .catch((err: unknown) => this.o.log.warn('corruption check failed; trying again next interval', { error: String(err) }))
        .finally(() => (this.running = false));
    }, this.o.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One round (the leader's side). */
  async check(): Promise<CheckOutcome> {
    const h = await this.o.hashKV(0);
    const peers = this.o.peers();
    const answers = await Promise.all(
      peers.map((p) =>
        this.o.peerHashKV(p.peerURLs, h.hashRevision).then(
          (r) => r,
          (err: unknown) => {
            this.o.log.info('corruption check: member skipped this round', { member: p.id.toString(16), revision: h.hashRevision, reason: String(err) });
            return undefined;
          },
        ),
      ),
    );
    const rev2 = this.o.currentRevision();
    const crev2 = this.o.compactRevision();
    const outcome: CheckOutcome = { revision: h.hashRevision, compared: 1, corrupt: [] };
    for (const p of answers) {
      if (!p) continue;
      outcome.compared++;
      const reason = mismatchReason(p, h, rev2, crev2);
      if (!reason) continue;
      outcome.corrupt.push({ memberId: p.memberId, reason });
      this.o.log.error('corruption check: member state differs from the leader; raising a CORRUPT alarm', { member: p.memberId.toString(16), reason });
      await this.o.raiseCorrupt(p.memberId);
    }
    if (outcome.corrupt.length === 0) this.o.log.debug('corruption check passed', { revision: h.hashRevision, members: outcome.compared });
    return outcome;
  }
}
