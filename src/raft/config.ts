// Raft configuration, its defaults and validation. Relations between limits are checked once here.

import type { NodeId, Index } from './types';
import { None } from './types';

export type ReadOnlyOption = 'safe' | 'lease-based';

/**
 * Deliberately broken variants, used only by tests to prove the simulation can find violations.
 * Every hook is inert unless set to true; production code never sets them.
 */
export interface RaftBugs {
  /** Leader commits an entry from a previous term by counting replicas (Raft paper figure 8). */
  commitPreviousTermByCounting?: boolean;
  /** The vote is never written to the HardState handed to the application. */
  forgetToPersistVote?: boolean;
  /** Grant votes without the "candidate's log is at least as up-to-date" check (section 5.4.1). */
  voteForShorterLog?: boolean;
  /** Answer ReadIndex at once with the local commit index, without a heartbeat quorum round. */
  readIndexWithoutQuorum?: boolean;
}

export interface Config {
  /** This node's ID. Never 0. */
  id: NodeId;
  /** Ticks a follower waits without hearing from a leader before campaigning (randomized in [e, 2e)). */
  electionTick?: number;
  /** Ticks between leader heartbeats. Must be < electionTick. */
  heartbeatTick?: number;
  /** Run a pre-vote phase before raising the term (thesis section 9.6). */
  preVote?: boolean;
  /** A leader that has not heard from a quorum within an election timeout steps down. */
  checkQuorum?: boolean;
  /** Upper bound in bytes on the entries of one MsgApp (at least one entry is always sent). */
  maxSizePerMsg?: number;
  /** Upper bound on in-flight MsgApps to a follower in StateReplicate. */
  maxInflightMsgs?: number;
  /** Upper bound on in-flight MsgApp bytes to a follower (0 = unlimited). */
  maxInflightBytes?: number;
  /** Upper bound in bytes on committed entries handed out in one Ready. */
  maxCommittedSizePerReady?: number;
  /** Proposals are dropped while the leader's uncommitted tail exceeds this (0 = unlimited). */
  maxUncommittedEntriesSize?: number;
  /** 'safe' (default): ReadIndex confirms leadership with a heartbeat quorum round. */
  readOnlyOption?: ReadOnlyOption;
  /** The last index the application has applied (on restart). Defaults to the snapshot index. */
  applied?: Index;
  /** Seed of the RNG that randomizes election timeouts. */
  seed?: number | bigint;
  /** Test-only broken variants. */
  bugs?: RaftBugs;
}

/** Config with every default filled in. */
export interface ResolvedConfig {
  id: NodeId;
  electionTick: number;
  heartbeatTick: number;
  preVote: boolean;
  checkQuorum: boolean;
  maxSizePerMsg: number;
  maxInflightMsgs: number;
  maxInflightBytes: number;
  maxCommittedSizePerReady: number;
  maxUncommittedEntriesSize: number;
  readOnlyOption: ReadOnlyOption;
  applied: Index;
  seed: number | bigint;
  bugs: RaftBugs;
}

export const ELECTION_TICK_DEFAULT = 10;
export const HEARTBEAT_TICK_DEFAULT = 1;
export const MAX_SIZE_PER_MSG_DEFAULT_BYTES = 1024 * 1024;
export const MAX_INFLIGHT_MSGS_DEFAULT = 256;
export const MAX_COMMITTED_SIZE_PER_READY_DEFAULT_BYTES = 64 * 1024 * 1024;

export class RaftConfigError extends Error {
  override name = 'RaftConfigError';
}

export function resolveConfig(c: Config): ResolvedConfig {
  const r: ResolvedConfig = {
    id: c.id,
    electionTick: c.electionTick ?? ELECTION_TICK_DEFAULT,
    heartbeatTick: c.heartbeatTick ?? HEARTBEAT_TICK_DEFAULT,
    preVote: c.preVote ?? true,
    checkQuorum: c.checkQuorum ?? true,
    maxSizePerMsg: c.maxSizePerMsg ?? MAX_SIZE_PER_MSG_DEFAULT_BYTES,
    maxInflightMsgs: c.maxInflightMsgs ?? MAX_INFLIGHT_MSGS_DEFAULT,
    maxInflightBytes: c.maxInflightBytes ?? 0,
    maxCommittedSizePerReady: c.maxCommittedSizePerReady ?? MAX_COMMITTED_SIZE_PER_READY_DEFAULT_BYTES,
    maxUncommittedEntriesSize: c.maxUncommittedEntriesSize ?? 0,
    readOnlyOption: c.readOnlyOption ?? 'safe',
    applied: c.applied ?? 0,
    seed: c.seed ?? Number(BigInt.asUintN(32, c.id)),
    bugs: { ...(c.bugs ?? {}) },
  };
  if (r.id === None) throw new RaftConfigError('cannot use none (0) as id');
  if (r.heartbeatTick <= 0) throw new RaftConfigError('heartbeat tick must be greater than 0');
  if (r.electionTick <= r.heartbeatTick) throw new RaftConfigError('election tick must be greater than heartbeat tick');
  if (r.maxInflightMsgs <= 0) throw new RaftConfigError('max inflight messages must be greater than 0');
  if (r.maxSizePerMsg <= 0) throw new RaftConfigError('max size per msg must be greater than 0');
  if (r.maxInflightBytes !== 0 && r.maxInflightBytes < r.maxSizePerMsg) {
    throw new RaftConfigError('max inflight bytes must be >= max message size');
  }
  if (r.readOnlyOption === 'lease-based' && !r.checkQuorum) {
    // A lease is only sound if the leader steps down when it loses its quorum.
    throw new RaftConfigError('checkQuorum must be enabled when readOnlyOption is lease-based');
  }
  return r;
}
