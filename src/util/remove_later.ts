// Removing a whole-state directory or file off the event loop. An old backend is thousands of
// LevelDB tables and a spill file holds gigabytes: removing them with rmSync kept the kernel busy on
// the calling thread (279 ms for a 407 MB LevelDB directory, 509 ms for a 1.6 GB file here), and a
// snapshot install at 1.6 GB stalled the member's loop for 2.2 s that way. Here the path is renamed
// at once to a unique name beside it (its own name is free again for whoever needs it) and the
// renamed tree is removed one entry at a time by libuv's thread pool, so that a removal of
// thousands of files takes one pool thread, not all four (the WAL's writes and LevelDB's work share
// them). A crash before it ends leaves `<name>.removing-<hex>`; removeLeftovers() deletes those.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

const REMOVING_MARK = '.removing-';

export interface RemovalLog {
  warn(msg: string, fields?: Record<string, unknown>): void;
}

/** Removes `target` (a file or a directory tree; nothing if it does not exist) in the background:
 *  when this returns, `target` no longer exists under its name. The promise settles when the
 *  bytes are gone; it never rejects (a failure is logged: the space is lost until the next start's
 *  removeLeftovers). */
export function removeInBackground(target: string, log: RemovalLog): Promise<void> {
  const renamed = `${target}${REMOVING_MARK}${crypto.randomBytes(6).toString('hex')}`;
  try {
    fs.renameSync(target, renamed);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return Promise.resolve();
    throw err;
  }
  return removeTree(renamed).catch((err: unknown) => {
    log.warn('cannot remove a replaced file or directory; its space stays used until the next start', { path: renamed, error: String(err) });
  });
}

/** Removes, in the background, what removeInBackground() left in `dir` when the process ended
 *  before it finished. Returns when every removal has settled. */
export function removeLeftovers(dir: string, log: RemovalLog): Promise<void> {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return Promise.resolve();
    throw err;
  }
  const removals = names
    .filter((name) => name.includes(REMOVING_MARK))
    .map((name) =>
      removeTree(path.join(dir, name)).catch((err: unknown) => {
        log.warn('cannot remove what an earlier run left to remove', { path: path.join(dir, name), error: String(err) });
      }),
    );
  return Promise.all(removals).then(() => undefined);
}

/** One entry at a time, depth first; a missing entry is not an error. */
async function removeTree(p: string): Promise<void> {
  let stat: fs.Stats;
  try {
    stat = await fs.promises.lstat(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!stat.isDirectory()) {
    await fs.promises.rm(p, { force: true });
    return;
  }
  for (const name of await fs.promises.readdir(p)) await removeTree(path.join(p, name));
  await fs.promises.rmdir(p);
}
