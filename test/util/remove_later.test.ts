// Removals off the event loop: the name is free as soon as removeInBackground returns, the tree is
// gone when its promise settles, and what a process left half-removed is found at the next start.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { removeInBackground, removeLeftovers } from '../../src/util/remove_later';

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'remove-later-'));
}

/** A directory with files and a nested directory, as a LevelDB or spill directory looks. */
function makeTree(root: string): void {
  fs.mkdirSync(path.join(root, 'nested', 'deeper'), { recursive: true });
  for (let i = 0; i < 20; i++) fs.writeFileSync(path.join(root, `${i}.ldb`), Buffer.alloc(4096, i));
  fs.writeFileSync(path.join(root, 'nested', 'deeper', 'values.0'), Buffer.alloc(65536, 1));
}

function collectingLog(): { warn: (msg: string, fields?: Record<string, unknown>) => void; lines: string[] } {
  const lines: string[] = [];
  return { lines, warn: (msg, fields) => lines.push(`${msg} ${JSON.stringify(fields)}`) };
}

describe('removeInBackground / removeLeftovers', () => {
  it('frees the name at once and removes the whole tree by the time its promise settles', async () => {
    const dir = tmpDir();
    try {
      const target = path.join(dir, 'backend.old');
      makeTree(target);
      const log = collectingLog();
      const done = removeInBackground(target, log);
      assert.equal(fs.existsSync(target), false, 'the name is free when the call returns');
      // The name can be taken again at once (the next install's backend.old).
      fs.mkdirSync(target);
      await done;
      assert.deepEqual(fs.readdirSync(dir), ['backend.old'], 'only the new directory of that name remains');
      assert.deepEqual(log.lines, []);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('removes a single file, and does nothing for a path that does not exist', async () => {
    const dir = tmpDir();
    try {
      fs.writeFileSync(path.join(dir, 'values.0'), Buffer.alloc(1 << 20, 7));
      await removeInBackground(path.join(dir, 'values.0'), collectingLog());
      await removeInBackground(path.join(dir, 'missing'), collectingLog());
      assert.deepEqual(fs.readdirSync(dir), []);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('removeLeftovers removes what an ended process left being removed, and nothing else', async () => {
    const dir = tmpDir();
    try {
      makeTree(path.join(dir, 'spill.removing-0a1b2c3d4e5f'));
      fs.writeFileSync(path.join(dir, 'backend.old.removing-ffeeddccbbaa'), 'x');
      makeTree(path.join(dir, 'backend'));
      fs.mkdirSync(path.join(dir, 'wal'));
      await removeLeftovers(dir, collectingLog());
      assert.deepEqual(fs.readdirSync(dir).sort(), ['backend', 'wal']);
      assert.equal(fs.readdirSync(path.join(dir, 'backend')).length, 21, 'a directory not being removed is untouched');
      await removeLeftovers(path.join(dir, 'no-such-dir'), collectingLog());
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
