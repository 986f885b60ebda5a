// One process per data directory, held by a lock that the kernel releases when the process dies.
//
// Node has no flock()/fcntl() in core and we add no native module of our own, so the lock is the one
// LevelDB already takes when it opens a database: an fcntl(F_SETLK) write lock on <db>/LOCK, through
// classic-level (the backend's engine). A tiny dedicated database, <data-dir>/lock, is opened before
// anything else in the data dir is touched and stays open until the member stops:
//  - the kernel drops the lock when its process dies (kill -9, OOM kill, power loss): a crashed
//    member restarts without anyone deleting a file, and no PID is ever compared (after a reboot an
//    unrelated process may hold the old owner's PID);
//  - taking it is one system call on one file: of two processes starting at once, exactly one wins.
// Why not the backend's own LOCK (member/backend/LOCK): the backend is opened only after start-up
// has renamed directories under member/ (finishInterruptedSnapshotInstall), and a snapshot install
// closes it and renames member/backend.incoming over it while the member runs: the data dir would
// be unlocked in those windows.
//
// A process that is refused writes nothing. LevelDB takes the lock before it reads or writes the
// database, but it opens its info log (<db>/LOG, rotating the old one to LOG.old) before that: LOG
// and LOG.old are directories here (ensureLayout), so neither holder nor loser ever writes one.
// fcntl locks belong to the process, and closing *any* descriptor of <db>/LOCK in it drops the lock:
// nothing but LevelDB may open that file.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { levelDb } from './leveldb';
import type { Logger } from '../util/log';

/** The lock database, under the data dir. */
export const LOCK_DB_NAME = 'lock';
/** The PID file earlier versions used as the lock: removed once the real lock is held. */
export const LEGACY_LOCK_FILE = 'quorumkv.lock';
/** Who holds the lock, for the refusal message only (never trusted to decide anything). */
const OWNER_FILE = 'OWNER';
const LOG_DIR_NOTE =
  'LOG and LOG.old are directories on purpose: LevelDB opens its info log before it takes its lock, so a\n' +
  'process refused the lock would otherwise rotate the holder\'s log. See src/storage/lock.ts.\n';

export class DataDirLockedError extends Error {
  override name = 'DataDirLockedError';
}

export interface DataDirLock {
  /** Unlocks (asynchronously; a later lockDataDir() in this process waits for it). Idempotent. */
  release(): void;
}

/** Locks being released, by lock-database path: a member stopped and started again in the same
 *  process (tests, embedding) must not find its own earlier lock still held. */
const closing = new Map<string, Promise<void>>();
/** Lock databases this process holds, by device:inode. LevelDB refuses a second open of the same
 *  path in one process, but not of the same directory reached by another path (a symlink), and
 *  fcntl would let the process lock the file twice: this catches that case. */
const held = new Set<string>();

/**
 * Locks `dataDir` (which must exist) for this process, or throws DataDirLockedError naming it when
 * another process (or this one) holds it.
 */
export async function lockDataDir(dataDir: string, log?: Logger): Promise<DataDirLock> {
  const dbDir = path.join(dataDir, LOCK_DB_NAME);
  await closing.get(dbDir);
  ensureLayout(dbDir);
  const st = fs.statSync(dbDir);
  const identity = `${st.dev}:${st.ino}`;
  if (held.has(identity)) throw new DataDirLockedError(`data dir ${dataDir} is in use by another member of this process; refusing to start a second member on it`);
  const db = levelDb(dbDir, { createIfMissing: true });
  try {
    await db.open();
  } catch (err) {
    throw lockError(dataDir, dbDir, err, log);
  }
  held.add(identity);
  // Held from here on: only now may anything in the data dir be written.
  writeOwner(dbDir, log);
  removeLegacyLock(dataDir, log);
  let released = false;
  return {
    release: () => {
      if (released) return;
      released = true;
      const done = db
        .close()
        .catch((err: unknown) => log?.error('closing the data-dir lock failed (the process still holds it until it exits)', { 'data-dir': dataDir, error: String(err) }))
        .finally(() => {
          held.delete(identity);
          if (closing.get(dbDir) === done) closing.delete(dbDir);
        });
      closing.set(dbDir, done);
    },
  };
}

/** Creates the lock database's directory with LOG and LOG.old as directories (LOG.old not empty,
 *  so that LevelDB's rename of LOG to LOG.old fails instead of moving it). Creating what exists
 *  already writes nothing, so a process that then loses the race has changed nothing. */
function ensureLayout(dbDir: string): void {
  fs.mkdirSync(path.join(dbDir, 'LOG'), { recursive: true, mode: 0o700 });
  fs.mkdirSync(path.join(dbDir, 'LOG.old'), { recursive: true, mode: 0o700 });
  const note = path.join(dbDir, 'LOG.old', 'README');
  if (fs.existsSync(note)) return;
  try {
    fs.writeFileSync(note, LOG_DIR_NOTE, { flag: 'wx', mode: 0o600 });
  } catch (err) {
    // Another process starting at the same moment wrote the same note first.
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
}

/** classic-level reports a held lock as LEVEL_LOCKED ("IO error: lock <file>: <reason>"); the
 *  reason tells a lock held elsewhere (EAGAIN/EACCES, or this process) from a file system that
 *  cannot lock at all (ENOLCK on some network file systems), which must not read as "in use". */
function lockError(dataDir: string, dbDir: string, err: unknown, log: Logger | undefined): Error {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  const reason = cause?.message ?? (err instanceof Error ? err.message : String(err));
  if (cause?.code === 'LEVEL_LOCKED' && /already held by process|temporarily unavailable|permission denied/i.test(reason)) {
    const owner = readOwner(dbDir, log);
    return new DataDirLockedError(`data dir ${dataDir} is in use by another quorumkv process${owner ? ` (${owner})` : ''}; refusing to start a second member on it`);
  }
  return new Error(`cannot lock data dir ${dataDir} (LevelDB lock in ${dbDir}: ${reason})`, { cause: err });
}

function writeOwner(dbDir: string, log: Logger | undefined): void {
  try {
    fs.writeFileSync(path.join(dbDir, OWNER_FILE), `pid ${process.pid} on ${os.hostname()} since ${new Date().toISOString()}\n`, { mode: 0o600 });
  } catch (err) {
    // Only the refusal message of a second process reads it: the lock itself is held.
    log?.warn('could not record the data-dir lock owner', { file: path.join(dbDir, OWNER_FILE), error: String(err) });
  }
}

function readOwner(dbDir: string, log: Logger | undefined): string | undefined {
  try {
    return fs.readFileSync(path.join(dbDir, OWNER_FILE), 'utf8').trim().slice(0, 200) || undefined;
  } catch (err) {
    // The holder may not have written it yet: the refusal stands without it.
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log?.warn('cannot read the data-dir lock owner', { file: path.join(dbDir, OWNER_FILE), error: String(err) });
    return undefined;
  }
}

/** The PID file of an older version is meaningless now (and after a reboot its PID may belong to
 *  anyone): drop it, so that downgrading does not find a stale one either. */
function removeLegacyLock(dataDir: string, log: Logger | undefined): void {
  const file = path.join(dataDir, LEGACY_LOCK_FILE);
  let content: string;
  try {
    content = fs.readFileSync(file, 'utf8').trim().slice(0, 100);
    fs.unlinkSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    log?.warn('could not remove the PID lock file of an older version (ignored: it no longer locks anything)', { file, error: String(err) });
    return;
  }
  log?.info('removed the PID lock file of an older version; the data dir is locked through its lock database now', { file, content, 'lock-db': path.join(dataDir, LOCK_DB_NAME) });
}
