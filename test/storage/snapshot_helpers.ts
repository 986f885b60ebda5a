// Snapshot files for tests: backend snapshot streams (the payload of earlier quorumkv files) and
// whole files around a payload, built with the real encoders.
import { createHash } from 'node:crypto';
import { paddingBytes } from '../../src/storage/snapshot_file';
import { encodeSnapshotRecords, snapshotHeader, snapshotTrailer } from '../../src/storage/backend/snapshot';
import { META_CURRENT_REV, u64 } from '../../src/storage/backend/records';

/** A backend snapshot stream (storage/backend/snapshot.ts format), as earlier quorumkv files hold. */
export function backendStream(records: [Buffer, Buffer][], appliedIndex = 7, appliedTerm = 2): Buffer {
  const sum = { count: 0n, crc: 0 };
  return Buffer.concat([snapshotHeader({ appliedIndex, appliedTerm }), encodeSnapshotRecords(records, sum), snapshotTrailer(sum)]);
}

/** A whole snapshot file around `payload`. */
export function fileBytes(payload: Buffer): Buffer {
  const padded = Buffer.concat([payload, Buffer.alloc(paddingBytes(payload.length))]);
  return Buffer.concat([padded, createHash('sha256').update(padded).digest()]);
}

export const RECORDS: [Buffer, Buffer][] = [
  [Buffer.from('k0000000000001'), Buffer.from('value one')],
  [Buffer.from('k0000000000002'), Buffer.alloc(0)],
  [META_CURRENT_REV, u64(42)],
  [Buffer.from('m_applied_index'), u64(7)],
];
