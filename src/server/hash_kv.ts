// HashKV and Hash (etcd's Maintenance.HashKV / Hash) without blocking the event loop: the store's
// sliced hash (MvccStore.hashKVJob) run a few milliseconds at a time, yielding between slices so
// heartbeats, the apply loop and clients go on. The answer is what the synchronous hashKV would give
// at the revision and compaction point fixed when the call started (writes in between are above it
// and skipped). Compactions applied meanwhile move the compaction point, but the steps that free
// versions wait for the hash (`holdCompaction`, as etcd's hash holds its backend read transaction
// and with it the compaction's deletes). A snapshot install in between replaces the state: the hash
// starts over (at the same revision, which may then be compacted: etcd's ErrCompacted), and after
// HASH_RESTARTS_MAX restarts it is finished in one synchronous pass rather than not at all.
import type { HashKVResult, MvccStore } from '../mvcc';
import type { Logger } from '../util/log';
import { LOOP_CLOCK, type SliceClock } from '../util/slice_clock';

/** Versions hashed per slice step: their values are read (spilled ones from the file, with a
 *  synchronous positioned read) and CRCed in one go, so 128 × 16 KiB = 2 MiB bounds a step. */
export const HASH_VERSIONS_PER_STEP = 128;
/** Time spent hashing before yielding to the event loop. */
export const HASH_SLICE_MS_MAX = 10;
/** Restarts (compactions meanwhile) before the hash is finished synchronously. */
const HASH_RESTARTS_MAX = 3;

/** The store's hashKV at `rev` (0: the current revision), computed in slices. Throws the store's
 *  read errors (Compacted, FutureRev) as hashKV does. */
export async function hashKVSliced(
  store: () => MvccStore,
  rev: number,
  log: Logger,
  clock: SliceClock = LOOP_CLOCK,
  holdCompaction: () => () => void = () => () => undefined,
): Promise<HashKVResult> {
  const release = holdCompaction();
  try {
    return await hashKVSlicedHeld(store, rev, log, clock);
  } finally {
    release();
  }
}

async function hashKVSlicedHeld(store: () => MvccStore, rev: number, log: Logger, clock: SliceClock): Promise<HashKVResult> {
  for (let restarts = 0; restarts <= HASH_RESTARTS_MAX; restarts++) {
    const job = store().hashKVJob(rev);
    // Later restarts hash the same revision as the first attempt fixed.
    rev = job.hashRevision;
    let sliceStart = clock.now();
    let state = job.step(HASH_VERSIONS_PER_STEP);
    while (state === 'more') {
      if (clock.now() - sliceStart >= HASH_SLICE_MS_MAX) {
        await clock.yieldToLoop();
        sliceStart = clock.now();
      }
      state = job.step(HASH_VERSIONS_PER_STEP);
    }
    if (state === 'done') return job.result();
    log.info('hash restarts: the store was compacted or replaced while it ran', { revision: rev, restarts: restarts + 1 });
  }
  log.warn('hash finished in one synchronous pass after repeated compactions', { revision: rev });
  return store().hashKV(rev);
}
