// Public surface of the MVCC layer: the store, its write txn, the snapshot stream and the types.
// Everything else in this folder is internal.
export * from './types';
export { MvccStore, WriteTxn, COMPACT_KEYS_PER_STEP_DEFAULT, SPILL_BYTES_PER_STEP } from './store';
export type { CachedHash, HashKVJob } from './store';
export { RangeJob } from './range_job';
export type { RangeStepState } from './range_job';
export { SnapshotImporter, SNAPSHOT_CHUNK_RECORDS_MAX } from './snapshot';
export { crc32c } from './hash';
export { WatchableStore, Watcher, WatchFlags, SYNC_EVENTS_PER_STEP_MAX, SYNC_WATCHERS_PER_STEP_MAX, SYNC_DELIVERY_BYTES_MAX, SYNC_STEP_BYTES_MAX, revisionsWithin } from './watchable_store';
export type { WatchSink } from './watchable_store';
export * from './spill';
