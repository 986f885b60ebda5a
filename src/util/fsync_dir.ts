// Making a directory's entries durable: after a file is created, renamed or removed in a
// directory, the change itself survives a power loss only once the directory is synced (fsync of
// the directory's own descriptor, as etcd's fileutil.Fsync of a dir and LevelDB's manifest do).
import fs from 'node:fs';

/** Syncs `dir`'s entries (created, renamed, deleted files and directories). */
export async function syncDir(dir: string): Promise<void> {
  const fh = await fs.promises.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** syncDir on the calling thread: for a step that must not yield between its renames and their
 *  sync (a snapshot install's swap of backend directories). */
export function syncDirSync(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
