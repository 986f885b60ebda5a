// LevelDB, the engine under every on-disk database a member keeps (the backend, the data-dir lock,
// a restore's new backend). `level` is the dependency that chooses the engine: on Node it is
// classic-level, the LevelDB binding, whose type we keep because the backend uses its LevelDB-only
// calls (compactRange, approximateSize). Every database is opened here, with Buffer keys and values.

import { Level } from 'level';
import { ClassicLevel, type DatabaseOptions } from 'classic-level';

export type LevelDb = ClassicLevel<Buffer, Buffer>;

export type LevelDbOptions = Omit<DatabaseOptions<Buffer, Buffer>, 'keyEncoding' | 'valueEncoding'>;

/**
 * Files LevelDB keeps open: its own minimum (it clips to 64 table files + 10 others). LevelDB maps
 * every table file it opens (up to 1000 maps on 64-bit) and keeps it mapped while the table is in
 * its table cache, sized by this; classic-level's default of 1000 let one pass over the whole
 * database (a load at start, a snapshot sent or installed) leave every table file's pages in the
 * process's RSS (RssFile) for good: +1x the database. With 64 tables of <= 2-4 MiB at most
 * ~128-256 MiB of table files stay mapped. The backend is read in whole-database passes (the
 * served state is in memory and the spill file), where reopening a table costs one open and an
 * index-block read per 2 MiB.
 */
export const LEVELDB_MAX_OPEN_FILES = 74;

/**
 * Memtable size, so the size of a flushed table. The backend's records arrive in key order (versions
 * by revision, each commit's record after them: backend/commit_record.ts), so LevelDB moves a
 * flushed memtable down the levels as it is, never merging it into 2 MiB compaction outputs: its
 * tables stay the memtable's size, and the tables LevelDB keeps open and mapped (above) would be
 * ~5 MB each with LevelDB's default 4 MiB memtable. At 1.6 GB that put a leader's RSS 190–200 MiB
 * higher while it streamed a snapshot (one pass over every table). 2 MiB keeps them at ~2.5 MB.
 */
export const LEVELDB_WRITE_BUFFER_BYTES = 2 * 1024 * 1024;

/** A LevelDB database at `dir` (not yet opened) with Buffer keys and values. */
export function levelDb(dir: string, options: LevelDbOptions = {}): LevelDb {
  const db: unknown = new Level<Buffer, Buffer>(dir, { maxOpenFiles: LEVELDB_MAX_OPEN_FILES, writeBufferSize: LEVELDB_WRITE_BUFFER_BYTES, ...options, keyEncoding: 'buffer', valueEncoding: 'buffer' });
  // On Node, `level` is classic-level; anything else (a browser build) cannot hold a member's state.
  if (!(db instanceof ClassicLevel)) throw new Error('level: expected the classic-level (LevelDB) engine on Node');
  return db as LevelDb;
}
