// Learner promotion: etcd's readiness rule, and quorumkv's automatic promotion (--auto-promote-
// learners, off by default). etcd leaves promotion to the operator, who must retry `member
// promote` until the learner has caught up (etcd #15107: every operator's tooling grows that loop).
// With the flag, the leader checks its learners every interval and promotes one itself once (1) its
// log is at least LEARNER_READY_FRACTION of the leader's (etcd's isLearnerReady), (2) the leader
// has heard from it recently, and (3) with it as a voter, the voters the leader has heard from
// recently still make a quorum (etcd's "promote only if the cluster stays healthy"). One learner per
// round, through the same conf change as MemberPromote; the promotion shows in `member list`
// (IS LEARNER false), in the log and in etcd_server_learner_promote_successes.
import type { Logger } from '../util/log';
import type { Member } from './membership';

/** etcd's readyPercent: a learner whose log is at 90% of the leader's may be promoted. */
export const LEARNER_READY_FRACTION = 0.9;

/** etcd's isLearnerReady. */
export function isLearnerReady(learnerMatch: number, leaderLastIndex: number): boolean {
  return learnerMatch >= leaderLastIndex * LEARNER_READY_FRACTION;
}

export interface LearnerPromoterOptions {
  intervalMs: number;
  log: Logger;
  isLeader(): boolean;
  members(): readonly Member[];
  /** This member (the promoter acts only while it leads). */
  selfId: bigint;
  lastIndex(): number;
  matchIndex(id: bigint): number | undefined;
  /** The leader heard from the member within the election timeout (Raft's recentActive). */
  isActive(id: bigint): boolean;
  /** Proposes the promotion (a conf change AddNode for the learner). */
  promote(m: Member): Promise<void>;
  onPromoted?(m: Member): void;
}

/** Why a learner may not be promoted now, or undefined if it may. */
export function promotionBlocker(m: Member, o: Pick<LearnerPromoterOptions, 'members' | 'selfId' | 'lastIndex' | 'matchIndex' | 'isActive'>): string | undefined {
  const match = o.matchIndex(m.id) ?? 0;
  if (!isLearnerReady(match, o.lastIndex())) return `log at ${match} of ${o.lastIndex()}`;
  if (!o.isActive(m.id)) return 'not heard from recently';
  const voters = o.members().filter((x) => !x.isLearner);
  const active = voters.filter((x) => x.id === o.selfId || o.isActive(x.id)).length + 1;
  const quorum = Math.floor((voters.length + 1) / 2) + 1;
  if (active < quorum) return `only ${active} of ${voters.length + 1} voters would be active (quorum ${quorum})`;
  return undefined;
}

export class LearnerPromoter {
  private timer: NodeJS.Timeout | undefined;
  private inFlight = false;

  constructor(private readonly o: LearnerPromoterOptions) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.round(), this.o.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One check; resolves with the learner promoted, if any. */
  async round(): Promise<Member | undefined> {
    if (this.inFlight || !this.o.isLeader()) return undefined;
    const learner = this.o.members().find((m) => m.isLearner && promotionBlocker(m, this.o) === undefined);
    if (!learner) return undefined;
    this.inFlight = true;
    try {
      await this.o.promote(learner);
      this.o.log.info('promoted a learner that caught up with the leader', { member: learner.id.toString(16), name: learner.name });
      this.o.onPromoted?.(learner);
      return learner;
    } catch (err) {
      this.o.log.warn('learner promotion failed; trying again next round', { member: learner.id.toString(16), error: String(err) });
      return undefined;
    } finally {
      this.inFlight = false;
    }
  }
}
