// One process per data directory. Node has no flock(), so the lock is a file created with O_EXCL
// holding the owner's PID; a lock left behind by a process that no longer exists (kill -9, power
// loss) is taken over, so a crashed member restarts without manual cleanup.
import fs from 'node:fs';
import path from 'node:path';

export class DataDirLockedError extends Error {
  override name = 'DataDirLockedError';
}

function alive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export interface DataDirLock {
  release(): void;
}

export function lockDataDir(dataDir: string): DataDirLock {
  const file = path.join(dataDir, 'quorumkv.lock');
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = fs.openSync(file, 'wx', 0o600);
      fs.writeSync(fd, `${process.pid}\n`);
      fs.fsyncSync(fd);
      fs.closeSync(fd);
      let released = false;
      return {
        release: () => {
          if (released) return;
          released = true;
          try {
            if (Number(fs.readFileSync(file, 'utf8').trim()) === process.pid) fs.unlinkSync(file);
          } catch {
            /* already gone */
          }
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      let owner = NaN;
      try {
        owner = Number(fs.readFileSync(file, 'utf8').trim());
      } catch {
        continue; // removed under us: try again
      }
      if (owner !== process.pid && alive(owner)) {
        throw new DataDirLockedError(`data dir ${dataDir} is in use by another quorumkv process (pid ${owner}); refusing to start a second member on it`);
      }
      // Stale: its owner is gone. Remove it and race for it again with O_EXCL.
      try {
        fs.unlinkSync(file);
      } catch {
        /* someone else took it over first */
      }
    }
  }
  throw new DataDirLockedError(`could not lock data dir ${dataDir} (lock file ${file} keeps changing)`);
}
