// The write-ahead log: segmented, preallocated, checksummed, one durable (O_DSYNC) write per Raft
// Ready. Format: format.ts. Recovery: recovery.ts. Usage contract: wal.ts.

export { Wal } from './wal';
export { WalError, WalCorruptionError, WalFailedError, isWalOutOfSpace, walErrnoCode } from './errors';
export type { WalState, WalOptions, WalStats, WalFaults, TornTail } from './types';
export type { SnapshotMarker } from './encoder';
export { SEGMENT_BYTES_DEFAULT } from './format';
