// The WAL's public types.

import type { Entry, HardState } from '../../raft/types';
import type { SnapshotMarker } from './encoder';

/** What recovery rebuilt from the log. */
export interface WalState {
  /** The last hard state saved (empty if none was). */
  hardState: HardState;
  /** The latest snapshot marker, if any: entries up to it live in the backend/snapshot. */
  snapshot: SnapshotMarker | undefined;
  /** The entries after the snapshot marker (or from index 1), contiguous. */
  entries: Entry[];
  /** The bytes given to Wal.create (always present in a log we wrote). */
  metadata: Uint8Array | undefined;
  /** Set if the last batch was torn by a crash and was cut off: the server should log it. */
  tornTail?: TornTail;
}

export interface TornTail {
  /** Segment file name (no directory). */
  file: string;
  /** Where the torn batch began; the log now ends here. */
  offset: number;
  /** Non-zero bytes that were dropped from `offset` on. */
  droppedBytes: number;
}

/** Test-only fault injection: a hook that throws makes the I/O step fail as if the disk had. */
export interface WalFaults {
  beforeWrite?: () => void;
  beforeSync?: () => void;
}

export interface WalOptions {
  /** Size each new segment is preallocated to (default 64 MiB). */
  segmentBytes?: number;
  /** fdatasync every batch (default true). Only tests of framing should turn this off. */
  fsync?: boolean;
  faults?: WalFaults;
  /** Bytes of a segment recovery holds in memory at once (default SEGMENT_WINDOW_BYTES, 8 MiB);
   *  tests make it small so that the window slides and grows within their small segments. */
  recoveryWindowBytes?: number;
}

export interface WalStats {
  /** Batches written (save, saveSnapshot, and segment start batches). */
  batches: number;
  bytes: number;
  fsyncs: number;
  /** Duration of the last fdatasync, in milliseconds. */
  lastFsyncMs: number;
}

export interface SegmentInfo {
  seq: number;
  /** The log's last index + 1 when the segment was started (from its name). */
  firstIndex: number;
  /** File name, no directory. */
  file: string;
}
