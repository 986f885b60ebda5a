// LevelDB, the engine under every on-disk database a member keeps (the backend, the data-dir lock,
// a restore's new backend). `level` is the dependency that chooses the engine: on Node it is
// classic-level, the LevelDB binding, whose type we keep because the backend uses its LevelDB-only
// calls (compactRange, approximateSize). Every database is opened here, with Buffer keys and values.

import { Level } from 'level';
import { ClassicLevel, type DatabaseOptions } from 'classic-level';

export type LevelDb = ClassicLevel<Buffer, Buffer>;

export type LevelDbOptions = Omit<DatabaseOptions<Buffer, Buffer>, 'keyEncoding' | 'valueEncoding'>;

/** A LevelDB database at `dir` (not yet opened) with Buffer keys and values. */
export function levelDb(dir: string, options: LevelDbOptions = {}): LevelDb {
  const db: unknown = new Level<Buffer, Buffer>(dir, { ...options, keyEncoding: 'buffer', valueEncoding: 'buffer' });
  // On Node, `level` is classic-level; anything else (a browser build) cannot hold a member's state.
  if (!(db instanceof ClassicLevel)) throw new Error('level: expected the classic-level (LevelDB) engine on Node');
  return db as LevelDb;
}
