// Fault mixes. "Swarm" testing: every seed draws its own fault rates, so that some runs are calm and
// others hostile, and rare interleavings show up under some mix (TigerBeetle's VOPR does the same).

import { Rng } from '../../src/util/rng';
import type { RaftBugs } from '../../src/raft';

export interface FaultMix {
  clusterSize: 1 | 3 | 5;
  /** Probability a message is dropped. */
  dropRate: number;
  /** Probability a message is delivered twice. */
  dupRate: number;
  /** Message delay in time units, uniform in [1, maxDelayUnits]: reorders messages. */
  maxDelayUnits: number;
  /** Per-tick probability of a new network partition (symmetric, asymmetric or isolation). */
  partitionRate: number;
  /** Probability that a newly elected leader is isolated at once (a figure-8 nemesis). */
  isolateNewLeaderRate: number;
  /** Per-tick probability of healing the current partition. */
  healRate: number;
  /** Per-tick probability of crashing a node (losing whatever it had not fsynced). */
  crashRate: number;
  /** Per-tick probability of restarting a crashed node. */
  restartRate: number;
  /** fsync latency in time units, uniform in [0, maxDiskLatencyUnits]. */
  maxDiskLatencyUnits: number;
  /** Per-tick probability that a client issues a write / a read. */
  writeRate: number;
  readRate: number;
  /** Per-tick probability of a membership change / a leadership transfer. */
  confChangeRate: number;
  transferRate: number;
  /** Raft knobs. */
  maxSizePerMsg: number;
  maxInflightMsgs: number;
  preVote: boolean;
  checkQuorum: boolean;
  /** Applied entries between snapshots, and entries kept behind a snapshot when compacting. */
  snapshotInterval: number;
  compactionLag: number;
  /** Ticks of faults, then ticks allowed for recovery after healing (liveness bound). */
  faultTicks: number;
  healTicks: number;
  bugs: RaftBugs;
}

export type MixName = 'calm' | 'lossy' | 'partitions' | 'crashes' | 'membership' | 'chaos' | 'elections';
export const MIX_NAMES: MixName[] = ['calm', 'lossy', 'partitions', 'crashes', 'membership', 'chaos', 'elections'];

/** Draws a fault mix for a seed; `name` picks the family, rates inside it are random per seed. */
export function drawMix(seed: number, name?: MixName): FaultMix {
  const rng = new Rng(BigInt(seed) * 7919n + 17n);
  const family: MixName = name ?? MIX_NAMES[seed % MIX_NAMES.length]!;
  const sizes: (1 | 3 | 5)[] = family === 'calm' ? [1, 3, 5] : family === 'membership' ? [3, 3, 5] : [3, 3, 5, 5, 1];
  const m: FaultMix = {
    clusterSize: rng.pick(sizes),
    dropRate: 0,
    dupRate: 0,
    maxDelayUnits: rng.range(1, 6),
    partitionRate: 0,
    healRate: 0.1,
    isolateNewLeaderRate: 0,
    crashRate: 0,
    restartRate: 0.1,
    maxDiskLatencyUnits: rng.range(0, 4),
    writeRate: 0.3 + rng.float(),
    readRate: 0.2 + rng.float(),
    confChangeRate: 0,
    transferRate: rng.chance(0.3) ? 0.01 : 0,
    maxSizePerMsg: 0,
    maxInflightMsgs: 0,
    preVote: !rng.chance(0.15),
    checkQuorum: !rng.chance(0.15),
    snapshotInterval: rng.pick([10, 30, 1000]),
    compactionLag: rng.pick([0, 5, 50]),
    faultTicks: 150,
    healTicks: 250,
    bugs: {},
  };
  // One entry per MsgApp exercises batching limits; pair it with a window wide enough to keep up.
  if (rng.chance(0.4)) {
    m.maxSizePerMsg = 1;
    m.maxInflightMsgs = rng.pick([8, 16, 256]);
  } else {
    m.maxSizePerMsg = rng.chance(0.5) ? 200 : 1024 * 1024;
    m.maxInflightMsgs = rng.pick([1, 2, 4, 256]);
  }
  const hostile = (): void => {
    m.dropRate = rng.float() * 0.2;
    m.dupRate = rng.float() * 0.1;
    m.maxDelayUnits = rng.range(1, 12);
  };
  switch (family) {
    case 'calm':
      break;
    case 'lossy':
      hostile();
      break;
    case 'partitions':
      m.partitionRate = 0.02 + rng.float() * 0.08;
      m.healRate = 0.02 + rng.float() * 0.1;
      if (rng.chance(0.5)) hostile();
      break;
    case 'crashes':
      m.crashRate = 0.01 + rng.float() * 0.05;
      m.restartRate = 0.05 + rng.float() * 0.2;
      m.maxDiskLatencyUnits = rng.range(0, 10);
      break;
    case 'membership':
      m.confChangeRate = 0.03 + rng.float() * 0.05;
      m.transferRate = rng.float() * 0.03;
      if (rng.chance(0.5)) m.partitionRate = rng.float() * 0.04;
      if (rng.chance(0.5)) m.crashRate = rng.float() * 0.02;
      break;
    case 'elections':
      // Leadership churn: short partitions, reboots, one entry per message, slow disks. This is the
      // ground where figure-8 histories and double votes after a reboot grow.
      m.clusterSize = rng.pick([3, 5]);
      m.maxSizePerMsg = 1;
      m.maxInflightMsgs = rng.pick([8, 16]);
      m.partitionRate = 0.05 + rng.float() * 0.1;
      m.isolateNewLeaderRate = 0.2 + rng.float() * 0.4;
      m.healRate = 0.2 + rng.float() * 0.3;
      m.crashRate = 0.05 + rng.float() * 0.1;
      m.restartRate = 0.3 + rng.float() * 0.5;
      m.maxDelayUnits = rng.range(2, 12);
      m.maxDiskLatencyUnits = rng.range(0, 8);
      m.dropRate = rng.float() * 0.1;
      m.preVote = rng.chance(0.3);
      m.checkQuorum = rng.chance(0.5);
      m.writeRate = 0.2 + rng.float() * 0.5;
      break;
    case 'chaos':
      hostile();
      m.partitionRate = rng.float() * 0.06;
      m.crashRate = rng.float() * 0.04;
      m.confChangeRate = rng.chance(0.5) ? rng.float() * 0.04 : 0;
      m.transferRate = rng.float() * 0.02;
      break;
  }
  return m;
}

export function describeMix(name: string, m: FaultMix): string {
  const bugs = Object.keys(m.bugs).filter((k) => (m.bugs as Record<string, boolean>)[k]);
  return (
    `${name} n=${m.clusterSize} drop=${m.dropRate.toFixed(3)} dup=${m.dupRate.toFixed(3)} delay<=${m.maxDelayUnits} ` +
    `part=${m.partitionRate.toFixed(3)} crash=${m.crashRate.toFixed(3)} disk<=${m.maxDiskLatencyUnits} ` +
    `cc=${m.confChangeRate.toFixed(3)} xfer=${m.transferRate.toFixed(3)} msgSize=${m.maxSizePerMsg} inflight=${m.maxInflightMsgs} ` +
    `preVote=${m.preVote} checkQuorum=${m.checkQuorum} snap=${m.snapshotInterval}/${m.compactionLag}` +
    (bugs.length > 0 ? ` bugs=${bugs.join(',')}` : '')
  );
}
