// "Nothing was written": every file and directory under a dir with its size, mtime and content
// hash, to compare before and after something that must not touch the dir. LevelDB LOCK files are
// not opened: closing any descriptor of a file drops the fcntl locks this process holds on it (the
// data-dir lock, when the caller holds it itself).
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export function treeSnapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const name of fs.readdirSync(d).sort()) {
      const p = path.join(d, name);
      const st = fs.lstatSync(p);
      const rel = path.relative(dir, p);
      if (st.isDirectory()) {
        out[rel + '/'] = `dir mtime=${st.mtimeMs}`;
        walk(p);
      } else if (name === 'LOCK') {
        out[rel] = `size=${st.size} mtime=${st.mtimeMs}`;
      } else {
        out[rel] = `size=${st.size} mtime=${st.mtimeMs} sha256=${crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex')}`;
      }
    }
  };
  walk(dir);
  return out;
}
